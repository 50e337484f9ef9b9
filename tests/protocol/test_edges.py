"""Issue 20's holes at the object's edges, one readable schedule each (the explorer covers them all).

Await points of a first attempt of ``current-no-precondition`` in the default mode: 0 read, 1 the
move (2 its intent write, inside it, right before the request leaves), 3 read back, 4 final write,
5 the end of the attempt.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from secretstage import protocol
from secretstage.domain.journal import StaleStatus
from secretstage.domain.outcome import AttemptResult, Kind, Outcome
from secretstage.domain.promotion import ACS_CURRENT
from secretstage.kms.endpoints import region_of
from tests.protocol.explorer import ARN, MODES, P_KEY, Q_KEY, SCENARIOS, SECRET, check, run_schedule

DEFAULT = MODES[0]
LENIENT = {"auto_previous": True, "label_held_elsewhere": "move", "remove_mismatch": "ignore"}
WITH_PRECONDITION, NO_PRECONDITION = SCENARIOS[0], SCENARIOS[1]
READ, MOVE, INTENT, CONFIRM, FINAL, END = 0, 1, 2, 3, 4, 5


def reason(status: Mapping[str, Any]) -> str:
    return str(next(c["reason"] for c in status["conditions"] if c["type"] == "Succeeded"))


def stage_moves(world: Any, **match: Any) -> list[Any]:
    return [
        m
        for m in world.applied
        if m.stage == ACS_CURRENT and m.effective and all(getattr(m, k) == v for k, v in match.items())
    ]


@pytest.mark.parametrize("when", [READ, MOVE], ids=["after-the-read", "while-waiting-to-send"])
async def test_1_an_edit_before_the_move_is_sent_stops_the_old_generation(when: int) -> None:
    """Generation 1 asks v2; the user corrects it to v3 before the move leaves. v2 is never sent."""
    world = await run_schedule(WITH_PRECONDITION, DEFAULT, {when: "edit"})
    check(world, WITH_PRECONDITION)
    status = world.objects["P"].status
    assert (status["phase"], status["observedGeneration"], reason(status)) == ("Succeeded", 2, "Promoted")
    assert not stage_moves(world, generation=1)  # the withdrawn move was never sent
    assert [m.move_to for m in stage_moves(world)] == ["v3"]
    assert world.placement()[ACS_CURRENT] == "v3"


async def test_1_an_edit_after_the_move_was_sent_is_the_next_generation() -> None:
    """Sent is sent: generation 1's move stands, generation 2 moves on from a fresh read."""
    world = await run_schedule(NO_PRECONDITION, DEFAULT, {CONFIRM: "edit"})
    check(world, NO_PRECONDITION)
    assert [(m.generation, m.move_to) for m in stage_moves(world)] == [(1, "v2"), (2, "v3")]
    assert world.placement()["ACSPrevious"] == "v2"


@pytest.mark.parametrize("when", [READ, MOVE, CONFIRM])
async def test_2_a_recreated_object_is_never_written_by_the_old_one_and_runs_its_own_spec(when: int) -> None:
    world = await run_schedule(WITH_PRECONDITION, DEFAULT, {when: "recreate"})
    check(world, WITH_PRECONDITION)
    new = world.objects["P"]
    assert new.uid == "uid-P2"
    assert (new.status["phase"], reason(new.status)) == ("Succeeded", "Promoted")
    assert {writer for *_, writer, _ in new.versions} == {"api", "uid-P2"}  # never written by uid-P
    assert world.placement()[ACS_CURRENT] == "v3"
    if when < CONFIRM:  # deleted before its move left: nothing was sent for the old object
        assert not stage_moves(world, uid="uid-P")


async def test_3_a_journal_the_spec_never_asked_for_is_not_resumed() -> None:
    """Another writer puts 'moved to v9' into this generation's journal: the promotion says so, sends nothing."""
    world = await run_schedule(WITH_PRECONDITION, DEFAULT, {READ: "hand-edit"})
    check(world, WITH_PRECONDITION)
    status = world.objects["P"].status
    assert (status["phase"], reason(status)) == ("Failed", "JournalMismatch")
    assert "bump spec.retry" in next(c["message"] for c in status["conditions"] if c["type"] == "Succeeded")
    assert not stage_moves(world)


