"""Per-namespace workload identity: one STS session per (namespace, ServiceAccount, role).

A promotion with ``spec.credentials.serviceAccountRef`` assumes the RAM role its own
ServiceAccount is annotated with (``domain.identity``), by exchanging a short-lived TokenRequest
token of that ServiceAccount (audience ``sts.aliyuncs.com``) at STS AssumeRoleWithOIDC. The
session is cached until shortly before it expires and shared by that ServiceAccount's promotions,
never by another namespace's: the namespace is part of the key, and it is always the promotion's.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

import httpx

from secretstage.domain.identity import session_name
from secretstage.kms import OidcRoleProvider, TokenSource

STS_AUDIENCE = "sts.aliyuncs.com"
TOKEN_SECONDS = 600  # TokenRequest's minimum: the token is only needed for the one exchange


class ServiceAccountIdentities:
    def __init__(
        self,
        *,
        oidc_provider_arn: str,
        sts_endpoint: str,
        token_source: Callable[[str, str], TokenSource],
        http: httpx.AsyncClient | None = None,
        on_refresh: Callable[[], None] | None = None,
        duration_seconds: int = 3600,
        max_sessions: int = 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.oidc_provider_arn = oidc_provider_arn
        self.sts_endpoint = sts_endpoint
        self._token_source = token_source
        self._http = http
        self._on_refresh = on_refresh
        self._duration = duration_seconds
        self._max = max_sessions
        self._clock = clock
        self._sessions: OrderedDict[tuple[str, str, str], OidcRoleProvider] = OrderedDict()

    def provider(self, namespace: str, service_account: str, role_arn: str) -> OidcRoleProvider:
        key = (namespace, service_account, role_arn)
        session = self._sessions.get(key)
        if session is None:
            session = OidcRoleProvider(
                role_arn=role_arn,
                oidc_provider_arn=self.oidc_provider_arn,
                token=self._token_source(namespace, service_account),
                sts_endpoint=self.sts_endpoint,
                session_name=session_name(namespace, service_account),
                duration_seconds=self._duration,
                http=self._http,
                clock=self._clock,
                on_refresh=self._on_refresh,
                source=f"ServiceAccount {namespace}/{service_account}",
            )
            self._sessions[key] = session
            while len(self._sessions) > self._max:  # least recently used first; it only costs a new exchange
                self._sessions.popitem(last=False)
        else:
            self._sessions.move_to_end(key)
        return session

    def __len__(self) -> int:
        return len(self._sessions)
