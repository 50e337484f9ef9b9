"""Calls to the Kubernetes API that the operator makes besides kopf's own: credentials Secrets,
ServiceAccounts and their tokens (workload identity), and compare-and-set status writes.

All on the one shared async client (``kubehttp``), fair by namespace.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from secretstage.domain.journal import ObjectGone, StaleStatus
from secretstage.kms import Credentials, CredentialsError
from secretstage.kubehttp import MERGE_PATCH, KubeCallFailed, KubeHttp, path

KEY_ID, KEY_SECRET, KEY_TOKEN = "AccessKeyId", "AccessKeySecret", "SecurityToken"
LIMITS = {KEY_ID: 128, KEY_SECRET: 256, KEY_TOKEN: 16384}
ACCESS_KEY_ID = re.compile(r"^[A-Za-z0-9.]{1,128}$")
PRINTABLE = re.compile(r"^[\x21-\x7e]+$")
ALLOWED_TYPES = ("", "Opaque")


def not_granted(namespace: str) -> str:
    """What a 403 in a tenant's namespace means, and who fixes it (with the chart's rbac.tenantAccess=optIn)."""
    return (
        f"the operator is not granted namespace {namespace}: its admins opt in by binding the chart's ClusterRole "
        "<release>-secretstage-operator-tenant to the operator's ServiceAccount there (kubectl create rolebinding "
        f"secretstage-operator -n {namespace} --clusterrole=... --serviceaccount=...; docs/install.md, "
        '"Shared clusters")'
    )


class CredentialsNotFound(Exception):
    """The Secret does not exist (yet): wait for it."""


class CredentialsUnavailable(Exception):
    """The Secret could not be read right now (API error, RBAC): retry."""


class CredentialsInvalid(Exception):
    """The Secret exists but cannot be used; the message names the key and the fix, never a value."""


def _decode(secret_name: str, data: Mapping[str, Any], key: str, required: bool) -> str | None:
    raw = data.get(key)
    if raw is None or raw == "":
        if required:
            raise CredentialsInvalid(f"Secret {secret_name} has no {key} key (or it is empty); add {key}")
        return None
    try:
        value = base64.b64decode(raw, validate=True).decode("utf-8").strip()
    except (binascii.Error, UnicodeDecodeError):
        raise CredentialsInvalid(
            f"Secret {secret_name} key {key} is not UTF-8 text; store the value as plain text"
        ) from None
    if not value:
        if required:
            raise CredentialsInvalid(f"Secret {secret_name} key {key} is empty; set it")
        return None
    if len(value) > LIMITS[key]:
        raise CredentialsInvalid(
            f"Secret {secret_name} key {key} is longer than {LIMITS[key]} characters; "
            "check that it holds the right value"
        )
    if not PRINTABLE.fullmatch(value) or (key == KEY_ID and not ACCESS_KEY_ID.fullmatch(value)):
        raise CredentialsInvalid(
            f"Secret {secret_name} key {key} contains characters an Alibaba Cloud "
            "credential never has; check the value (no spaces or control characters)"
        )
    return value


def credentials_from_secret(secret: Mapping[str, Any]) -> Credentials:
    """Credentials from a Secret as the API server returns it (JSON, ``data`` base64-encoded)."""
    name = str((secret.get("metadata") or {}).get("name") or "?")
    secret_type = secret.get("type") or ""
    if secret_type not in ALLOWED_TYPES:
        raise CredentialsInvalid(f"Secret {name} has type {secret_type}; credentials must be in an Opaque Secret")
    data = secret.get("data") or {}
    key_id = _decode(name, data, KEY_ID, True)
    key_secret = _decode(name, data, KEY_SECRET, True)
    token = _decode(name, data, KEY_TOKEN, False)
    assert key_id is not None
    assert key_secret is not None
    return Credentials(key_id, key_secret, token, source=f"secret/{name}")


async def read_credentials(kube: KubeHttp, namespace: str, name: str) -> Credentials:
    try:
        secret = await kube.request(namespace, "GET", path("api", "v1", "namespaces", namespace, "secrets", name))
    except KubeCallFailed as exc:
        if exc.status == 404:
            raise CredentialsNotFound(
                f"Secret {namespace}/{name} not found; create it with keys AccessKeyId "
                "and AccessKeySecret (and SecurityToken for STS credentials)"
            ) from None
        raise CredentialsUnavailable(
            f"cannot read Secret {namespace}/{name}: HTTP {exc.status} {exc.reason}"
            + (f"; {not_granted(namespace)}" if exc.status == 403 else "")
        ) from None
    except Exception as exc:  # connection errors and the like: transient
        raise CredentialsUnavailable(f"cannot read Secret {namespace}/{name}: {type(exc).__name__}") from None
    return credentials_from_secret(secret)


async def read_service_account_annotations(kube: KubeHttp, namespace: str, name: str) -> dict[str, str]:
    """The annotations of a ServiceAccount (where its RAM role is named)."""
    try:
        account = await kube.request(
            namespace,
            "GET",
            path("api", "v1", "namespaces", namespace, "serviceaccounts", name),
        )
    except KubeCallFailed as exc:
        if exc.status == 404:
            raise CredentialsNotFound(
                f"ServiceAccount {namespace}/{name} not found; create it and annotate it with its RAM role"
            ) from None
        raise CredentialsUnavailable(
            f"cannot read ServiceAccount {namespace}/{name}: HTTP {exc.status} {exc.reason}"
            + (f"; {not_granted(namespace)}" if exc.status == 403 else "")
        ) from None
    except Exception as exc:
        raise CredentialsUnavailable(f"cannot read ServiceAccount {namespace}/{name}: {type(exc).__name__}") from None
    return {str(k): str(v) for k, v in ((account.get("metadata") or {}).get("annotations") or {}).items()}


async def request_token(kube: KubeHttp, namespace: str, name: str, audience: str, seconds: int) -> str:
    """A fresh TokenRequest token of a ServiceAccount, for one audience. Never logged, never stored."""
    body = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"audiences": [audience], "expirationSeconds": seconds},
    }
    try:
        answer = await kube.request(
            namespace,
            "POST",
            path("api", "v1", "namespaces", namespace, "serviceaccounts", name, "token"),
            json=body,
        )
    except KubeCallFailed as exc:
        hint = {
            403: f"; {exc.message}" if "ValidatingAdmissionPolicy" in exc.message else f"; {not_granted(namespace)}",
            404: "; it no longer exists",
        }.get(exc.status or 0, "")
        raise CredentialsError(
            f"cannot get a token of ServiceAccount {namespace}/{name}: HTTP {exc.status} {exc.reason}{hint}"
        ) from None
    except Exception as exc:
        raise CredentialsError(
            f"cannot get a token of ServiceAccount {namespace}/{name}: {type(exc).__name__}"
        ) from None
    token = str((answer.get("status") or {}).get("token") or "")
    if not token:
        raise CredentialsError(f"the API server returned no token for ServiceAccount {namespace}/{name}")
    return token


GROUP, VERSION, PLURAL = "secretstage.io", "v1alpha1", "secretstagepromotions"
WRITE_RETRY_DELAYS = (0.5, 1.0, 2.0)  # transient API errors on a status write; a 409 is never retried here


class StatusWriteFailed(Exception):
    """A status write failed for another reason than a conflict, after retries; the message says why."""


class PromotionStatus:
    """``.status`` of one SecretStagePromotion, written with compare-and-set on its resourceVersion.

    A merge patch that carries ``metadata.resourceVersion`` is rejected with 409 when the object has
    changed since: the journal written by an attempt working from a stale copy never lands. A
    resourceVersion belongs to one object: one re-created under the same name never matches it.
    """

    def __init__(
        self,
        kube: KubeHttp,
        namespace: str,
        name: str,
        status: Mapping[str, Any],
        resource_version: str,
        *,
        uid: str = "",
        generation: int | None = None,
    ) -> None:
        self._kube = kube
        self._path = path("apis", GROUP, VERSION, "namespaces", namespace, PLURAL, name)
        self.namespace, self.name = namespace, name
        self._status: dict[str, Any] = dict(status)
        self.resource_version = resource_version
        self._uid, self._generation = uid, generation
        self.written: list[str] = []  # the resourceVersions this store's writes produced

    @property
    def status(self) -> Mapping[str, Any]:
        return self._status

    @property
    def uid(self) -> str:
        return self._uid

    @property
    def generation(self) -> int | None:
        return self._generation

    async def write(self, status: Mapping[str, Any]) -> None:
        body = {"metadata": {"resourceVersion": self.resource_version}, "status": dict(status)}
        for delay in (*WRITE_RETRY_DELAYS, None):
            try:
                obj = await self._kube.request(
                    self.namespace,
                    "PATCH",
                    self._path + "/status",
                    json=body,
                    content_type=MERGE_PATCH,
                )
                break
            except KubeCallFailed as exc:
                if exc.status == 409:
                    raise StaleStatus() from None
                if exc.status == 404:
                    raise ObjectGone() from None
                if exc.status not in (429, 500, 502, 503, 504) or delay is None:
                    raise StatusWriteFailed(f"writing the status failed: HTTP {exc.status} {exc.reason}") from None
            except Exception as exc:  # connection errors and the like
                if delay is None:
                    raise StatusWriteFailed(f"writing the status failed: {type(exc).__name__}") from None
            await asyncio.sleep(delay)
        self._take(obj)
        self.written.append(self.resource_version)

    async def refresh(self) -> Mapping[str, Any]:
        try:
            obj = await self._kube.request(self.namespace, "GET", self._path)
        except KubeCallFailed as exc:
            if exc.status == 404:
                raise ObjectGone() from None
            raise StatusWriteFailed(f"reading the promotion again failed: HTTP {exc.status} {exc.reason}") from None
        except Exception as exc:
            raise StatusWriteFailed(f"reading the promotion again failed: {type(exc).__name__}") from None
        self._take(obj)
        return self._status

    def _take(self, obj: Mapping[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        self._status = dict(obj.get("status") or {})
        self.resource_version = str(meta["resourceVersion"])
        self._uid = str(meta.get("uid") or self._uid)
        generation = meta.get("generation")
        self._generation = generation if isinstance(generation, int) else self._generation


EVENT_MESSAGE_LIMIT = 1024


async def post_event(
    kube: KubeHttp,
    involved: Mapping[str, str],
    event_type: str,
    reason: str,
    message: str,
    *,
    component: str = "secretstage-operator",
    instance: str = "",
) -> None:
    """A core/v1 Event about a promotion (``involved``: its apiVersion, kind, namespace, name, uid).

    Events are a convenience for ``kubectl describe``: a failure to post one is logged by the caller
    and never fails or repeats a promotion.
    """
    namespace = involved["namespace"]
    now = datetime.now(UTC).isoformat()
    body = {
        "metadata": {"namespace": namespace, "generateName": f"{involved['name']}."},
        "type": event_type,
        "reason": reason,
        "message": message[:EVENT_MESSAGE_LIMIT],
        "action": reason,
        "involvedObject": dict(involved),
        "reportingComponent": component,
        "reportingInstance": instance or component,
        "source": {"component": component},  # the "From" column of kubectl describe
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    await kube.request(namespace, "POST", path("api", "v1", "namespaces", namespace, "events"), json=body)


IN_CLUSTER_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"


def in_cluster_service_account(token_file: str = IN_CLUSTER_TOKEN) -> tuple[str, str] | None:
    """(namespace, name) of the ServiceAccount this process runs as, from its token's ``sub`` claim
    (``system:serviceaccount:<namespace>:<name>``); None outside a pod. The claim is only read, never
    trusted for access: it is our own token, and it only tells which ServiceAccount to refuse."""
    try:
        with open(token_file, encoding="ascii") as f:
            payload = f.read().strip().split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (OSError, IndexError, ValueError, UnicodeDecodeError):
        return None
    parts = str(claims.get("sub", "")).split(":") if isinstance(claims, dict) else []
    if len(parts) == 4 and parts[:2] == ["system", "serviceaccount"]:
        return parts[2], parts[3]
    return None
