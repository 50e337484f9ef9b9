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

from secretstage.domain.gate import Check, Verdict
from secretstage.domain.planning import StageCall, describe_call
from secretstage.domain.promotion import PromotionRequest


class StaleStatus(Exception):
    """A status write was refused (HTTP 409): the object changed since the status it was built on."""


class ObjectGone(Exception):
    """The promotion no longer exists (HTTP 404 on a re-read): it was deleted."""


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
    # When a read first showed KMS holding what this move asked, for a move whose answer never came:
    # the request has landed (or another change put the stage there first); it cannot land later.
    applied_seen: str | None = None
    # When the ACSPrevious fix-up that follows this move was sent, until its answer (or a read) shows it
    # landed: like the move, it could still land while no answer came.
    previous_sent: str | None = None

    @classmethod
    def intent(cls, call: StageCall, now: str, earlier: MoveRecord | None) -> MoveRecord:
        """The record journaled before ``call`` is sent. ``earlier``: this slot's previous record (a
        request of the same move whose answer was lost or refused): its unanswered send carries over,
        since it may still land."""
        return cls(
            call.version_stage,
            call.move_to_version,
            call.remove_from_version,
            Answer.PENDING,
            now,
            earlier_unanswered=(earlier.earlier_unanswered or earlier.sent_time) if earlier else None,
        )

    def received(self, request_id: str) -> MoveRecord:
        return replace(self, answer=Answer.RECEIVED, request_id=request_id)

    def lost(self) -> MoveRecord:
        return replace(self, answer=Answer.LOST) if self.answer is Answer.PENDING else self

    def seen_applied(self, now: str) -> MoveRecord:
        if self.answer is Answer.RECEIVED or self.applied_seen:
            return self
        return replace(self, applied_seen=now)

    def may_still_land(self) -> list[str]:
        """Send times of this move's requests that got no answer and were not seen applied: on a KMS
        that ignores a stale RemoveFromVersion, each could still land, until its signature expires."""
        times = [t for t in (self.earlier_unanswered, self.previous_sent) if t]
        if self.answer is not Answer.RECEIVED and not self.applied_seen and self.sent_time:
            times.append(self.sent_time)
        return times

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
            "appliedSeenTime": self.applied_seen,
            "previousSentTime": self.previous_sent,
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
            applied_seen=raw.get("appliedSeenTime") or None,
            previous_sent=raw.get("previousSentTime") or None,
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


def not_this_specs(move: MoveRecord | None, request: PromotionRequest) -> str | None:
    """Why a journaled move cannot have been written for this spec, or None when it can.

    Every move the protocol journals is the spec's own call: its stage, its target version (or, for a
    removal, the version it names). Anything else in ``status.move`` was not written by the operator
    for this generation: a status edited by hand, restored from a backup, or written by another
    controller. Resuming it would confirm (and report) a move nobody asked for.
    """
    if move is None:
        return None
    if move.version_stage != request.version_stage:
        return f"its stage is {move.version_stage}, the spec's is {request.version_stage}"
    if request.move_to_version is not None:
        if move.move_to_version != request.move_to_version:
            return f"it moves to {move.move_to_version or 'no version'}, the spec asks for {request.move_to_version}"
    elif move.move_to_version is not None or move.remove_from_version != request.remove_from_version:
        return f"it is not the removal from {request.remove_from_version} that the spec asks for"
    return None


@dataclass(frozen=True)
class GateState:
    """``status.gate``: written when the gate starts (before any Job exists), then with each verdict."""

    version: str  # what the consumers must work on
    started: str
    deadline: str
    verdict: Verdict = Verdict.PENDING
    checks: tuple[Check, ...] = ()
    failed_check: str | None = None

    def with_checks(self, checks: Sequence[Check], verdict: Verdict, failed_check: str | None) -> GateState:
        return replace(self, checks=tuple(checks), verdict=verdict, failed_check=failed_check)

    def to_status(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "startedTime": self.started,
            "deadline": self.deadline,
            "verdict": self.verdict.value,
            "checks": [c.to_status() for c in self.checks],
            "failedCheck": self.failed_check,
        }

    @classmethod
    def from_status(cls, raw: Any) -> GateState | None:
        if not isinstance(raw, Mapping) or not raw.get("startedTime") or not raw.get("deadline"):
            return None
        try:
            verdict = Verdict(raw.get("verdict"))
        except ValueError:
            verdict = Verdict.PENDING
        checks = tuple(
            Check(
                str(c.get("kind") or ""),
                str(c.get("name") or ""),
                Verdict(c.get("verdict")) if c.get("verdict") in {v.value for v in Verdict} else Verdict.PENDING,
                str(c.get("message") or ""),
                c.get("ready"),
                c.get("version"),
            )
            for c in raw.get("checks") or []
            if isinstance(c, Mapping)
        )
        return cls(
            str(raw.get("version") or ""),
            str(raw["startedTime"]),
            str(raw["deadline"]),
            verdict,
            checks,
            raw.get("failedCheck") or None,
        )


