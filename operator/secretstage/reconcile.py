"""One reconcile attempt of a SecretStagePromotion, from spec to written status.

Resolves what a promotion needs before KMS is called (endpoint and its policy, credentials) and
hands over to ``protocol``. kopf-free, so it can be read and tested without the framework.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx

from secretstage import aftersuccess, gating, identities, kube, protocol
from secretstage.approvals import ApprovalPolicyCheck
from secretstage.config import Settings
from secretstage.domain import outcome as outcomes
from secretstage.domain.gate import Check, Gate
from secretstage.domain.identity import IdentityProblem, role_arn_for
from secretstage.domain.journal import Journal
from secretstage.domain.outcome import AttemptResult
from secretstage.domain.policy import endpoint_problem
from secretstage.domain.promotion import InvalidPromotion, PromotionRequest, parse_spec
from secretstage.domain.status import WAITING_REASONS, events_for
from secretstage.identities import ServiceAccountIdentities
from secretstage.kms import (
    ConfigurationError,
    CredentialsError,
    CredentialsProvider,
    FairGate,
    KmsClient,
    RetryPolicy,
    StaticProvider,
    TokenBucket,
    kms_endpoint,
    normalize_endpoint,
)
from secretstage.kubehttp import KubeHttp, path
from secretstage.metrics import Metrics


def utcnow() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class RecentlyFinished:
    """Generations this process finished, by the resourceVersions it wrote for them, whose final
    status kopf may not have seen yet.

    kopf hands the handler the newest body it has; right after our final status write that can still
    be the body of our intent write (its watch event came first), which looks unfinished. Without
    this record kopf would start the same generation again: a KMS read, a status write refused by
    compare-and-set (409), a GET, for nothing. Only bodies this process wrote itself are skipped:
    a status changed by anyone else since (a hand edit) is a new resourceVersion and runs, as it
    would after a restart. An entry goes once kopf shows a final status for that generation; the cap
    bounds what objects deleted before that leave behind.
    """

    def __init__(self, capacity: int = 4096) -> None:
        self._generations: OrderedDict[str, tuple[int, frozenset[str]]] = OrderedDict()
        self.capacity = capacity

    def add(self, uid: str, generation: int, resource_versions: Iterable[str]) -> None:
        self._generations[uid] = (generation, frozenset(resource_versions))
        self._generations.move_to_end(uid)
        while len(self._generations) > self.capacity:
            self._generations.popitem(last=False)

    def covers(self, uid: str, generation: int | None, resource_version: str | None) -> bool:
        entry = self._generations.get(uid)
        return entry is not None and entry[0] == generation and resource_version in entry[1]

    def forget(self, uid: str) -> None:
        self._generations.pop(uid, None)

    def __len__(self) -> int:
        return len(self._generations)


@dataclass
class Runtime:
    """What every attempt shares: one KMS HTTP client, one rate limiter, the Kubernetes clients, metrics."""

    settings: Settings
    http: httpx.AsyncClient
    rate_limiter: TokenBucket
    gate: FairGate
    kube: KubeHttp  # every Kubernetes call of a promotion: credentials, tokens, status, afterSuccess
    metrics: Metrics
    operator_credentials: CredentialsProvider | None = None
    identities: ServiceAccountIdentities | None = None  # with --oidc-provider-arn: serviceAccountRef
    rng: random.Random = field(default_factory=random.Random)
    locks: protocol.SecretLocks = field(default_factory=protocol.SecretLocks)
    finished: RecentlyFinished = field(default_factory=RecentlyFinished)
    fence: Callable[[], str | None] | None = None  # with leader election: LeaderElector.fence_problem
    user_agent: str = "secretstage-operator"
    approval_policy: ApprovalPolicyCheck | None = None  # spec.approval: is the admission policy in force

    async def aclose(self) -> None:
        await self.http.aclose()
        await self.kube.aclose()


def _endpoint(request: PromotionRequest, settings: Settings) -> tuple[str, str | None]:
    """The endpoint, and the region whose secret store it reaches where that is known."""
    if request.endpoint:
        return normalize_endpoint(request.endpoint, field="spec.endpoint"), request.secret_region
    arn_region = request.secret_region
    if arn_region and request.region_id and arn_region != request.region_id:
        raise ConfigurationError(
            f"spec.secretName is an ARN in {arn_region} but spec.regionId is {request.region_id}; make them agree"
        )
    region = request.region_id or arn_region or settings.default_region
    if not region:
        raise ConfigurationError(
            "set spec.regionId (e.g. cn-hangzhou) or spec.endpoint; the operator has no "
            "default region (--default-region)"
        )
    return kms_endpoint(region, template=settings.kms_endpoint_template), region


def _fail(reason: str, message: str) -> AttemptResult:
    return AttemptResult(outcome=outcomes.failed(reason, message))


async def _credentials(
    runtime: Runtime, request: PromotionRequest, namespace: str, attempt: int
) -> CredentialsProvider | AttemptResult:
    if request.credentials_service_account:
        return await _service_account_identity(runtime, request.credentials_service_account, namespace, attempt)
    if request.operator_identity:
        allowed = runtime.settings.operator_identity_namespaces
        if "*" not in allowed and namespace not in allowed:
            return _fail(
                "OperatorIdentityNotAllowed",
                f"spec.credentials.operatorIdentity is not allowed in namespace {namespace} (the operator's "
                "--operator-identity-namespaces does not list it); use spec.credentials.serviceAccountRef or secretRef",
            )
        if runtime.operator_credentials is None:
            return _fail(
                "OperatorIdentityNotConfigured",
                "the operator has no identity of its own (no RRSA or "
                "ALIBABA_CLOUD_ACCESS_KEY_* environment); use spec.credentials.secretRef",
            )
        return runtime.operator_credentials
    assert request.credentials_secret is not None
    try:
        creds = await kube.read_credentials(runtime.kube, namespace, request.credentials_secret)
    except kube.CredentialsNotFound as exc:
        return AttemptResult(outcome=outcomes.pending("CredentialsNotFound", str(exc), attempt, rng=runtime.rng))
    except kube.CredentialsUnavailable as exc:
        return AttemptResult(outcome=outcomes.pending("CredentialsUnavailable", str(exc), attempt, rng=runtime.rng))
    except (kube.CredentialsInvalid, CredentialsError) as exc:
        return _fail("CredentialsInvalid", str(exc))
    return StaticProvider(creds)


async def _service_account_identity(
    runtime: Runtime, service_account: str, namespace: str, attempt: int
) -> CredentialsProvider | AttemptResult:
    """The promotion's own ServiceAccount (same namespace, always), its annotated role, a cached STS session."""
    if runtime.identities is None:
        return _fail(
            "ServiceAccountIdentityNotConfigured",
            "spec.credentials.serviceAccountRef needs the operator's --oidc-provider-arn (the cluster's OIDC "
            "provider in RAM); ask the operator's administrators, or use spec.credentials.secretRef",
        )
    try:
        annotations = await kube.read_service_account_annotations(runtime.kube, namespace, service_account)
    except kube.CredentialsNotFound as exc:
        return AttemptResult(outcome=outcomes.pending("ServiceAccountNotFound", str(exc), attempt, rng=runtime.rng))
    except kube.CredentialsUnavailable as exc:
        return AttemptResult(outcome=outcomes.pending("CredentialsUnavailable", str(exc), attempt, rng=runtime.rng))
    try:
        role = role_arn_for(
            namespace,
            service_account,
            annotations,
            runtime.identities.oidc_provider_arn,
            accept_ack_annotation=runtime.identities.accept_ack_annotation,
            operator=runtime.identities.operator,
        )
    except IdentityProblem as exc:
        return _fail(exc.reason, str(exc))
    return runtime.identities.provider(namespace, service_account, role)


