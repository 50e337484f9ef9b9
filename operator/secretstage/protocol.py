"""The promotion protocol: one attempt at one generation of a SecretStagePromotion.

    read -> plan -> intent -> move -> confirm -> ACSPrevious -> verify -> afterSuccess -> done

Every decision is made from a fresh ListSecretVersionIds plus the journal in ``.status`` (what
earlier attempts of this generation did; ``domain.journal``). What a later attempt needs and
cannot read back from KMS is written to status before the next irreversible step:

* **intent** (before the move): the move's parameters and the placement it was planned from.
  A crash or a lost answer after this point leaves a record that a move *may* have happened.
* **the move's RequestId** (before the ACSPrevious fix-up or afterSuccess, whichever comes first;
  otherwise in the final write). An attempt that dies between the answer and that write loses the
  RequestId: the next one says so (``PromotedAnswerLost``) instead of inventing one.
* **afterSuccess started** (before the first workload is touched): it never runs twice.

A later attempt resumes from the journal: a recorded move is confirmed, found not applied (and
planned again from the fresh read, precondition included) or found superseded; it is never sent
again blindly. The KMS client itself never repeats UpdateSecretVersionStage after an answer that
may hide an applied move (``kms.client.NOT_BLINDLY_REPEATABLE``).

Every status write is a compare-and-set on the resourceVersion the attempt started from, so an
attempt working from a stale copy of the object (kopf re-running a handler on an old event) can
neither overwrite a newer journal nor act on it.

Writes per promotion: intent + final (plus one before afterSuccess, plus one before an
ACSPrevious fix-up on a KMS that does not move ACSPrevious itself).
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from secretstage.domain import planning
from secretstage.domain.journal import (
    STARTED,
    Answer,
    Journal,
    MoveRecord,
    MoveState,
    StaleStatus,
    classify,
    interrupted,
)
from secretstage.domain.outcome import (
    AttemptResult,
    ErrorInfo,
    HistoryEntry,
    Kind,
    Outcome,
    backoff_delay,
    failed,
    from_kms_error,
)
from secretstage.domain.promotion import ACS_CURRENT, ACS_PREVIOUS, PromotionRequest
from secretstage.domain.status import build_status
from secretstage.kms import CredentialsError, KmsError
from secretstage.kms.models import StageUpdate, VersionList

log = logging.getLogger(__name__)

MAX_REPLANS = 3  # fresh plans in one attempt after KMS refused a move that a concurrent change made stale


class StageKms(Protocol):
    """The two KMS operations the protocol uses (``KmsClient`` has them)."""

    async def list_secret_version_ids(self, secret_name: str, *, include_deprecated: bool = False) -> VersionList: ...

    async def update_secret_version_stage(
        self,
        secret_name: str,
        version_stage: str,
        *,
        move_to_version: str | None = None,
        remove_from_version: str | None = None,
    ) -> StageUpdate: ...


class StatusStore(Protocol):
    """``.status`` of one object, written with compare-and-set."""

    @property
    def status(self) -> Mapping[str, Any]:
        """The status as last read or written by this store."""
        ...

    async def write(self, status: Mapping[str, Any]) -> None:
        """Replace the status, only if the object is unchanged since ``status`` was read; else StaleStatus."""
        ...

    async def refresh(self) -> Mapping[str, Any]:
        """Read the object again; later writes compare against this version."""
        ...


class AttemptAborted(Exception):
    """Another attempt (a stale copy of this one, or another replica) wrote this generation's journal
    meanwhile: this attempt's view is out of date, so it stops without writing anything more."""

    def __init__(self, status: Mapping[str, Any]) -> None:
        super().__init__("the promotion's status changed under this attempt")
        self.status = status


AfterSuccessRunner = Callable[[], Awaitable[list[dict[str, str]]]]


class SecretLocks:
    """One in-flight promotion per (endpoint, secret) in this process; the others wait their turn."""

    def __init__(self) -> None:
        self._holders: dict[tuple[str, str], str] = {}

    def holder(self, key: tuple[str, str]) -> str | None:
        return self._holders.get(key)

    @contextlib.asynccontextmanager
    async def hold(self, key: tuple[str, str], who: str) -> AsyncIterator[bool]:
        """Yields False (and holds nothing) when another promotion has the secret."""
        if key in self._holders:
            yield False
            return
        self._holders[key] = who
        try:
            yield True
        finally:
            del self._holders[key]


