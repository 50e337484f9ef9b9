from __future__ import annotations

import random

import pytest

from secretstage.domain.outcome import (
    AttemptResult,
    HistoryEntry,
    Kind,
    Outcome,
    backoff_delay,
    condition_reason,
    failed,
    from_kms_error,
)
from secretstage.domain.status import HISTORY_LIMIT, build_status, is_done

T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z"


def conditions(status: dict[str, object]) -> dict[str, tuple[str, str, int]]:
    return {c["type"]: (c["status"], c["reason"], c["observedGeneration"]) for c in status["conditions"]}  # type: ignore[attr-defined, index]


def test_success_conditions() -> None:
    result = AttemptResult(
        Outcome(Kind.SUCCEEDED, "Promoted", "ok"), request_id="R1", stages_before={"ACSCurrent": "v1"}
    )
    status = build_status({}, result=result, generation=3, now=T0)
    assert status["phase"] == "Succeeded"
    assert status["observedGeneration"] == 3
    assert conditions(status) == {
        "Ready": ("True", "Promoted", 3),
        "Succeeded": ("True", "Promoted", 3),
        "Reconciling": ("False", "Promoted", 3),
        "Stalled": ("False", "Promoted", 3),
    }
    assert status["completionTime"] == T0
    assert status["lastError"] is None
    assert is_done(status, 3)
    assert not is_done(status, 4)


def test_failure_always_sets_a_false_condition() -> None:
    status = build_status({}, result=AttemptResult(failed("PreconditionFailed", "moved")), generation=1, now=T0)
    assert conditions(status)["Succeeded"][0] == "False"
    assert conditions(status)["Stalled"][0] == "True"
    assert status["lastError"]["code"] == "PreconditionFailed"


def test_retry_keeps_start_time_and_counts_attempts() -> None:
    retry = from_kms_error("Rejected.Throttling", "QPS", "R", True, 1, rng=random.Random(1))
    first = build_status({}, result=AttemptResult(retry, stages_before={"ACSCurrent": "v1"}), generation=1, now=T0)
    assert first["phase"] == "InProgress"
    assert conditions(first)["Succeeded"] == ("Unknown", "Rejected_Throttling", 1)
    ok = AttemptResult(Outcome(Kind.SUCCEEDED, "AlreadyInPlace", ""), stages_before={"ACSCurrent": "v2"})
    second = build_status(first, result=ok, generation=1, now=T1)
    assert second["attempts"] == 2
    assert second["startTime"] == T0
    assert second["stagesBefore"] == {"ACSCurrent": "v2"}  # the protocol decides what "before" is (journal)
    ready = next(c for c in second["conditions"] if c["type"] == "Ready")
    assert ready["lastTransitionTime"] == T1


def test_transition_time_never_goes_back() -> None:
    """A write built on a status whose transition is later than this clock (another replica's clock,
    or the intent written a moment earlier) keeps the later time."""
    intent = build_status(
        {}, result=AttemptResult(Outcome(Kind.RETRY, "Promoting", "")), generation=1, now=T1, attempt=1
    )
    promoted = AttemptResult(Outcome(Kind.SUCCEEDED, "Promoted", ""))
    final = build_status({}, result=promoted, generation=1, now=T0, attempt=1, latest=intent)
    assert {c["lastTransitionTime"] for c in final["conditions"]} == {T1}
    assert final["startTime"] == T1  # continued from the intent record, not restarted
    assert final["attempts"] == 1  # one attempt, however many writes it makes


def test_new_generation_resets() -> None:
    done = build_status(
        {},
        result=AttemptResult(Outcome(Kind.SUCCEEDED, "Promoted", ""), request_id="R1", plan="p"),
        generation=1,
        now=T0,
    )
    again = build_status(done, result=AttemptResult(Outcome(Kind.RETRY, "X", "")), generation=2, now=T1)
    assert again["attempts"] == 1
    assert again["startTime"] == T1
    assert again["requestId"] is None
    assert again["plan"] is None


def test_unchanged_condition_keeps_transition_time() -> None:
    pending = AttemptResult(Outcome(Kind.PENDING, "CredentialsNotFound", ""))
    first = build_status({}, result=pending, generation=1, now=T0)
    second = build_status(first, result=pending, generation=1, now=T1)
    assert {c["lastTransitionTime"] for c in second["conditions"]} == {T0}


def test_history_is_bounded() -> None:
    entries = [HistoryEntry(T0, "a", str(i), "Success") for i in range(25)]
    status = build_status(
        {}, result=AttemptResult(Outcome(Kind.SUCCEEDED, "P", ""), history=entries), generation=1, now=T0
    )
    assert len(status["history"]) == HISTORY_LIMIT
    assert status["history"][-1]["requestId"] == "24"


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("Forbidden.ResourceNotFound", "Forbidden_ResourceNotFound"),
        ("InvalidParameter", "InvalidParameter"),
        ("SDK.ReadTimeout", "SDK_ReadTimeout"),
        ("403", "E403"),
        ("", "Unknown"),
    ],
)
def test_condition_reason(code: str, reason: str) -> None:
    assert condition_reason(code) == reason


def test_backoff_is_bounded_and_grows() -> None:
    rng = random.Random(0)
    delays = [backoff_delay(a, base=2, cap=300, rng=rng) for a in range(1, 30)]
    assert all(1.0 <= d <= 300 for d in delays)
    assert max(delays[-10:]) > 30


def test_events_only_on_change_or_final() -> None:
    from secretstage.domain.status import events_for

    retry = AttemptResult(Outcome(Kind.RETRY, "Rejected_Throttling", "slow down"))
    first = build_status({}, result=retry, generation=1, now=T0)
    assert events_for(retry, {}, 1) == [("Warning", "PromotionRetrying", "slow down")]
    assert events_for(retry, first, 2) == []  # same reason again: no new event
    done = AttemptResult(
        Outcome(Kind.SUCCEEDED, "Promoted", "ok"),
        after_success=[{"kind": "Deployment", "name": "a", "result": "NotFound", "message": "m"}],
        after_success_changed=True,
    )
    assert events_for(done, first, 3) == [("Normal", "Promoted", "ok"), ("Warning", "AfterSuccessNotFound", "m")]
    done.after_success_changed = False  # entries an earlier attempt reported are not posted again
    assert events_for(done, first, 4) == [("Normal", "Promoted", "ok")]


def test_waiting_for_the_schedule_is_a_normal_event_once_and_the_status_says_until_when() -> None:
    from secretstage.domain.status import events_for

    waiting = AttemptResult(
        Outcome(Kind.PENDING, "OutsideWindow", "no window is open; the next opens at 2026-12-08T18:00:00Z", delay=3600),
        schedule_opens="2026-12-08T18:00:00Z",
    )
    first = build_status({}, result=waiting, generation=1, now=T0)
    assert first["phase"] == "Pending"
    assert first["schedule"] == {"opensTime": "2026-12-08T18:00:00Z"}
    assert events_for(waiting, {}, 1) == [("Normal", "PromotionScheduled", waiting.outcome.message)]
    assert events_for(waiting, first, 2) == []  # woken early, still waiting: said already
    done = AttemptResult(Outcome(Kind.SUCCEEDED, "Promoted", "ok"))
    assert build_status(first, result=done, generation=1, now=T0)["schedule"] is None  # removed (merge patch)
