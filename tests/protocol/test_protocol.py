"""The protocol's defects of issue 11, one schedule each, readable (the explorer covers all schedules).

Each test names the finding it pins down; the model (in-memory KMS with the emulator's rules, a
status store with Kubernetes' compare-and-set and merge-patch semantics) is in explorer.py.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from secretstage.domain.promotion import ACS_CURRENT
from tests.protocol.explorer import MODES, SCENARIOS, Scenario, check, run_schedule

DEFAULT = MODES[0]  # the emulator's documented defaults: auto ACSPrevious, label moves, stale Remove rejected
STRICTEST = {"auto_previous": False, "label_held_elsewhere": "reject", "remove_mismatch": "reject"}
LENIENT = {"auto_previous": True, "label_held_elsewhere": "move", "remove_mismatch": "ignore"}
WITH_PRECONDITION, NO_PRECONDITION, IN_PLACE, CUSTOM_ATTACH, CUSTOM_REMOVE = SCENARIOS
MOVE, CONFIRM = 1, 3  # await points of a first attempt: 0 read, 1 the move (2 its intent write inside it), 3 read back


def reason(status: dict[str, Any]) -> str:
    return str(next(c["reason"] for c in status["conditions"] if c["type"] == "Succeeded"))


async def run(scenario: Scenario, mode: dict[str, object], faults: dict[int, str]) -> Any:
    world = await run_schedule(scenario, mode, faults)
    check(world, scenario)
    return world, world.objects["P"].status


async def test_1_lost_answer_then_a_foreign_move_is_not_undone() -> None:
    """P's move is applied, its answer lost; pipeline Q moves the stage on. P must not re-send."""
    for mode in (DEFAULT, LENIENT):
        world, status = await run(NO_PRECONDITION, mode, {MOVE: "lost-after", CONFIRM: "foreign"})
        assert (status["phase"], reason(status)) == ("Failed", "Superseded")
        assert world.placement()[ACS_CURRENT] == "v3"  # Q's move stands
        assert [m.who for m in world.applied if m.stage == ACS_CURRENT] == ["P"]  # one move of P's, ever


async def test_1_precondition_holds_after_a_lost_answer() -> None:
    world, status = await run(WITH_PRECONDITION, LENIENT, {MOVE: "lost-after", CONFIRM: "foreign"})
    assert (status["phase"], reason(status)) == ("Failed", "Superseded")
    assert world.placement()[ACS_CURRENT] == "v3"


async def test_2_request_id_survives_a_throttled_read_back() -> None:
    world, status = await run(NO_PRECONDITION, DEFAULT, {CONFIRM: "throttle"})
    move = next(m for m in world.applied if m.stage == ACS_CURRENT)
    assert (status["phase"], reason(status), status["attempts"]) == ("Succeeded", "Promoted", 2)
    assert status["requestId"] == move.request_id  # the move's, not the second attempt's read


async def test_2_request_id_unknown_is_said_not_invented() -> None:
    _, status = await run(NO_PRECONDITION, DEFAULT, {MOVE: "crash-after"})
    assert (status["phase"], reason(status)) == ("Succeeded", "PromotedAnswerLost")
    assert "requestId" not in status
    assert status["move"]["answer"] == "Pending"  # the journal: sent, answer never seen


async def test_3_after_success_not_on_already_in_place() -> None:
    world, status = await run(IN_PLACE, DEFAULT, {})
    assert reason(status) == "AlreadyInPlace"
    assert world.after_success_runs[("uid-P", 1)] == 0
    assert "afterSuccess" not in status


async def test_3_after_success_at_most_once_across_a_crash() -> None:
    after_success = 4  # 0 read, 1 intent, 2 move, 3 read back, 4 the "Started" write... then the run
    world, status = await run(WITH_PRECONDITION, DEFAULT, {after_success + 1: "crash-after"})
    assert world.after_success_runs[("uid-P", 1)] == 1
    assert [e["result"] for e in status["afterSuccess"]] == ["Interrupted"]
    assert (status["phase"], reason(status)) == ("Succeeded", "Promoted")


async def test_4_previous_fixup_is_retried_not_failed() -> None:
    """A KMS that leaves ACSPrevious alone, and the fix-up is throttled: the retry fixes it."""
    fixup = 5  # 0 read, 1 intent, 2 move, 3 read back, 4 journal the RequestId, 5 the fix-up
    world, status = await run(NO_PRECONDITION, STRICTEST, {fixup: "throttle"})
    assert (status["phase"], reason(status)) == ("Succeeded", "Promoted")
    assert world.placement() == {"ACSCurrent": "v2", "ACSPrevious": "v1"}


async def test_4_previous_follows_the_version_really_displaced() -> None:
    """Another pipeline moved ACSCurrent to v3 between P's read and P's move, on a KMS that lets the
    stale move through and moves ACSPrevious itself: KMS's ACSPrevious (v3) is the truth, kept, and
    the lost race is reported."""
    world, status = await run(NO_PRECONDITION, LENIENT, {MOVE: "foreign"})
    assert world.placement() == {"ACSCurrent": "v2", "ACSPrevious": "v3"}
    assert (status["phase"], reason(status)) == ("Succeeded", "PromotedOverConcurrentChange")


async def test_7_a_second_promotion_of_the_secret_waits() -> None:
    world, status = await run(NO_PRECONDITION, DEFAULT, {MOVE: "rival"})
    assert (status["phase"], reason(status)) == ("Succeeded", "Promoted")
    assert world.objects["Q"].status["phase"] == "Succeeded"
    assert [m.who for m in world.applied if m.stage == ACS_CURRENT] == ["P", "Q"]  # in turn, never interleaved


async def test_documented_sample_scenario_1_on_a_custom_label() -> None:
    for mode in MODES:
        _, status = await run(CUSTOM_ATTACH, mode, {})
        assert reason(status) == "Promoted"
        _, status = await run(CUSTOM_REMOVE, mode, {})
        assert reason(status) == "Promoted"


async def test_after_success_when_always_runs_once_even_in_place() -> None:
    """afterSuccess.when: Always rolls consumers although the stage was already in place (KMS's own
    rotation moved it), still at most once."""
    always = Scenario(
        "in-place-always",
        replace(IN_PLACE.request, after_success_when="Always"),
        IN_PLACE.initial,
        IN_PLACE.foreign_target,
    )
    world = await run_schedule(always, DEFAULT, {})
    status = world.objects["P"].status
    assert (reason(status), world.after_success_runs[("uid-P", 1)]) == ("AlreadyInPlace", 1)
    assert [e["result"] for e in status["afterSuccess"]] == ["Restarted"]


async def test_a_move_whose_credentials_failed_was_never_sent() -> None:
    """The STS exchange (or the ServiceAccount token) fails right before the move: nothing left for KMS, so
    the journal must not keep it as a move whose answer is pending (it would later be "an earlier request
    that may still land")."""
    world, status = await run(NO_PRECONDITION, DEFAULT, {MOVE: "credentials"})
    assert (status["phase"], reason(status), status["attempts"]) == ("Succeeded", "Promoted", 2)
    assert "earlierUnansweredTime" not in status["move"], status["move"]
    assert [m.who for m in world.applied if m.stage == ACS_CURRENT] == ["P"]