def secret_key(endpoint: str, secret_name: str) -> tuple[str, str]:
    """An ARN and a plain name of the same secret share one key."""
    name = secret_name.split(":secret/", 1)[1] if secret_name.startswith("acs:kms:") else secret_name
    return (endpoint.rstrip("/").lower(), name)


class _Restart(Exception):
    """KMS refused a move that a concurrent change made stale: plan again from this read."""

    def __init__(self, listing: VersionList) -> None:
        self.listing = listing


@dataclass
class Attempt:
    request: PromotionRequest
    kms: StageKms
    store: StatusStore
    generation: int
    number: int  # this attempt's number within the generation, from 1
    now: Callable[[], str]
    after_success: AfterSuccessRunner | None = None
    rng: random.Random = field(default_factory=random.Random)
    locks: SecretLocks = field(default_factory=SecretLocks)
    key: tuple[str, str] = ("", "")  # (endpoint, secret): see secret_key()
    who: str = ""  # namespace/name, shown to promotions that wait for this one

    def __post_init__(self) -> None:
        self.base = dict(self.store.status)  # the status this attempt started from (history, attempts)
        self.journal = Journal.of(self.base, self.generation)
        self.result = AttemptResult(outcome=Outcome(Kind.RETRY, "InProgress", ""))
        self.result.stages_before = self.journal.stages_before
        self.result.move = self.journal.move
        self.result.after_success = list(self.journal.after_success)
        self.result.request_id = self.journal.move.request_id if self.journal.move else None
        self.unconfirmed: MoveRecord | None = None  # a sent move a read found not applied (yet)

    # --- the steps -------------------------------------------------------------------------------

    async def run(self) -> AttemptResult:
        """One attempt; writes the final status unless it was aborted (``AttemptAborted``)."""
        async with self.locks.hold(self.key, self.who) as mine:
            if not mine:
                holder = self.locks.holder(self.key)
                delay = self.rng.uniform(0.5, 1.5)
                self.result.outcome = Outcome(
                    Kind.PENDING,
                    "WaitingForSecret",
                    f"promotion {holder} is changing secret {self.request.secret_name}; this one waits its turn "
                    f"(next look in {delay:.1f}s)",
                    None,
                    delay,
                )
            else:
                try:
                    await self._steps()
                except KmsError as exc:
                    self.result.outcome = from_kms_error(
                        exc.code, exc.message, exc.request_id, exc.retryable, self.number, rng=self.rng
                    )
                except CredentialsError as exc:  # a credentials provider (STS exchange) failed before sending
                    delay = backoff_delay(self.number, rng=self.rng)
                    self.result.outcome = Outcome(
                        Kind.RETRY,
                        "CredentialsError",
                        f"{exc} (retrying in {delay:.1f}s)",
                        ErrorInfo("CredentialsError", str(exc), retryable=True),
                        delay,
                    )
            await self._write(self.result.outcome)
        return self.result

    async def _steps(self) -> None:
        request, result = self.request, self.result
        listing = await self._read()
        for _ in range(MAX_REPLANS):
            try:
                await self._from(listing)
                return
            except _Restart as restart:
                listing = restart.listing
        result.outcome = failed(
            "ConcurrentChanges",
            f"{request.version_stage} kept moving under this promotion ({MAX_REPLANS} plans in a row were made "
            "stale by other changes before KMS applied them); retry when the secret is quiet",
        )

    async def _from(self, listing: VersionList) -> None:
        request, result = self.request, self.result
        placement = listing.placement()
        moved = False
        if result.move is not None:  # an earlier attempt (or this one, before a restart) sent a move
            state = classify(result.move, placement)
            if state is MoveState.SUPERSEDED:
                result.outcome = self._superseded(result.move, placement)
                return
            if state is MoveState.MOVED:
                moved = True
            else:  # not applied (yet): plan afresh, precondition and all, but remember it: it may still land
                self.unconfirmed = result.move
                result.move = None
                result.request_id = None
        if not moved:
            # read -> plan
            try:
                plan = planning.plan(request, placement, {v.version_id for v in listing.versions})
            except planning.PlanRejected as rejected:
                result.stages_before = result.stages_before or placement
                result.outcome = failed(rejected.reason, rejected.message)
                return
            result.plan = plan.describe()
            if request.dry_run or plan.call is None:
                result.stages_before = placement
                result.stages_after = placement
                if request.dry_run:
                    would = f"dry run, nothing changed; would {plan.describe()}"
                    result.outcome = Outcome(Kind.SUCCEEDED, "DryRun", would)
                    return
                await self._after_success(moved=False)
                result.outcome = Outcome(
                    Kind.SUCCEEDED,
                    "AlreadyInPlace",
                    f"{request.version_stage} is already on {request.move_to_version or 'no version'} as asked; "
                    "no attempt of this generation moved anything",
                )
                return
            # intent -> move
            placement, lost = await self._move(plan.call, placement)
            assert result.move is not None
            state = classify(result.move, placement)
            if state is MoveState.SUPERSEDED:
                result.outcome = self._superseded(result.move, placement)
                return
            if state is MoveState.NOT_APPLIED:
                # The answer was lost and KMS does not show the move (yet: the request may still be on
                # its way). Nothing is re-sent now; the next attempt re-reads and re-plans after a backoff.
                result.stages_after = placement
                delay = backoff_delay(self.number, rng=self.rng)
                result.outcome = Outcome(
                    Kind.RETRY,
                    "MoveOutcomeUnknown",
                    f"{result.move.describe()}: the answer was lost ({lost.code if lost else 'no answer'}) and KMS "
                    f"does not show the move; reading again in {delay:.1f}s before deciding (nothing is re-sent "
                    "blindly)",
                    _error(lost) if lost else None,
                    delay,
                )
                return
        # confirm -> ACSPrevious -> verify
        move = result.move
        assert move is not None
        placement, previous_problem = await self._previous(move, placement)
        result.stages_after = placement
        if previous_problem is not None and previous_problem.kind is Kind.RETRY:
            result.outcome = previous_problem  # the fix-up is retried from the journal; afterSuccess waits
            return
        if request.verify and classify(move, placement) is not MoveState.MOVED:
            result.outcome = failed(
                "VerificationFailed",
                f"after {move.describe()} KMS shows {request.version_stage} on "
                f"{placement.get(request.version_stage) or 'no version'}",
            )
            return
        await self._after_success(moved=True)
        result.outcome = previous_problem or self._promoted(move)

    async def _move(
        self, call: planning.StageCall, placement: dict[str, str]
    ) -> tuple[dict[str, str], KmsError | None]:
        """intent, then the one UpdateSecretVersionStage. Returns the placement after it (read back,
        or, with verify off and a custom stage, as KMS's success answer implies) and the error that
        hid the answer, if any."""
        result = self.result
        result.stages_before = placement
        earlier = self.unconfirmed
        result.move = MoveRecord(
            call.version_stage,
            call.move_to_version,
            call.remove_from_version,
            Answer.PENDING,
            self.now(),
            earlier_unanswered=(earlier.earlier_unanswered or earlier.sent_time) if earlier else None,
        )
        await self._write(Outcome(Kind.RETRY, "Promoting", f"{call.describe()}: calling KMS"))
        try:
            request_id = await self._update(call)
        except CredentialsError:
            result.move = self.unconfirmed  # no credentials, no request: this move was never sent
            raise
        except KmsError as exc:
            if exc.maybe_applied:
                result.move = result.move.lost()
                return (await self._read()).placement(), exc  # did it land? classify() decides
            # Refused: this request was certainly not applied. An earlier one of this generation
            # whose answer was lost may still land (or just did): keep its record in the journal.
            result.move = self.unconfirmed
            if exc.retryable:
                raise
            # A refusal can mean a concurrent change made the move stale (KMS checking RemoveFromVersion
            # is what makes compare-and-set atomic): plan again from a fresh read, precondition included.
            listing = await self._read()
            if listing.placement() != placement:
                raise _Restart(listing) from None
            raise
        result.move = result.move.received(request_id)
        result.request_id = request_id
        if self.request.verify or call.version_stage == ACS_CURRENT:
            return (await self._read()).placement(), None
        implied = dict(placement)
        if call.move_to_version:
            implied[call.version_stage] = call.move_to_version
        else:
            implied.pop(call.version_stage, None)
        return implied, None

    async def _previous(self, move: MoveRecord, placement: dict[str, str]) -> tuple[dict[str, str], Outcome | None]:
        """When ACSCurrent left version ``displaced``, ACSPrevious belongs on it; KMS may or may not do that.

        Returns the placement after, and an outcome when something needs saying: the fix-up must be
        retried (the next attempt resumes here from the journal), KMS refused it for good (a success
        that says so), or KMS's own ACSPrevious move shows the move displaced another version than
        the one read (a race this KMS did not refuse).
        """
        displaced = move.remove_from_version
        before = self.result.stages_before or {}
        elsewhere = planning.displaced_elsewhere(self.request, displaced, before, placement)
        if elsewhere is not None:
            return placement, Outcome(
                Kind.SUCCEEDED,
                "PromotedOverConcurrentChange",
                f"{move.describe()} done (RequestId {move.request_id or 'unknown'}), but KMS put ACSPrevious on "
                f"{elsewhere}: ACSCurrent was on {elsewhere}, not {displaced}, when the move landed. Another change "
                "came between the read and the move, and this KMS does not refuse a stale RemoveFromVersion, so "
                "compare-and-set could not hold; check that overriding it was right",
                ErrorInfo("ConcurrentChange", f"ACSCurrent was taken from {elsewhere}, not {displaced}"),
            )
        fix = planning.previous_fixup(self.request, displaced, before, placement)
        if fix is None:
            return placement, None
        # The fix-up is irreversible: journal the move's RequestId first, and let the compare-and-set
        # prove this attempt is not working from a stale copy (whose "displaced" may be out of date).
        await self._write(Outcome(Kind.RETRY, "SettingPrevious", f"{fix.describe()}: calling KMS"))
        try:
            await self._update(fix)
        except KmsError as exc:
            if not (exc.maybe_applied or exc.retryable):
                return placement, Outcome(
                    Kind.SUCCEEDED,
                    "PromotedPreviousNotMoved",
                    f"{move.describe()} done (RequestId {move.request_id or 'unknown'}), but KMS refused to put "
                    f"ACSPrevious on {displaced}: {exc.code}: {exc.message}",
                    _error(exc),
                )
            after = (await self._read()).placement()
            if after.get(ACS_PREVIOUS) == displaced:
                return after, None
            return after, from_kms_error(exc.code, exc.message, exc.request_id, True, self.number, rng=self.rng)
        return (await self._read()).placement(), None

    async def _after_success(self, *, moved: bool) -> None:
        request, result = self.request, self.result
        named = [*request.restart, *(("ExternalSecret", name) for name in request.refresh_external_secrets)]
        if not named or self.after_success is None or request.dry_run:
            return
        if not moved and request.after_success_when != "Always":
            return
        if self.journal.after_success_started or result.after_success:
            again = interrupted(result.after_success)  # at most once: never again
            result.after_success_changed = again != result.after_success
            result.after_success = again
            return
        result.after_success = [{"kind": k, "name": n, "result": STARTED, "message": "running"} for k, n in named]
        await self._write(Outcome(Kind.RETRY, "RunningAfterSuccess", "the stage moved; nudging consumers"))
        result.after_success = await self.after_success()
        result.after_success_changed = True

    # --- building blocks -------------------------------------------------------------------------

    async def _read(self) -> VersionList:
        try:
            listing = await self.kms.list_secret_version_ids(self.request.secret_name, include_deprecated=True)
        except KmsError as exc:
            self._history("ListSecretVersionIds", exc.request_id, exc.code)
            raise
        for rid in listing.request_ids:
            self._history("ListSecretVersionIds", rid, "Success")
        return listing

    async def _update(self, call: planning.StageCall) -> str:
        action = f"UpdateSecretVersionStage {call.describe()}"
        try:
            update = await self.kms.update_secret_version_stage(
                self.request.secret_name,
                call.version_stage,
                move_to_version=call.move_to_version,
                remove_from_version=call.remove_from_version,
            )
        except KmsError as exc:
            self._history(action, exc.request_id, exc.code)
            raise
        self._history(action, update.request_id, "Success")
        return update.request_id

    def _history(self, action: str, request_id: str, outcome: str) -> None:
        self.result.history.append(HistoryEntry(self.now(), action, request_id, outcome))
        if request_id:
            self.result.request_ids.append(request_id)

    async def _write(self, outcome: Outcome) -> None:
        result = replace(self.result, outcome=outcome)
        try:
            await write_status(self.store, self.base, result, outcome, self.generation, self.number, self.now)
        except AttemptAborted:
            raise
        except Exception as exc:
            if self.result.request_id or outcome.kind in (Kind.SUCCEEDED, Kind.FAILED):
                # The object was deleted meanwhile, or the API server stays unreachable: what was done
                # in KMS is said here, since no status or event will say it.
                log.warning(
                    "%s generation %d: the status could not be written (%s); what this attempt did: %s: %s "
                    "(move RequestId %s)",
                    self.who or "the promotion",
                    self.generation,
                    exc,
                    outcome.reason,
                    outcome.message,
                    self.result.request_id or "unknown",
                )
            raise

    # --- outcomes ----------------------------------------------------------------------------------

    def _promoted(self, move: MoveRecord) -> Outcome:
        if move.answer is Answer.RECEIVED and move.request_id:
            if move.earlier_unanswered:
                # On a KMS that accepts a move that is already in place, an earlier request of this
                # generation that arrived late may be the one that moved the stage.
                return Outcome(
                    Kind.SUCCEEDED,
                    "Promoted",
                    f"{move.describe()} (RequestId {move.request_id}); an earlier request of this promotion, "
                    f"sent at {move.earlier_unanswered}, got no answer and may be the one that moved it",
                )
            return Outcome(Kind.SUCCEEDED, "Promoted", f"{move.describe()} (RequestId {move.request_id})")
        return Outcome(
            Kind.SUCCEEDED,
            "PromotedAnswerLost",
            f"KMS shows the result of {move.describe()}, sent at {move.sent_time}, but its answer was lost "
            "(timeout, dropped connection or operator restart), so its RequestId is unknown; look it up in "
            "ActionTrail around that time. (Another change putting it there in the meantime cannot be ruled out.)",
        )

    def _superseded(self, move: MoveRecord, placement: dict[str, str]) -> Outcome:
        self.result.stages_after = placement
        holder = placement.get(move.version_stage) or "no version"
        if move.answer is Answer.RECEIVED:
            what = f"{move.describe()} was applied (RequestId {move.request_id})"
        else:
            what = f"{move.describe()} was sent at {move.sent_time} and its answer was lost"
        return failed(
            "Superseded",
            f"{what}, and another change has since moved {move.version_stage} to {holder}; "
            "the operator does not override it. Check the secret and create a new promotion if needed",
        )


async def write_status(
    store: StatusStore,
    base: Mapping[str, Any],
    result: AttemptResult,
    outcome: Outcome,
    generation: int,
    number: int,
    now: Callable[[], str],
) -> None:
    """A journal or final write, compare-and-set. A conflict caused by a change that left this
    generation's journal as the attempt knows it (labels, kopf's annotations, a spec edit) is
    written again on the fresh version; any other conflict aborts the attempt."""
    known = Journal.of(store.status, generation)
    for _ in range(3):
        status = build_status(
            base,
            result=replace(result, outcome=outcome),
            generation=generation,
            now=now(),
            attempt=number,
            latest=store.status,
        )
        try:
            await store.write(status)
            return
        except StaleStatus:
            fresh = await store.refresh()
            if Journal.of(fresh, generation) != known or _done(fresh, generation):
                raise AttemptAborted(fresh) from None
    raise AttemptAborted(store.status)


def _error(exc: KmsError) -> ErrorInfo:
    return ErrorInfo(exc.code, exc.message, exc.request_id, exc.retryable)


def _done(status: Mapping[str, Any], generation: int) -> bool:
    return status.get("observedGeneration") == generation and status.get("phase") in ("Succeeded", "Failed")