def service_account_tokens(client: KubeHttp) -> Callable[[str, str], Callable[[], Awaitable[str]]]:
    """TokenRequest tokens for STS: a fresh one per exchange, never cached, logged or stored."""

    def source(namespace: str, name: str) -> Callable[[], Awaitable[str]]:
        async def token() -> str:
            return await kube.request_token(client, namespace, name, identities.STS_AUDIENCE, identities.TOKEN_SECONDS)

        return token

    return source


async def prepare(
    runtime: Runtime, spec: Mapping[str, Any], namespace: str, attempt: int
) -> tuple[PromotionRequest, KmsClient, protocol.SecretKey] | AttemptResult:
    """What a promotion needs before KMS is called: a valid spec, an allowed endpoint, credentials;
    and the key of its secret for the per-secret lock."""
    try:
        request = parse_spec(spec)
    except InvalidPromotion as exc:
        return _fail("InvalidSpec", str(exc))
    try:
        endpoint, region = _endpoint(request, runtime.settings)
    except ConfigurationError as exc:
        return _fail("InvalidSpec", str(exc))
    problem = endpoint_problem(endpoint, runtime.settings.endpoint_allow)
    if problem is not None:
        return _fail("EndpointNotAllowed", problem)
    credentials = await _credentials(runtime, request, namespace, attempt)
    if isinstance(credentials, AttemptResult):
        return credentials
    client = KmsClient(
        endpoint=endpoint,
        credentials=credentials,
        signature=request.signature,
        http=runtime.http,
        retry=RetryPolicy(max_attempts=runtime.settings.kms_max_attempts, base_delay=0.2, max_delay=2.0),
        rate_limiter=runtime.rate_limiter,
        gate=runtime.gate,
        tenant=namespace,
        observer=runtime.metrics.observe_kms,
        rng=runtime.rng,
        fence=runtime.fence,
        user_agent=runtime.user_agent,
    )
    return request, client, protocol.secret_key(namespace, endpoint, request.secret_name, region)


