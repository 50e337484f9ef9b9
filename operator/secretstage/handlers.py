"""kopf handlers: read the object, run one reconcile attempt, write status and events. Nothing else."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from secretstage import reconcile as reconciling
from secretstage.domain.outcome import AttemptResult, Kind
from secretstage.domain.status import build_status, is_done

GROUP, VERSION, PLURAL = "secretstage.io", "v1alpha1", "secretstagepromotions"
registry = kopf.OperatorRegistry()
EVENT_REASONS = {
    Kind.SUCCEEDED: "Promoted",
    Kind.FAILED: "PromotionFailed",
    Kind.RETRY: "PromotionRetrying",
    Kind.PENDING: "PromotionPending",
}


def _not_done(status: kopf.Status, meta: kopf.Meta, **_: Any) -> bool:
    return not is_done(status, meta.get("generation"))


@kopf.on.startup(registry=registry)
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # kopf's bookkeeping lives in annotations under our group: a structural CRD schema prunes
    # anything kopf would write into .status, and handlers would then loop.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="secretstage.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="secretstage.io", key="last-handled-configuration"
    )
    settings.persistence.finalizer = "secretstage.io/finalizer"
    settings.scanning.disabled = True  # RBAC then needs no cluster-wide CRD or namespace listing
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # kopf's default 0.1 s window waits for more events of the same object; a promotion is one event.
    settings.batching.batch_window = memo.runtime.settings.kopf_batch_window
    settings.batching.worker_limit = memo.runtime.settings.max_workers


@kopf.on.login(registry=registry)
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In-cluster ServiceAccount first, else KUBECONFIG (kopf's own readers; re-read on 401)."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.resume(GROUP, VERSION, PLURAL, registry=registry, when=_not_done)
@kopf.on.create(GROUP, VERSION, PLURAL, registry=registry, when=_not_done)
@kopf.on.update(GROUP, VERSION, PLURAL, registry=registry, field="spec", when=_not_done)
async def promote(
    body: kopf.Body,
    spec: kopf.Spec,
    meta: kopf.Meta,
    status: kopf.Status,
    namespace: str | None,
    name: str | None,
    patch: kopf.Patch,
    memo: Any,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    **_: Any,
) -> None:
    runtime: reconciling.Runtime = memo.runtime
    generation = int(meta.get("generation") or 0)
    attempt = (int(status.get("attempts") or 0) if status.get("observedGeneration") == generation else 0) + 1

    written: dict[str, Any] = {}

    async def checkpoint(partial: AttemptResult) -> None:
        # Durable intent before the first mutating call: a crash mid-call still leaves InProgress
        # and stagesBefore in status, which the next attempt uses (ACSPrevious fix-up, rollback).
        intent = build_status(status, result=partial, generation=generation, now=reconciling.utcnow())
        try:
            await reconciling.write_status(runtime.api, namespace or "", name or "", intent)
        except Exception as exc:  # no intent record, no move: retry the attempt soon
            raise kopf.TemporaryError(
                f"cannot record the intent before the move: {type(exc).__name__}", delay=5
            ) from None
        written.update(intent)

    with runtime.metrics.in_flight.track_inprogress():
        result = await reconciling.reconcile(runtime, spec, namespace or "", status, generation, attempt, checkpoint)
    outcome = result.outcome
    final = build_status(status, result=result, generation=generation, now=reconciling.utcnow())
    if "startTime" in written:
        final["startTime"] = written["startTime"]
    patch.status.update(final)
    runtime.metrics.promotions.labels(outcome.kind.value, outcome.reason).inc()
    previous_reason = next(
        (c.get("reason") for c in status.get("conditions") or [] if c.get("type") == "Succeeded"), None
    )
    if outcome.terminal or attempt == 1 or previous_reason != outcome.reason:
        event_type = "Normal" if outcome.kind is Kind.SUCCEEDED else "Warning"
        kopf.event(body, type=event_type, reason=EVENT_REASONS[outcome.kind], message=outcome.message[:1000])
    for follow_up in result.after_success:
        ok = follow_up["result"] in ("Restarted", "Refreshed")
        reason = follow_up["result"] if ok else f"AfterSuccess{follow_up['result']}"
        kopf.event(body, type="Normal" if ok else "Warning", reason=reason, message=follow_up["message"])
    logger.info("%s: %s (RequestId %s)", outcome.reason, outcome.message, result.request_id or "-")
    if outcome.kind is Kind.FAILED:
        raise kopf.PermanentError(f"{outcome.reason}: {outcome.message}")
    if outcome.kind in (Kind.RETRY, Kind.PENDING):
        raise kopf.TemporaryError(f"{outcome.reason}: {outcome.message}", delay=outcome.delay)
