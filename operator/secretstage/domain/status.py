"""Build ``.status`` from an attempt: phase, conditions, RequestIds, history. Pure.

Conditions follow metav1.Condition and the rules kubectl wait, kstatus (Flux) and Argo CD apply
(docs/status.md): every condition carries observedGeneration; ``Succeeded`` is Unknown while in
flight and final (True/False) once the generation is done; ``Reconciling``/``Stalled`` are the
kstatus abnormal-true pair; a failure always sets a False condition.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from secretstage.domain.gate import Verdict
from secretstage.domain.outcome import PHASES, AttemptResult, Kind

HISTORY_LIMIT = 10
REQUEST_IDS_LIMIT = 10
MESSAGE_LIMIT = 1024


def _condition(
    type_: str, status: str, reason: str, message: str, generation: int, now: str, old: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    previous = next((c for c in old if c.get("type") == type_), None)
    changed = previous is None or previous.get("status") != status
    earlier = str(previous.get("lastTransitionTime") or "") if previous else ""
    # RFC 3339 UTC timestamps of one format compare as strings; never let a transition time go back
    # (another replica's clock, or a write built from an older copy of the status).
    transition = max(now, earlier) if changed else (earlier or now)
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message[:MESSAGE_LIMIT],
        "observedGeneration": generation,
        "lastTransitionTime": transition,
    }


def conditions_for(
    kind: Kind, reason: str, message: str, generation: int, now: str, old: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    if kind is Kind.SUCCEEDED:
        values = {"Ready": "True", "Succeeded": "True", "Reconciling": "False", "Stalled": "False"}
    elif kind is Kind.FAILED:
        values = {"Ready": "False", "Succeeded": "False", "Reconciling": "False", "Stalled": "True"}
    else:
        values = {"Ready": "Unknown", "Succeeded": "Unknown", "Reconciling": "True", "Stalled": "False"}
    return [_condition(t, s, reason, message, generation, now, old) for t, s in values.items()]


def build_status(
    old: Mapping[str, Any],
    *,
    result: AttemptResult,
    generation: int,
    now: str,
    attempt: int | None = None,
    latest: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole new status (a merge patch: ``None`` removes a field).

    ``old`` is the status the attempt started from (history and the attempt count build on it);
    ``latest`` the status as last written by this attempt (intent), so conditions and startTime
    continue from there. ``attempt`` is this attempt's number within the generation.
    """
    latest = old if latest is None else latest
    same_generation = old.get("observedGeneration") == generation
    outcome = result.outcome
    if attempt is None:
        attempt = (int(old.get("attempts") or 0) if same_generation else 0) + 1
    history = [*(old.get("history") or []), *(h.to_status() for h in result.history)][-HISTORY_LIMIT:]
    started = latest.get("startTime") if latest.get("observedGeneration") == generation else None
    status: dict[str, Any] = {
        "phase": PHASES[outcome.kind],
        "observedGeneration": generation,
        "attempts": attempt,
        "startTime": started or now,
        "completionTime": now if outcome.terminal else None,
        "lastError": outcome.error.to_status() if outcome.error else None,
        "history": history,
        "conditions": conditions_for(
            outcome.kind, outcome.reason, outcome.message, generation, now, latest.get("conditions") or []
        ),
        # Only the UpdateSecretVersionStage RequestId (the ActionTrail join key), never a read's.
        "requestId": result.request_id,
        "requestIds": result.request_ids[-REQUEST_IDS_LIMIT:] or None,
        "move": result.move.to_status() if result.move else None,
        "stagesBefore": result.stages_before,
        "stagesAfter": result.stages_after,
        "plan": result.plan,
        "afterSuccess": result.after_success or None,
        "queue": None,  # its turn came: the queue position written while it waited no longer holds
        "schedule": {"opensTime": result.schedule_opens} if result.schedule_opens else None,
        # Who approved stays for the generation: attempts after the move do not look again.
        "approval": result.approval.to_status()
        if result.approval is not None
        else (latest.get("approval") if same_generation else None),
        "gate": result.gate.to_status() if result.gate else None,
        "rollback": result.rollback.to_status() if result.rollback else None,
        "inherited": result.inherited.to_status() if result.inherited else None,
        "consumers": [
            {k: v for k, v in c.to_status().items() if k != "verdict"}
            for c in result.gate.checks
            if c.kind not in ("Job", "AnalysisRun")
        ]
        if result.gate and result.gate.checks
        else None,
    }
    if result.gate is not None:
        status["conditions"].append(_verified(result, generation, now, latest.get("conditions") or []))
    # A JSON merge patch merges objects key by key: a stage gone from stagesAfter, or a move field
    # gone from the journal, must be sent as null or the old value stays.
    for key in ("stagesBefore", "stagesAfter", "move", "gate", "rollback", "inherited"):
        status[key] = _replacing(status[key], latest.get(key))
    return status