async def reserve_unlanded_moves(runtime: Runtime) -> int:
    """At start-up, before any promotion runs: reserve the secret of every promotion whose journal shows
    a move (or ACSPrevious fix-up) that got no answer and may still land (``protocol.reserve_unlanded``).
    A restart forgets the reservations in memory; without this a rival could move the secret first
    and be undone by the late request. One paginated LIST per watched namespace (or of all);
    returns how many were reserved."""
    scopes = [("namespaces", ns) for ns in runtime.settings.namespaces] or [("", "")]
    reserved = 0
    for segment, namespace in scopes:
        base = path("apis", kube.GROUP, kube.VERSION, *((segment, namespace) if segment else ()), kube.PLURAL)
        token = ""
        while True:
            query = urlencode({"limit": 500, **({"continue": token} if token else {})})
            page = await runtime.kube.request(namespace or "-", "GET", f"{base}?{query}")
            for obj in page.get("items") or []:
                reserved += _reserve_from(runtime, obj)
            token = str((page.get("metadata") or {}).get("continue") or "")
            if not token:
                break
    return reserved


def _reserve_from(runtime: Runtime, obj: Mapping[str, Any]) -> int:
    status, meta = obj.get("status") or {}, obj.get("metadata") or {}
    generation = status.get("observedGeneration")
    journal = Journal.of(status, generation) if isinstance(generation, int) else Journal()
    if journal.move is None or not journal.move.may_still_land():
        return 0
    try:
        request = parse_spec(obj.get("spec") or {})
        endpoint, region = _endpoint(request, runtime.settings)
    except (InvalidPromotion, ConfigurationError):
        return 0
    namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
    key = protocol.secret_key(namespace, endpoint, request.secret_name, region)
    protocol.reserve_unlanded(runtime.locks, key, str(meta.get("uid") or ""), f"{namespace}/{name}", status)
    return 1 if runtime.locks.holder(key) is not None else 0


