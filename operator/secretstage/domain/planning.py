"""What to send to KMS, given what it holds now; and whether the result is what was asked.

Placement is ``stage -> version``. Every decision is made from a fresh read, which is what makes
at-least-once delivery safe: a move that already happened is recognised, not sent again.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass

from secretstage.domain.promotion import ACS_CURRENT, ACS_PREVIOUS, PromotionRequest


@dataclass(frozen=True)
class StageCall:
    version_stage: str
    move_to_version: str | None
    remove_from_version: str | None

    def describe(self) -> str:
        return describe_call(self.version_stage, self.move_to_version, self.remove_from_version)


def describe_call(stage: str, move_to: str | None, remove_from: str | None) -> str:
    """An UpdateSecretVersionStage call in words, for status and events."""
    if move_to and remove_from:
        return f"move {stage} from {remove_from} to {move_to}"
    if move_to:
        return f"attach {stage} to {move_to}"
    return f"remove {stage} from {remove_from}"


@dataclass(frozen=True)
class Plan:
    call: StageCall | None  # None: KMS already shows the asked placement
    current_holder: str | None

    def describe(self) -> str:
        if self.call is None:
            return "nothing to do: the stage is already where it was asked to be"
        return self.call.describe()


class PlanRejected(Exception):
    """The promotion cannot proceed as specified (a permanent outcome)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def plan(request: PromotionRequest, placement: Mapping[str, str], versions: Set[str]) -> Plan:
    stage = request.version_stage
    holder = placement.get(stage)
    if request.move_to_version is not None and holder == request.move_to_version:
        # The asked end state already holds (a retry after a lost answer, or another pipeline got
        # there first): nothing to send, whatever the precondition says.
        return Plan(call=None, current_holder=holder)
    expected = request.precondition_current_version
    if expected is not None and holder != expected:
        raise PlanRejected(
            "PreconditionFailed",
            f"{stage} is on version {holder or '(none)'}, but spec.precondition.currentVersion is {expected}; "
            "another change moved it: re-read the secret and update the precondition",
        )
    move_to, remove_from = request.move_to_version, request.remove_from_version
    for field, version in (("moveToVersion", move_to), ("removeFromVersion", remove_from)):
        if version is not None and version not in versions:
            raise PlanRejected(
                "VersionNotFound",
                f"spec.{field} {version} is not a version of secret {request.secret_name} "
                f"(known: {', '.join(sorted(versions)) or 'none'})",
            )
    if move_to is None:  # pure removal of a custom stage
        if holder != remove_from:
            return Plan(call=None, current_holder=holder)
        return Plan(call=StageCall(stage, None, remove_from), current_holder=holder)
    if holder == move_to:
        return Plan(call=None, current_holder=holder)
    if remove_from is not None and holder != remove_from:
        raise PlanRejected(
            "StageNotOnVersion",
            f"spec.removeFromVersion is {remove_from}, but {stage} is on {holder or 'no version'}; "
            "fix spec.removeFromVersion or leave it out to move the stage from wherever it is",
        )
    # Always name the current holder: attaching a label held elsewhere needs RemoveFromVersion.
    return Plan(call=StageCall(stage, move_to, holder), current_holder=holder)


def previous_fixup(
    request: PromotionRequest,
    displaced: str | None,
    placement_before: Mapping[str, str],
    placement_after: Mapping[str, str],
) -> StageCall | None:
    """After ACSCurrent moved off ``displaced``, ACSPrevious belongs on it; KMS may or may not do that.

    Only when KMS left ACSPrevious where it was: if KMS moved it itself, it put it on the version
    the move really took ACSCurrent from, which is the truth (see ``displaced_elsewhere``).
    """
    if request.version_stage != ACS_CURRENT or not displaced or displaced == request.move_to_version:
        return None
    if placement_after.get(ACS_CURRENT) != request.move_to_version:
        return None
    holder = placement_after.get(ACS_PREVIOUS)
    if holder == displaced or holder != placement_before.get(ACS_PREVIOUS):
        return None
    return StageCall(ACS_PREVIOUS, displaced, holder)


def displaced_elsewhere(
    request: PromotionRequest,
    displaced: str | None,
    placement_before: Mapping[str, str],
    placement_after: Mapping[str, str],
) -> str | None:
    """The version a move of ACSCurrent really took the label from, when KMS's own ACSPrevious move
    shows it was not ``displaced`` (the version read before): another change landed between the read
    and the move, on a KMS that did not refuse the stale RemoveFromVersion."""
    if request.version_stage != ACS_CURRENT or not displaced:
        return None
    holder = placement_after.get(ACS_PREVIOUS)
    if placement_after.get(ACS_CURRENT) != request.move_to_version or holder == placement_before.get(ACS_PREVIOUS):
        return None
    return holder if holder not in (displaced, request.move_to_version) else None


def verify(request: PromotionRequest, placement_after: Mapping[str, str]) -> str | None:
    """A problem description when KMS does not show what was asked, else None."""
    stage = request.version_stage
    holder = placement_after.get(stage)
    if request.move_to_version is not None and holder != request.move_to_version:
        return f"after the call KMS shows {stage} on {holder or 'no version'}, not on {request.move_to_version}"
    if request.move_to_version is None and holder == request.remove_from_version:
        return f"after the call KMS still shows {stage} on {holder}"
    return None


def rollback_call(stage: str, version: str, before: Mapping[str, str]) -> StageCall:
    """The move back after a failed gate: ``stage`` from ``version`` to where it was before the promotion
    (RemoveFromVersion makes it a compare-and-set on a KMS that checks it)."""
    return StageCall(stage, before.get(stage) or None, version)


def rollback_previous(
    stage: str, left: str, before: Mapping[str, str], placement: Mapping[str, str]
) -> StageCall | None:
    """After ACSCurrent went back from ``left``, ACSPrevious goes back too: where it was before the
    promotion (KMS put it on the version ACSCurrent just left, or left it where the promotion's fix-up
    put it). When it was on no version before (the secret's first rotation), it goes where a KMS that
    moves ACSPrevious itself puts it, on ``left``: KMS does not remove ACSPrevious."""
    if stage != ACS_CURRENT or placement.get(ACS_CURRENT) != before.get(ACS_CURRENT):
        return None
    wanted, holder = before.get(ACS_PREVIOUS) or left, placement.get(ACS_PREVIOUS)
    if holder == wanted:
        return None
    return StageCall(ACS_PREVIOUS, wanted, holder)
