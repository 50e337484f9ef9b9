"""What one attempt leaves for the next: the part of ``.status`` a fresh read cannot rebuild. Pure.

KMS keeps no history of stage moves, so only the operator can remember that *it* sent a move,
with which parameters, whether the answer arrived (and its RequestId), and whether afterSuccess
started. Everything else (where the stage is now) comes from a fresh ListSecretVersionIds.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from secretstage.domain.planning import describe_call


class StaleStatus(Exception):
    """A status write was refused (HTTP 409): the object changed since the status it was built on."""


class Answer(enum.Enum):
    PENDING = "Pending"  # intent recorded, the call is about to go out (or went out and the attempt died)
    RECEIVED = "Received"  # KMS answered success: applied, RequestId known
    LOST = "Lost"  # sent, no usable answer (timeout, reset, 5xx): applied or not, unknown


@dataclass(frozen=True)
class MoveRecord:
    """The one UpdateSecretVersionStage call a generation makes for its stage."""

    version_stage: str
    move_to_version: str | None
    remove_from_version: str | None  # the holder when the move was planned: the version it displaces
    answer: Answer
    sent_time: str
    request_id: str | None = None
    # When an earlier request of this generation for the same move got no answer and a read found it
    # not applied (yet): it may still land, and on a KMS that answers success for a move already in
    # place, it may be the one that moved the stage.
    earlier_unanswered: str | None = None

    def received(self, request_id: str) -> MoveRecord:
        return replace(self, answer=Answer.RECEIVED, request_id=request_id)

    def lost(self) -> MoveRecord:
        return replace(self, answer=Answer.LOST) if self.answer is Answer.PENDING else self

    def describe(self) -> str:
        return describe_call(self.version_stage, self.move_to_version, self.remove_from_version)

    def to_status(self) -> dict[str, Any]:
        return {
            "versionStage": self.version_stage,
            "moveToVersion": self.move_to_version,
            "removeFromVersion": self.remove_from_version,
            "answer": self.answer.value,
            "sentTime": self.sent_time,
            "requestId": self.request_id,
            "earlierUnansweredTime": self.earlier_unanswered,
        }

    @classmethod
    def from_status(cls, raw: Any) -> MoveRecord | None:
        if not isinstance(raw, Mapping) or not raw.get("versionStage"):
            return None
        try:
            answer = Answer(raw.get("answer"))
        except ValueError:
            answer = Answer.LOST  # unknown or missing: assume the worst, the move may have been applied
        return cls(
            version_stage=str(raw["versionStage"]),
            move_to_version=raw.get("moveToVersion") or None,
            remove_from_version=raw.get("removeFromVersion") or None,
            answer=answer,
            sent_time=str(raw.get("sentTime") or ""),
            request_id=raw.get("requestId") or None,
            earlier_unanswered=raw.get("earlierUnansweredTime") or None,
        )


class MoveState(enum.Enum):
    MOVED = "moved"  # KMS shows what the move asked for
    NOT_APPLIED = "not-applied"  # KMS still shows the placement the move was planned from
    SUPERSEDED = "superseded"  # neither: another change moved the stage after the move was sent


def classify(move: MoveRecord, placement: Mapping[str, str]) -> MoveState:
    """Where a recorded move stands, judged from a fresh read.

    A move whose answer was lost and whose stage is still on the version it was to leave was not
    applied (or was undone since: an A-B-A that no read can tell apart; docs/operator.md).
    """
    holder = placement.get(move.version_stage)
    if move.move_to_version is not None:
        if holder == move.move_to_version:
            return MoveState.MOVED
    elif holder != move.remove_from_version:
        return MoveState.MOVED
    if move.answer is Answer.RECEIVED:
        return MoveState.SUPERSEDED  # applied for sure, and moved on since
    if holder == move.remove_from_version:
        return MoveState.NOT_APPLIED
    return MoveState.SUPERSEDED


STARTED = "Started"
INTERRUPTED = "Interrupted"


@dataclass(frozen=True)
class Journal:
    """The journal of the current generation, read from ``.status`` (empty for a new generation)."""

    stages_before: dict[str, str] | None = None
    move: MoveRecord | None = None
    after_success: tuple[dict[str, str], ...] = ()

    @property
    def after_success_started(self) -> bool:
        return bool(self.after_success)

    @classmethod
    def of(cls, status: Mapping[str, Any], generation: int) -> Journal:
        if status.get("observedGeneration") != generation:
            return cls()
        before = status.get("stagesBefore")
        entries = status.get("afterSuccess") or []
        return cls(
            stages_before=dict(before) if isinstance(before, Mapping) else None,
            move=MoveRecord.from_status(status.get("move")),
            after_success=tuple(dict(e) for e in entries if isinstance(e, Mapping)),
        )


def interrupted(entries: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
    """afterSuccess entries an earlier attempt started and never finished: reported, never run again."""
    return [
        dict(e)
        if e.get("result") != STARTED
        else {
            **e,
            "result": INTERRUPTED,
            "message": f"the operator stopped while acting on {e.get('kind')} {e.get('name')}; whether it "
            "happened is unknown, and afterSuccess is not repeated (it runs at most once per generation)",
        }
        for e in entries
    ]
