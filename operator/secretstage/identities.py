"""Per-namespace workload identity: one STS session per (namespace, ServiceAccount, role).

A promotion with ``spec.credentials.serviceAccountRef`` assumes the RAM role its own
ServiceAccount is annotated with (``domain.identity``), by exchanging a short-lived TokenRequest
token of that ServiceAccount (audience ``sts.aliyuncs.com``) at STS AssumeRoleWithOIDC. The
session is cached until shortly before it expires and shared by that ServiceAccount's promotions,
never by another namespace's: the namespace is part of the key, and it is always the promotion's.

The cache is fair between tenants, so that no namespace can push the others' sessions out and make
every attempt of theirs cost a TokenRequest and an STS exchange (and the throttling that follows):

* a session enters the cache only after its first successful exchange; one being tried waits
  beside it, at most ``max_per_namespace`` of them per namespace (a role that does not exist, or
  does not trust the ServiceAccount, costs its namespace a slot for no longer than the attempt);
* each namespace keeps at most ``max_per_namespace`` sessions, its least recently used go first;
* past ``max_sessions`` in all, the namespace holding the most gives up its least recently used.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

import httpx

from secretstage.domain.identity import UNKNOWN_OPERATOR, OperatorIdentity, session_name
from secretstage.kms import OidcRoleProvider, TokenSource

STS_AUDIENCE = "sts.aliyuncs.com"
TOKEN_SECONDS = 600  # TokenRequest's minimum: the token is only needed for the one exchange

_Key = tuple[str, str]  # (ServiceAccount, role ARN) within a namespace


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
        max_per_namespace: int = 32,
        accept_ack_annotation: bool = False,
        operator: OperatorIdentity = UNKNOWN_OPERATOR,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.oidc_provider_arn = oidc_provider_arn
        self.sts_endpoint = sts_endpoint
        self.accept_ack_annotation = accept_ack_annotation
        self.operator = operator
        self._token_source = token_source
        self._http = http
        self._on_refresh = on_refresh
        self._duration = duration_seconds
        self._max = max_sessions
        self._max_per_namespace = max_per_namespace
        self._clock = clock
        self._sessions: dict[str, OrderedDict[_Key, OidcRoleProvider]] = {}  # established, LRU order
        self._trying: dict[str, OrderedDict[_Key, OidcRoleProvider]] = {}  # no successful exchange yet
        self._count = 0

    def provider(self, namespace: str, service_account: str, role_arn: str) -> OidcRoleProvider:
        key = (service_account, role_arn)
        sessions = self._sessions.get(namespace)
        if sessions is not None and key in sessions:
            sessions.move_to_end(key)
            return sessions[key]
        trying = self._trying.setdefault(namespace, OrderedDict())
        session = trying.get(key)
        if session is None:
            # concurrent promotions of one ServiceAccount share the one exchange being tried
            session = OidcRoleProvider(
                role_arn=role_arn,
                oidc_provider_arn=self.oidc_provider_arn,
                token=self._token_source(namespace, service_account),
                sts_endpoint=self.sts_endpoint,
                session_name=session_name(namespace, service_account),
                duration_seconds=self._duration,
                http=self._http,
                clock=self._clock,
                on_refresh=lambda: self._established(namespace, key),
                source=f"ServiceAccount {namespace}/{service_account}",
            )
            trying[key] = session
            while len(trying) > self._max_per_namespace:
                trying.popitem(last=False)
        return session

    def _established(self, namespace: str, key: _Key) -> None:
        if self._on_refresh is not None:
            self._on_refresh()
        trying = self._trying.get(namespace)
        session = trying.pop(key, None) if trying is not None else None
        if trying is not None and not trying:
            del self._trying[namespace]
        if session is None:  # a refresh of a cached session, or one pushed out while it was tried
            return
        sessions = self._sessions.setdefault(namespace, OrderedDict())
        sessions[key] = session
        self._count += 1
        if len(sessions) > self._max_per_namespace:
            self._evict(namespace)
        while self._count > self._max:
            self._evict(max(self._sessions, key=lambda ns: len(self._sessions[ns])))

    def _evict(self, namespace: str) -> None:
        """Its least recently used session; it only costs that namespace a new exchange."""
        sessions = self._sessions[namespace]
        sessions.popitem(last=False)
        self._count -= 1
        if not sessions:
            del self._sessions[namespace]

    def __len__(self) -> int:
        return self._count

    def sessions_of(self, namespace: str) -> int:
        return len(self._sessions.get(namespace, ()))