def _verified(result: AttemptResult, generation: int, now: str, old: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``Verified``: Unknown while the gate runs, True when every check passed, False when one failed."""
    assert result.gate is not None
    verdict = result.gate.verdict
    if verdict is Verdict.PASSED:
        return _condition("Verified", "True", "ChecksPassed", "every gate check passed", generation, now, old)
    if verdict is Verdict.FAILED:
        return _condition("Verified", "False", "CheckFailed", result.gate.failed_check or "", generation, now, old)
    if verdict is Verdict.INCONCLUSIVE:
        return _condition("Verified", "False", "Inconclusive", result.gate.failed_check or "", generation, now, old)
    waiting = [c.message for c in result.gate.checks if c.verdict is Verdict.PENDING]
    message = f"waiting until {result.gate.deadline}: " + "; ".join(waiting) if waiting else "the gate started"
    return _condition("Verified", "Unknown", "Verifying", message, generation, now, old)


def _replacing(new: Mapping[str, Any] | None, old: Any) -> dict[str, Any] | None:
    if new is None:
        return None
    if not isinstance(old, Mapping):
        return dict(new)
    return {**{k: None for k in old if k not in new}, **new}


def queued_status(generation: int, now: str, message: str, queue: Mapping[str, Any]) -> dict[str, Any]:
    """The status of a generation that waits for its turn and has sent nothing: phase Pending, reason
    Queued (kstatus InProgress, Argo CD Progressing). Written only over an empty status, so it never
    hides an earlier generation's journal."""
    conditions = conditions_for(Kind.PENDING, "Queued", message, generation, now, [])
    return {
        "phase": "Pending",
        "observedGeneration": generation,
        "attempts": 0,
        "conditions": conditions,
        "queue": dict(queue),
    }


def is_done(status: Mapping[str, Any], generation: int | None) -> bool:
    """True when this generation already reached a final phase: never call KMS for it again."""
    return status.get("observedGeneration") == generation and status.get("phase") in ("Succeeded", "Failed")


#: Waiting as planned (domain.schedule, domain.approval): a Normal Event of its own, once per reason.
PLANNED_WAITS = {
    "NotBefore": "PromotionScheduled",
    "OutsideWindow": "PromotionScheduled",
    "AwaitingApproval": "PromotionAwaitingApproval",
}
#: Waits whose status, once written, an attempt that finds the same does not write again.
WAITING_REASONS = (*PLANNED_WAITS, "ApprovalUntrusted")


def succeeded_condition(status: Mapping[str, Any]) -> Mapping[str, Any]:
    """The ``Succeeded`` condition of a status ({} when there is none): its reason is the outcome's."""
    return next((c for c in status.get("conditions") or [] if c.get("type") == "Succeeded"), {})


EVENT_REASONS = {
    Kind.SUCCEEDED: "Promoted",
    Kind.FAILED: "PromotionFailed",
    Kind.RETRY: "PromotionRetrying",
    Kind.PENDING: "PromotionPending",
    Kind.VERIFYING: "PromotionVerifying",
}


def events_for(result: AttemptResult, old: Mapping[str, Any], attempt: int) -> list[tuple[str, str, str]]:
    """(type, reason, message) of the Events to post: every final outcome, and a retry or wait only on the
    first attempt or when its reason changes (not on every retry)."""
    outcome = result.outcome
    previous = succeeded_condition(old).get("reason")
    events = []
    approval, earlier = result.approval, old.get("approval") or {}
    if approval is not None and approval.decision == "Approved" and earlier != approval.to_status():
        # once, when the attempt that found it approved writes it (later attempts carry the record on)
        users = ", ".join(user for user, _ in approval.approved)
        events.append(("Normal", "PromotionApproved", f"generation {approval.generation} approved by {users}"))
    if outcome.reason in PLANNED_WAITS:
        # Waiting for its schedule or its approvers is the plan, not a problem: a Normal Event, once per reason.
        if previous != outcome.reason:
            events.append(("Normal", PLANNED_WAITS[outcome.reason], outcome.message[:1000]))
    elif outcome.terminal or attempt == 1 or previous != outcome.reason:
        event_type = "Normal" if outcome.kind is Kind.SUCCEEDED and outcome.error is None else "Warning"
        reason = "PromotionRejected" if outcome.reason == "Rejected" else EVENT_REASONS[outcome.kind]
        events.append((event_type, reason, outcome.message[:1000]))
    follow_ups = [*(result.after_success if result.after_success_changed else ())]
    if result.rollback is not None and result.rollback_restarts_changed:
        follow_ups += result.rollback.after_success
    for follow_up in follow_ups:
        ok = follow_up["result"] in ("Restarted", "Refreshed")
        reason = follow_up["result"] if ok else f"AfterSuccess{follow_up['result']}"
        events.append(("Normal" if ok else "Warning", reason, follow_up["message"]))
    return events