def _after_success_runner(runtime: Runtime, request: PromotionRequest, namespace: str) -> protocol.AfterSuccessRunner:
    async def run(version: str | None) -> list[dict[str, str]]:
        follow_ups = await aftersuccess.run_all(
            runtime.kube,
            namespace,
            request.restart,
            request.refresh_external_secrets,
            now=utcnow(),
            stamp=str(int(datetime.now(UTC).timestamp())),
            version=version,
        )
        return [f.to_status() for f in follow_ups]

    return run


def _gate_runner(runtime: Runtime, request: PromotionRequest, owner: gating.Owner) -> protocol.GateRunner:
    async def run(gate: Gate, version: str) -> list[Check]:
        return await gating.checks(runtime.kube, owner, gate, version, restart=request.restart)

    return run


def _approval_policy(runtime: Runtime, created: str) -> protocol.ApprovalPolicy | None:
    check = runtime.approval_policy
    if check is None:
        return None

    async def problem() -> str | None:
        return await check.problem(created)

    return problem


@dataclass
class Attempt:
    result: AttemptResult
    status: Mapping[str, Any]  # the status as written
    events: list[tuple[str, str, str]]  # (type, reason, message)
    resource_versions: tuple[str, ...] = ()  # of the object as this attempt wrote it


async def run_attempt(
    runtime: Runtime,
    *,
    spec: Mapping[str, Any],
    status: Mapping[str, Any],
    namespace: str,
    name: str,
    generation: int,
    resource_version: str,
    uid: str = "",
    annotations: Mapping[str, str] | None = None,
    created: str = "",
) -> Attempt:
    """One attempt with its bookkeeping: the protocol's journaled status writes, metrics, events.

    Raises ``protocol.AttemptAborted`` when the object changed under the attempt (a stale copy,
    another replica, a newer generation before the move, a delete or re-create), and
    ``kube.StatusWriteFailed`` when the API server cannot be written.
    """
    number = (int(status.get("attempts") or 0) if status.get("observedGeneration") == generation else 0) + 1
    store = kube.PromotionStatus(
        runtime.kube, namespace, name, status, resource_version, uid=uid, generation=generation
    )
    with runtime.metrics.in_flight.track_inprogress():
        prepared = await prepare(runtime, spec, namespace, number)
        if isinstance(prepared, AttemptResult):
            result = prepared
            await protocol.write_status(store, status, result, result.outcome, generation, number, utcnow, uid=uid)
        else:
            request, client, key = prepared
            attempt = protocol.Attempt(
                request=request,
                kms=client,
                store=store,
                generation=generation,
                number=number,
                now=utcnow,
                after_success=_after_success_runner(runtime, request, namespace),
                gate_checks=_gate_runner(runtime, request, gating.Owner(namespace, name, uid, generation)),
                gate_refusals=lambda gate: gating.cannot_run(runtime.kube, namespace, gate, request.restart),
                canary=lambda: gating.canary(runtime.kube, gating.Owner(namespace, name, uid, generation), spec),
                rng=runtime.rng,
                locks=runtime.locks,
                key=key,
                who=f"{namespace}/{name}",
                annotations=dict(annotations or {}),
                approval_policy=_approval_policy(runtime, created),
            )
            result = await attempt.run()
    runtime.metrics.promotions.labels(result.outcome.kind.value, result.outcome.reason).inc()
    runtime.metrics.waiting_for(uid, result.outcome.reason if result.outcome.reason in WAITING_REASONS else None)
    events = events_for(result, status, number)
    for _, reason, _ in events:
        if reason in ("PromotionApproved", "PromotionRejected"):
            runtime.metrics.approval_decisions.labels(reason.removeprefix("Promotion").lower()).inc()
    return Attempt(
        result=result,
        status=store.status,
        events=events,
        resource_versions=tuple(store.written),
    )
