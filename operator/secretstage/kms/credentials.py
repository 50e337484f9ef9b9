"""Credentials and the providers that produce them.

Every provider has one async method, ``get()``. The KMS client calls it before each signed
request, so rotated or refreshed credentials are used without restarting anything.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

from secretstage import redaction
from secretstage.kms.errors import CredentialsError, KmsApiError, KmsError, KmsTransportError

log = logging.getLogger(__name__)

ENV_ACCESS_KEY_ID = "ALIBABA_CLOUD_ACCESS_KEY_ID"
ENV_ACCESS_KEY_SECRET = "ALIBABA_CLOUD_ACCESS_KEY_SECRET"
ENV_SECURITY_TOKEN = "ALIBABA_CLOUD_SECURITY_TOKEN"
ENV_ROLE_ARN = "ALIBABA_CLOUD_ROLE_ARN"
ENV_OIDC_PROVIDER_ARN = "ALIBABA_CLOUD_OIDC_PROVIDER_ARN"
ENV_OIDC_TOKEN_FILE = "ALIBABA_CLOUD_OIDC_TOKEN_FILE"
ENV_STS_ENDPOINT = "ALIBABA_CLOUD_STS_ENDPOINT"
ENV_STS_REGION = "ALIBABA_CLOUD_STS_REGION"
ENV_VPC_ENDPOINT_ENABLED = "ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED"
ENV_ROLE_SESSION_NAME = "ALIBABA_CLOUD_ROLE_SESSION_NAME"


@dataclass(frozen=True)
class Credentials:
    """An AccessKey pair, optionally with an STS SecurityToken. ``repr`` never shows the secret parts."""

    access_key_id: str
    access_key_secret: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)
    expiration: float | None = None  # unix time; None = does not expire
    source: str = "static"

    def __post_init__(self) -> None:
        if not self.access_key_id.strip():
            raise CredentialsError("AccessKeyId is empty: set it to the RAM user's or role's AccessKey ID")
        if not self.access_key_secret:
            raise CredentialsError("AccessKeySecret is empty: set it to the AccessKey secret of the same key")
        redaction.register(self.access_key_secret, self.security_token)

    def secrets(self) -> tuple[str, ...]:
        """The values that must never appear in any output (for redaction and leak tests)."""
        return tuple(s for s in (self.access_key_secret, self.security_token) if s)


class CredentialsProvider(Protocol):
    async def get(self) -> Credentials: ...


class StaticProvider:
    """Credentials given by the caller (a Kubernetes Secret, a test)."""

    def __init__(self, credentials: Credentials) -> None:
        self._credentials = credentials

    async def get(self) -> Credentials:
        return self._credentials


class EnvironmentProvider:
    """``ALIBABA_CLOUD_ACCESS_KEY_ID`` / ``_SECRET`` / ``_SECURITY_TOKEN``, read at each call."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = environ

    def available(self) -> bool:
        env = os.environ if self._environ is None else self._environ
        return bool(env.get(ENV_ACCESS_KEY_ID) and env.get(ENV_ACCESS_KEY_SECRET))

    async def get(self) -> Credentials:
        env = os.environ if self._environ is None else self._environ
        if not self.available():
            raise CredentialsError(f"{ENV_ACCESS_KEY_ID} and {ENV_ACCESS_KEY_SECRET} must both be set")
        return Credentials(
            access_key_id=env[ENV_ACCESS_KEY_ID],
            access_key_secret=env[ENV_ACCESS_KEY_SECRET],
            security_token=env.get(ENV_SECURITY_TOKEN) or None,
            source="environment",
        )


def sts_endpoint_from_env(environ: Mapping[str, str]) -> str:
    """``ALIBABA_CLOUD_STS_ENDPOINT`` > ``ALIBABA_CLOUD_STS_REGION`` (+ VPC flag) > ``sts.aliyuncs.com``."""
    explicit = environ.get(ENV_STS_ENDPOINT, "").strip()
    if explicit:
        return explicit if "://" in explicit else f"https://{explicit}"
    region = environ.get(ENV_STS_REGION, "").strip()
    if region:
        vpc = environ.get(ENV_VPC_ENDPOINT_ENABLED, "").lower() == "true"
        return f"https://sts{'-vpc' if vpc else ''}.{region}.aliyuncs.com"
    return "https://sts.aliyuncs.com"


#: Where an OIDC token comes from: read anew for every exchange (tokens are short-lived and rotate).
TokenSource = Callable[[], Awaitable[str]]