@dataclass(frozen=True)
class RollbackState:
    """``status.rollback``: the intent (why, and to where) before the rollback move is sent, then the
    move's record like ``status.move``'s (answer, RequestId), then the restarts after it."""

    reason: str  # the failed check
    to_version: str  # where stagesBefore had the stage
    move: MoveRecord | None = None
    after_success: tuple[dict[str, str], ...] = ()

    def to_status(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "toVersion": self.to_version,
            "move": self.move.to_status() if self.move else None,
            "requestId": self.move.request_id if self.move else None,
            "afterSuccess": [dict(e) for e in self.after_success] or None,
        }

    @classmethod
    def from_status(cls, raw: Any) -> RollbackState | None:
        if not isinstance(raw, Mapping) or not raw.get("reason"):
            return None
        return cls(
            str(raw["reason"]),
            str(raw.get("toVersion") or ""),
            MoveRecord.from_status(raw.get("move")),
            tuple(dict(e) for e in raw.get("afterSuccess") or [] if isinstance(e, Mapping)),
        )


@dataclass(frozen=True)
class Inherited:
    """``status.inherited``: what an earlier generation of this promotion moved, carried by a new
    generation until it has decided (every write of it keeps this, so a crash, a wait or a retried
    error cannot lose it): the stage, the version it was moved to, where the stage was before the
    first move, and whether a gate of the new spec must start with fresh consumers (its own gate had
    decided, or it never gated) or continue as it was (it was still gating: an edit during the gate).
    """

    generation: int
    version_stage: str
    version: str
    stages_before: dict[str, str]
    fresh: bool

    def to_status(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "versionStage": self.version_stage,
            "version": self.version,
            "stagesBefore": dict(self.stages_before),
            "freshConsumers": self.fresh,
        }

    @classmethod
    def from_status(cls, raw: Any) -> Inherited | None:
        if not isinstance(raw, Mapping) or not raw.get("versionStage") or not raw.get("version"):
            return None
        before = raw.get("stagesBefore")
        return cls(
            int(raw.get("generation") or 0),
            str(raw["versionStage"]),
            str(raw["version"]),
            {str(k): str(v) for k, v in before.items()} if isinstance(before, Mapping) else {},
            bool(raw.get("freshConsumers", True)),
        )

    @classmethod
    def of_earlier(cls, status: Mapping[str, Any]) -> Inherited | None:
        """From the journal of the generation ``status`` was written for (an earlier one): what it
        moved (or had inherited and not moved itself), if a new gate could build on it. Not after a
        move back was sent: it landed, or may still land."""
        before = status.get("stagesBefore")
        rollback = RollbackState.from_status(status.get("rollback"))
        if rollback is not None and rollback.move is not None:
            return None
        carried = cls.from_status(status.get("inherited"))
        gate = GateState.from_status(status.get("gate"))
        move = MoveRecord.from_status(status.get("move"))
        generation = int(status.get("observedGeneration") or 0)
        if move is not None and move.move_to_version and isinstance(before, Mapping):
            fresh = gate is None or gate.verdict is not Verdict.PENDING or gate.version != move.move_to_version
            stages_before = {str(k): str(v) for k, v in before.items()}
            return cls(generation, move.version_stage, move.move_to_version, stages_before, fresh)
        if carried is not None:  # it had inherited itself and not moved: pass it on
            fresh = carried.fresh or gate is None or gate.verdict is not Verdict.PENDING
            return replace(carried, fresh=fresh)
        return None


STARTED = "Started"
INTERRUPTED = "Interrupted"


@dataclass(frozen=True)
class Journal:
    """The journal of the current generation, read from ``.status`` (empty for a new generation)."""

    stages_before: dict[str, str] | None = None
    move: MoveRecord | None = None
    after_success: tuple[dict[str, str], ...] = ()
    gate: GateState | None = None
    rollback: RollbackState | None = None
    inherited: Inherited | None = None

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
            gate=GateState.from_status(status.get("gate")),
            rollback=RollbackState.from_status(status.get("rollback")),
            inherited=Inherited.from_status(status.get("inherited")),
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
