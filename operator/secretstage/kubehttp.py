"""The operator's own Kubernetes calls on the hot path, async, on one shared httpx client.

Per promotion attempt the operator reads the credentials Secret (or ServiceAccount and a token) and
writes the status twice. The official ``kubernetes`` client is synchronous: each call took a worker
thread, and its generated layers (validation wrappers, model (de)serialisation) cost more CPU than
the request itself. Here each call is one request on a pooled, kept-alive connection, with the
connection settings the ``kubernetes`` package loaded (in-cluster or kubeconfig).

Calls wait for a connection through a ``FairGate``: a free one goes to the waiting namespace that
holds the fewest, so one namespace's backlog (500 promotions retrying for ever) costs another at
most about one call per connection (docs/development/benchmarks.md, fairness).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Generator, Mapping
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote

import httpx

from secretstage.config import KUBE_REQUEST_TIMEOUT
from secretstage.kms.ratelimit import FairGate
from secretstage.kms.transport import PolledBackend, transport

if TYPE_CHECKING:
    from kubernetes.client import Configuration

log = logging.getLogger(__name__)
CONNECTIONS = 16  # calls in flight to the API server; each holds one kept-alive connection
MERGE_PATCH = "application/merge-patch+json"


class KubeCallFailed(Exception):
    """The API server answered with an error status; ``status`` is its HTTP status code."""

    def __init__(self, status: int, reason: str, message: str = "") -> None:
        super().__init__(f"HTTP {status} {reason}")
        self.status, self.reason = status, reason
        #: the API server's own explanation (metav1.Status.message): names and rules, never a value
        self.message = message


def _status_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    message = body.get("message") if isinstance(body, dict) else None
    return message[:400] if isinstance(message, str) else ""


class _ConfiguredToken(httpx.Auth):
    """The bearer token as the ``kubernetes`` configuration has it now: its refresh hook re-reads a
    projected ServiceAccount token (rotated by the kubelet) or runs a kubeconfig's exec plugin."""

    def __init__(self, configuration: Configuration) -> None:
        self._configuration = configuration

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        # auth_settings() asks the refresh hook first; the token is under "BearerToken" in current
        # releases of the client, so ask it rather than read api_key by a name of our own.
        settings = cast(Mapping[str, Mapping[str, Any]], self._configuration.auth_settings())
        for setting in settings.values():
            if setting.get("in") == "header" and setting.get("value"):
                request.headers[str(setting["key"])] = str(setting["value"])
        yield request


def path(*segments: str) -> str:
    """An API path from its segments, each quoted: a name can never reach another path."""
    return "/" + "/".join(quote(s, safe="") for s in segments)


class KubeHttp:
    def __init__(self, client: httpx.AsyncClient, connections: int = CONNECTIONS) -> None:
        self.client = client
        self.gate = FairGate(connections)

    @classmethod
    def from_configuration(
        cls, configuration: Configuration, connections: int = CONNECTIONS, user_agent: str = "secretstage-operator"
    ) -> KubeHttp:
        verify: ssl.SSLContext | bool = False
        if configuration.verify_ssl:
            verify = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
            if configuration.cert_file:
                verify.load_cert_chain(configuration.cert_file, configuration.key_file)
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        client = httpx.AsyncClient(
            base_url=configuration.host,
            transport=transport(PolledBackend(), verify, limits),
            auth=_ConfiguredToken(configuration),
            # No proxy from the environment: the API server is reached as the configuration says.
            trust_env=False,
            # a hung API server must not hold a promotion for ever; waiting for a connection is the gate's business
            timeout=httpx.Timeout(KUBE_REQUEST_TIMEOUT[1], connect=KUBE_REQUEST_TIMEOUT[0], pool=None),
            headers={"Accept": "application/json", "User-Agent": user_agent},
        )
        return cls(client, connections)

    async def request(
        self,
        namespace: str,
        method: str,
        url: str,
        *,
        json: Mapping[str, Any] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """One call on behalf of ``namespace`` (the fairness key); the decoded answer, or
        ``KubeCallFailed`` for an error status (``httpx.HTTPError`` for a transport failure)."""
        headers = {"Content-Type": content_type} if json is not None else None
        async with self.gate.slot(namespace):
            response = await self.client.request(method, url, json=json, headers=headers)
        log.debug("%s %s -> HTTP %d", method, url, response.status_code)  # paths only: never a body
        if response.status_code >= 400:
            raise KubeCallFailed(response.status_code, response.reason_phrase, _status_message(response))
        answer: dict[str, Any] = response.json()
        return answer

    async def request_text(self, namespace: str, url: str) -> str:
        """A GET whose answer is text (a pod's log), not JSON; ``KubeCallFailed`` for an error status."""
        async with self.gate.slot(namespace):
            response = await self.client.request("GET", url)
        if response.status_code >= 400:
            raise KubeCallFailed(response.status_code, response.reason_phrase, _status_message(response))
        return response.text

    async def aclose(self) -> None:
        await self.client.aclose()