class OidcRoleProvider:
    """STS AssumeRoleWithOIDC: exchange an OIDC token for a role's temporary credentials.

    The token is fetched anew for every exchange. Credentials are cached until ``refresh_margin``
    seconds before they expire. Concurrent callers share one exchange, and its failure too: a
    failed exchange is not retried by each waiting caller in turn, and callers that arrive within
    ``failure_hold`` seconds get the same error without another STS request. Every error is raised
    before any KMS request is built, so none of them means "a KMS call may have been applied".
    """

    def __init__(
        self,
        *,
        role_arn: str,
        oidc_provider_arn: str,
        token: TokenSource,
        sts_endpoint: str = "https://sts.aliyuncs.com",
        session_name: str = "secretstage-operator",
        duration_seconds: int = 3600,
        refresh_margin: float = 900.0,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
        on_refresh: Callable[[], None] | None = None,
        failure_hold: float = 2.0,
        source: str = "oidc",
    ) -> None:
        self.role_arn = role_arn
        self.oidc_provider_arn = oidc_provider_arn
        self._token = token
        self.source = source
        self.sts_endpoint = sts_endpoint.rstrip("/")
        self.session_name = session_name
        self.duration_seconds = duration_seconds
        # Short sessions (tests) would otherwise refresh on every call.
        self.refresh_margin = min(refresh_margin, duration_seconds / 4)
        self._http = http
        self._clock = clock
        self._on_refresh = on_refresh
        self._cached: Credentials | None = None
        self._inflight: asyncio.Future[Credentials] | None = None
        self._failure: Exception | None = None
        self._failure_until = 0.0
        self.failure_hold = failure_hold
        self.exchanges = 0
        self.attempts = 0  # STS requests tried, successful or not

    @property
    def cached(self) -> Credentials | None:
        return self._cached

    def _fresh(self, creds: Credentials | None) -> bool:
        return creds is not None and (
            creds.expiration is None or creds.expiration - self.refresh_margin > self._clock()
        )

    async def get(self) -> Credentials:
        if self._fresh(self._cached):
            assert self._cached is not None
            return self._cached
        if self._failure is not None and self._clock() < self._failure_until:
            raise self._failure
        if self._inflight is None:
            self._inflight = asyncio.ensure_future(self._shared_exchange())
        # shield: a caller that is cancelled does not cancel the exchange the others wait for
        return await asyncio.shield(self._inflight)

    async def _shared_exchange(self) -> Credentials:
        try:
            self._cached = await self._exchange()
            self._failure = None
            return self._cached
        except (CredentialsError, KmsError) as exc:
            self._failure, self._failure_until = exc, self._clock() + self.failure_hold
            raise
        finally:
            self._inflight = None

    async def _exchange(self) -> Credentials:
        token = (await self._token()).strip()
        redaction.register(token)
        params = {
            "Action": "AssumeRoleWithOIDC",
            "Version": "2015-04-01",
            "Format": "JSON",
            "Timestamp": datetime.fromtimestamp(self._clock(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "RoleArn": self.role_arn,
            "OIDCProviderArn": self.oidc_provider_arn,
            "OIDCToken": token,
            "RoleSessionName": self.session_name,
            "DurationSeconds": str(self.duration_seconds),
        }
        client = self._http or httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=5.0))
        self.attempts += 1
        try:
            # AssumeRoleWithOIDC is anonymous: the OIDC token is the credential, so it goes in the body.
            response = await client.post(self.sts_endpoint + "/", data=params)
        except httpx.HTTPError as exc:
            raise KmsTransportError(
                code="SDK.ServerUnreachable",
                message=f"STS {self.sts_endpoint} unreachable: {type(exc).__name__}",
                action="AssumeRoleWithOIDC",
                sent=False,  # no KMS request was sent: whatever happened at STS changed nothing in KMS
            ) from None
        finally:
            if self._http is None:
                await client.aclose()
        try:
            body = response.json()
        except ValueError:
            raise KmsTransportError(
                code="SDK.InvalidResponse",
                message=f"STS returned HTTP {response.status_code} without a JSON body",
                action="AssumeRoleWithOIDC",
                sent=False,
            ) from None
        if response.status_code != 200 or "Credentials" not in body:
            raise KmsApiError(
                code=str(body.get("Code", "Unknown")),
                message=str(body.get("Message", "")),
                request_id=str(body.get("RequestId", "")),
                http_status=response.status_code,
                action="AssumeRoleWithOIDC",
                maybe_applied=False,
            )
        c = body["Credentials"]
        try:
            if not isinstance(c, dict) or not all(
                isinstance(c.get(k), str) and c[k] for k in ("AccessKeyId", "AccessKeySecret", "SecurityToken")
            ):
                raise ValueError("AccessKeyId, AccessKeySecret and SecurityToken")
            expiration = datetime.strptime(str(c.get("Expiration")), "%Y-%m-%dT%H:%M:%SZ")
        except ValueError as exc:
            missing = str(exc) if "AccessKeyId" in str(exc) else "an Expiration of the form 2026-01-01T00:00:00Z"
            raise KmsTransportError(
                code="SDK.InvalidResponse",
                message=f"STS answered AssumeRoleWithOIDC without {missing} (RequestId {body.get('RequestId', '')})",
                action="AssumeRoleWithOIDC",
                sent=False,
            ) from None
        expires = expiration.replace(tzinfo=UTC).timestamp()
        self.exchanges += 1
        if self._on_refresh:
            self._on_refresh()
        log.info(
            "STS credentials refreshed (%s, role %s, AccessKeyId %s, expires %s, RequestId %s)",
            self.source,
            self.role_arn,
            c["AccessKeyId"],
            c["Expiration"],
            body.get("RequestId", ""),
        )
        return Credentials(
            access_key_id=c["AccessKeyId"],
            access_key_secret=c["AccessKeySecret"],
            security_token=c["SecurityToken"],
            expiration=expires,
            source=self.source,
        )


