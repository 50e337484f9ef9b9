"""One reconcile attempt of a SecretStagePromotion, from spec to ``AttemptResult``.

Resolves what a promotion needs before KMS is called (endpoint and its policy, credentials) and
hands over to ``promote``. kopf-free, so it can be read and tested without the framework.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from kubernetes import client as k8s

from secretstage import aftersuccess, kube
from secretstage.config import Settings
from secretstage.domain import outcome as outcomes
from secretstage.domain.outcome import AttemptResult, Kind, Outcome
from secretstage.domain.policy import endpoint_problem
from secretstage.domain.promotion import InvalidPromotion, PromotionRequest, parse_spec
from secretstage.domain.status import build_status, events_for
from secretstage.kms import (
    ConfigurationError,
    CredentialsError,
    CredentialsProvider,
    KmsClient,
    KmsError,
    RetryPolicy,
    StaticProvider,
    TokenBucket,
    kms_endpoint,
    normalize_endpoint,
)
from secretstage.metrics import Metrics
from secretstage.promote import promote


async def write_status(api: k8s.ApiClient, namespace: str, name: str, status: Mapping[str, Any]) -> None:
    """A status merge patch outside kopf's end-of-handler patch (the intent record before a move)."""
    custom = k8s.CustomObjectsApi(api)
    await asyncio.to_thread(
        custom.patch_namespaced_custom_object_status,
        "secretstage.io",
        "v1alpha1",
        namespace,
        "secretstagepromotions",
        name,
        {"status": dict(status)},
    )


def utcnow() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Runtime:
    """What every attempt shares: one HTTP client, one rate limiter, one Kubernetes client, metrics."""

    settings: Settings
    http: httpx.AsyncClient
    rate_limiter: TokenBucket
    api: k8s.ApiClient
    metrics: Metrics
    operator_credentials: CredentialsProvider | None = None
    rng: random.Random = field(default_factory=random.Random)

    @property
    def core(self) -> k8s.CoreV1Api:
        return k8s.CoreV1Api(self.api)

    async def aclose(self) -> None:
        await self.http.aclose()


def _endpoint(request: PromotionRequest, settings: Settings) -> str:
    if request.endpoint:
        return normalize_endpoint(request.endpoint, field="spec.endpoint")
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
    return kms_endpoint(region)


def _fail(reason: str, message: str) -> AttemptResult:
    return AttemptResult(outcome=outcomes.failed(reason, message))


async def _credentials(
    runtime: Runtime, request: PromotionRequest, namespace: str, attempt: int
) -> CredentialsProvider | AttemptResult:
    if request.operator_identity:
        if not runtime.settings.allow_operator_identity:
            return _fail(
                "OperatorIdentityNotAllowed",
                "spec.credentials.operatorIdentity is not allowed by this "
                "operator (--allow-operator-identity); use spec.credentials.secretRef",
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
        creds = await kube.read_credentials(runtime.core, namespace, request.credentials_secret)
    except kube.CredentialsNotFound as exc:
        return AttemptResult(outcome=outcomes.pending("CredentialsNotFound", str(exc), attempt, rng=runtime.rng))
    except kube.CredentialsUnavailable as exc:
        return AttemptResult(outcome=outcomes.pending("CredentialsUnavailable", str(exc), attempt, rng=runtime.rng))
    except (kube.CredentialsInvalid, CredentialsError) as exc:
        return _fail("CredentialsInvalid", str(exc))
    return StaticProvider(creds)


Checkpoint = Callable[[AttemptResult], Awaitable[None]]


async def reconcile(
    runtime: Runtime,
    spec: Mapping[str, Any],
    namespace: str,
    status: Mapping[str, Any],
    generation: int,
    attempt: int,
    checkpoint: Checkpoint | None = None,
) -> AttemptResult:
    try:
        request = parse_spec(spec)
    except InvalidPromotion as exc:
        return _fail("InvalidSpec", str(exc))
    try:
        endpoint = _endpoint(request, runtime.settings)
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
        observer=runtime.metrics.observe_kms,
        rng=runtime.rng,
    )
    same_generation = status.get("observedGeneration") == generation
    recorded = status.get("stagesBefore") if same_generation else None
    try:
        result = await promote(
            request,
            client,
            attempt=attempt,
            recorded_before=recorded,
            now=utcnow,
            rng=runtime.rng,
            checkpoint=checkpoint,
        )
    except (CredentialsError, KmsError) as exc:  # raised by a credentials provider before any request
        code = getattr(exc, "code", "CredentialsError")
        return AttemptResult(
            outcome=Outcome(
                Kind.RETRY,
                outcomes.condition_reason(code),
                str(exc),
                outcomes.ErrorInfo(code, str(exc), retryable=True),
                outcomes.backoff_delay(attempt, rng=runtime.rng),
            )
        )
    if result.outcome.kind is Kind.SUCCEEDED and not request.dry_run:
        await _after_success(runtime, request, namespace, result)
    return result


async def _after_success(runtime: Runtime, request: PromotionRequest, namespace: str, result: AttemptResult) -> None:
    if not request.restart and not request.refresh_external_secrets:
        return
    follow_ups = await aftersuccess.run_all(
        runtime.api,
        namespace,
        request.restart,
        request.refresh_external_secrets,
        now=utcnow(),
        stamp=str(int(datetime.now(UTC).timestamp())),
    )
    result.after_success = [f.to_status() for f in follow_ups]


class IntentNotRecorded(Exception):
    """The status write before a move failed, so nothing was sent; the attempt should be retried soon."""


@dataclass
class Attempt:
    result: AttemptResult
    status: dict[str, Any]  # the new status, as a merge patch
    events: list[tuple[str, str, str]]  # (type, reason, message)


async def run_attempt(
    runtime: Runtime, *, spec: Mapping[str, Any], status: Mapping[str, Any], namespace: str, name: str, generation: int
) -> Attempt:
    """One attempt with its bookkeeping: the intent record before a move, the final status, metrics, events."""
    number = (int(status.get("attempts") or 0) if status.get("observedGeneration") == generation else 0) + 1
    written: dict[str, Any] = {}

    async def checkpoint(partial: AttemptResult) -> None:
        # Durable intent before the first mutating call: a crash mid-call still leaves InProgress
        # and stagesBefore in status, which the next attempt uses (ACSPrevious fix-up, rollback).
        intent = build_status(status, result=partial, generation=generation, now=utcnow())
        try:
            await write_status(runtime.api, namespace, name, intent)
        except Exception as exc:
            raise IntentNotRecorded(f"cannot record the intent before the move: {type(exc).__name__}") from None
        written.update(intent)

    with runtime.metrics.in_flight.track_inprogress():
        result = await reconcile(runtime, spec, namespace, status, generation, number, checkpoint)
    final = build_status(status, result=result, generation=generation, now=utcnow())
    if "startTime" in written:
        final["startTime"] = written["startTime"]
    runtime.metrics.promotions.labels(result.outcome.kind.value, result.outcome.reason).inc()
    return Attempt(result=result, status=final, events=events_for(result, status, number))
