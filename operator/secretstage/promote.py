"""The one use case: carry out a PromotionRequest against KMS and report what happened.

The only module that imports both the domain and the KMS layer. Every decision is made from a
fresh ListSecretVersionIds, so a retried attempt recognises a move that already happened.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Mapping

from secretstage.domain import planning
from secretstage.domain.outcome import AttemptResult, HistoryEntry, Kind, Outcome, failed, from_kms_error
from secretstage.domain.promotion import ACS_CURRENT, PromotionRequest
from secretstage.kms import KmsApiError, KmsClient, KmsError

log = logging.getLogger(__name__)


class _Recorder:
    def __init__(self, now: Callable[[], str]) -> None:
        self.now = now
        self.result = AttemptResult(outcome=Outcome(Kind.RETRY, "InProgress", ""))

    def ok(self, action: str, request_id: str) -> None:
        self.result.history.append(HistoryEntry(self.now(), action, request_id, "Success"))
        if request_id:
            self.result.request_ids.append(request_id)

    def error(self, action: str, exc: KmsError) -> None:
        self.result.history.append(HistoryEntry(self.now(), action, exc.request_id, exc.code))
        if exc.request_id:
            self.result.request_ids.append(exc.request_id)


async def _placement(client: KmsClient, request: PromotionRequest, rec: _Recorder) -> tuple[dict[str, str], set[str]]:
    listing = await client.list_secret_version_ids(request.secret_name, include_deprecated=True)
    for rid in listing.request_ids:
        rec.ok("ListSecretVersionIds", rid)
    return listing.placement(), {v.version_id for v in listing.versions}


async def _update(client: KmsClient, request: PromotionRequest, call: planning.StageCall, rec: _Recorder) -> str:
    action = f"UpdateSecretVersionStage {call.describe()}"
    try:
        result = await client.update_secret_version_stage(
            request.secret_name,
            call.version_stage,
            move_to_version=call.move_to_version,
            remove_from_version=call.remove_from_version,
        )
    except KmsError as exc:
        rec.error(action, exc)
        raise
    rec.ok(action, result.request_id)
    return result.request_id


async def promote(
    request: PromotionRequest,
    client: KmsClient,
    *,
    attempt: int,
    recorded_before: Mapping[str, str] | None = None,
    now: Callable[[], str],
    rng: random.Random | None = None,
    checkpoint: Callable[[AttemptResult], Awaitable[None]] | None = None,
) -> AttemptResult:
    """One attempt. ``recorded_before``: the placement the first attempt of this generation saw.

    ``checkpoint`` is awaited just before the first mutating call, with the placement read so far:
    the caller records it durably (status), so a crash mid-call still knows where the stage was.
    """
    rec = _Recorder(now)
    result = rec.result
    try:
        before, versions = await _placement(client, request, rec)
        result.stages_before = before
        try:
            plan = planning.plan(request, before, versions)
        except planning.PlanRejected as rejected:
            result.outcome = failed(rejected.reason, rejected.message)
            result.request_id = rec.result.request_ids[-1] if rec.result.request_ids else None
            return result
        result.plan = plan.describe()
        original = recorded_before or before
        old_holder = original.get(request.version_stage) if request.version_stage == ACS_CURRENT else None

        if request.dry_run:
            result.request_id = result.request_ids[-1]
            result.stages_after = before
            result.outcome = Outcome(Kind.SUCCEEDED, "DryRun", f"dry run, nothing changed; would {plan.describe()}")
            return result

        moved = False
        if plan.call is not None:
            if checkpoint is not None and recorded_before is None:
                result.outcome = Outcome(Kind.RETRY, "Promoting", f"{plan.describe()}: calling KMS")
                await checkpoint(result)
            try:
                result.request_id = await _update(client, request, plan.call, rec)
                moved = True
            except KmsApiError as exc:
                if exc.retryable:
                    raise
                # The call may have been applied on an earlier attempt whose answer was lost:
                # read back before calling it a failure.
                after, _ = await _placement(client, request, rec)
                if planning.verify(request, after) is not None:
                    raise
                log.info(
                    "%s: KMS rejected a repeated move (%s) that had already been applied", request.secret_name, exc.code
                )
                result.request_id = exc.request_id

        after = before
        if request.verify or old_holder:
            after, _ = await _placement(client, request, rec)
            fix = planning.previous_fixup(request, old_holder, after)
            if fix is not None:
                await _update(client, request, fix, rec)
                after, _ = await _placement(client, request, rec)
            result.stages_after = after
        if request.verify:
            problem = planning.verify(request, after)
            if problem is not None:
                result.outcome = failed("VerificationFailed", problem)
                return result
        if result.request_id is None:
            result.request_id = result.request_ids[-1] if result.request_ids else None
        if moved:
            result.outcome = Outcome(Kind.SUCCEEDED, "Promoted", f"{plan.describe()} (RequestId {result.request_id})")
        else:
            result.outcome = Outcome(
                Kind.SUCCEEDED,
                "AlreadyInPlace",
                f"{request.version_stage} is already on {request.move_to_version or 'no version'}"
                " as asked; nothing sent",
            )
        return result
    except KmsError as exc:
        result.outcome = from_kms_error(exc.code, exc.message, exc.request_id, exc.retryable, attempt, rng=rng)
        return result