def test_4_one_secret_one_key_whatever_its_spelling_and_one_key_per_namespace() -> None:
    assert P_KEY == Q_KEY  # region + plain name over the public gateway; ARN over the VPC gateway
    assert region_of("https://kms-vpc.cn-hangzhou.aliyuncs.com") == "cn-hangzhou"
    assert region_of("https://KMS.ap-southeast-1.aliyuncs.com.") == "ap-southeast-1"
    assert region_of("https://kst-hzz1.cryptoservice.kms.aliyuncs.com") is None  # a dedicated instance
    assert protocol.secret_key("a", "https://kms.cn-hangzhou.aliyuncs.com", SECRET) == protocol.secret_key(
        "a", "http://127.0.0.1:1", ARN
    )  # the ARN names the region
    assert protocol.secret_key("a", "http://127.0.0.1:1", SECRET) != protocol.secret_key(
        "a", "http://127.0.0.1:2", SECRET
    )
    # Another tenant's promotion of a same-named secret never shares (and never sees) this one's lock.
    assert protocol.secret_key("team-b", "https://kms.cn-hangzhou.aliyuncs.com", SECRET, "cn-hangzhou") != P_KEY


async def test_4_a_rival_under_another_spelling_waits() -> None:
    world = await run_schedule(NO_PRECONDITION, DEFAULT, {READ: "rival"})
    check(world, NO_PRECONDITION)
    q = world.objects["Q"]
    assert q.request.secret_name == ARN
    assert [m.who for m in world.applied if m.stage == ACS_CURRENT and m.effective] == ["P", "Q"]


async def test_5_a_move_that_may_still_land_keeps_the_secret_reserved() -> None:
    """P's move times out (it lands later); P's attempt ends MoveOutcomeUnknown; rival Q comes next.
    Q must not move before P's request has landed or can no longer land, or P's would undo Q's."""
    world = await run_schedule(NO_PRECONDITION, LENIENT, {MOVE: "later", END: "rival"})
    check(world, NO_PRECONDITION)
    order = [(m.who, m.move_to, m.late) for m in world.applied if m.stage == ACS_CURRENT and m.effective]
    assert order == [("P", "v2", True), ("Q", "v3", False)]
    assert world.placement()[ACS_CURRENT] == "v3"


async def test_5_the_reservation_survives_a_restart() -> None:
    """The same, with the operator restarted in between: the new process reads the journals first."""
    world = await run_schedule(NO_PRECONDITION, LENIENT, {MOVE: "later", CONFIRM: "crash", 4: "rival"})
    check(world, NO_PRECONDITION)
    assert world.placement()[ACS_CURRENT] == "v3"


async def test_6_a_stale_copy_handed_in_mid_flight_does_not_act() -> None:
    """The move was applied and the attempt died; then kopf hands over the copy from before the intent."""
    world = await run_schedule(NO_PRECONDITION, DEFAULT, {MOVE: "crash-after", END: "stale"})
    check(world, NO_PRECONDITION)
    assert len(stage_moves(world)) == 1
    assert reason(world.objects["P"].status) == "PromotedAnswerLost"


class LostAnswerStore:
    """A status store whose write lands but whose answer is lost (its retry meets a conflict)."""

    def __init__(self) -> None:
        self.current: dict[str, Any] = {}
        self.uid, self.generation = "u1", 1

    @property
    def status(self) -> Mapping[str, Any]:
        return {}

    async def write(self, status: Mapping[str, Any]) -> None:
        self.current = {k: v for k, v in status.items() if v is not None}
        raise StaleStatus()

    async def refresh(self) -> Mapping[str, Any]:
        return self.current


async def test_7_a_final_write_that_landed_is_done_even_when_its_answer_was_lost() -> None:
    store = LostAnswerStore()
    outcome = Outcome(Kind.SUCCEEDED, "Promoted", "done")
    await protocol.write_status(store, {}, AttemptResult(outcome=outcome), outcome, 1, 1, lambda: "t", uid="u1")
    assert store.current["phase"] == "Succeeded"  # and no AttemptAborted: the handler posts its Event