class RrsaProvider(OidcRoleProvider):
    """ACK RRSA: the operator's own identity, from the token file the pod identity webhook projects.

    The file is re-read on every exchange (the kubelet rotates it).
    """

    def __init__(self, *, role_arn: str, oidc_provider_arn: str, oidc_token_file: str, **kwargs: Any) -> None:
        for name, value in (
            (ENV_ROLE_ARN, role_arn),
            (ENV_OIDC_PROVIDER_ARN, oidc_provider_arn),
            (ENV_OIDC_TOKEN_FILE, oidc_token_file),
        ):
            if not value:
                raise CredentialsError(f"RRSA needs {name}; it is empty")
        self.oidc_token_file = oidc_token_file
        kwargs.setdefault("source", "rrsa")
        super().__init__(role_arn=role_arn, oidc_provider_arn=oidc_provider_arn, token=self._read_token, **kwargs)

    async def _read_token(self) -> str:
        try:
            return await asyncio.to_thread(_read_text, self.oidc_token_file)
        except OSError as exc:
            raise CredentialsError(
                f"cannot read the RRSA token file {ENV_OIDC_TOKEN_FILE}={self.oidc_token_file}: "
                f"{exc.strerror}; check the pod's projected ServiceAccount token volume"
            ) from None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **kwargs: Any) -> RrsaProvider:
        env = os.environ if environ is None else environ
        return cls(
            role_arn=env.get(ENV_ROLE_ARN, ""),
            oidc_provider_arn=env.get(ENV_OIDC_PROVIDER_ARN, ""),
            oidc_token_file=env.get(ENV_OIDC_TOKEN_FILE, ""),
            sts_endpoint=sts_endpoint_from_env(env),
            session_name=env.get(ENV_ROLE_SESSION_NAME) or "secretstage-operator",
            **kwargs,
        )

    @staticmethod
    def configured(environ: Mapping[str, str] | None = None) -> bool:
        env = os.environ if environ is None else environ
        return all(env.get(k) for k in (ENV_ROLE_ARN, ENV_OIDC_PROVIDER_ARN, ENV_OIDC_TOKEN_FILE))


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def default_provider(environ: Mapping[str, str] | None = None, **rrsa_kwargs: Any) -> CredentialsProvider:
    """The standard chain: AccessKey environment variables, then RRSA environment variables."""
    env = os.environ if environ is None else environ
    static = EnvironmentProvider(env)
    if static.available():
        return static
    if RrsaProvider.configured(env):
        return RrsaProvider.from_env(env, **rrsa_kwargs)
    raise CredentialsError(
        "no Alibaba Cloud credentials found; looked for "
        f"{ENV_ACCESS_KEY_ID} + {ENV_ACCESS_KEY_SECRET} (optional {ENV_SECURITY_TOKEN}), then RRSA "
        f"{ENV_ROLE_ARN} + {ENV_OIDC_PROVIDER_ARN} + {ENV_OIDC_TOKEN_FILE}"
    )
