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
import enum
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from secretstage.domain import planning
from secretstage.domain.approval import ApprovalRule, Decision, decide
from secretstage.domain.approval import record as approval_record
from secretstage.domain.gate import HOLD, POLL_SECONDS, Check, Gate, Verdict, later, passed_deadline, verdict_of
from secretstage.domain.journal import (
    STARTED,
    Answer,
    GateState,
    Inherited,
    Journal,
    MoveRecord,
    MoveState,
    ObjectGone,
    RollbackState,
    StaleStatus,
    classify,
    interrupted,
    not_this_specs,
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
from secretstage.domain.schedule import Wait, parse_time
from secretstage.domain.status import WAITING_REASONS, build_status, is_done, succeeded_condition
from secretstage.kms import CredentialsError, KmsError
from secretstage.kms.endpoints import region_of
from secretstage.kms.models import StageUpdate, VersionList

log = logging.getLogger(__name__)

NEVER_RECHECK_SECONDS = 24 * 3600.0  # a schedule with no opening in 50 years: look again daily (a spec edit wakes it)
APPROVAL_POLICY_RECHECK_SECONDS = 60.0  # approvals that cannot be trusted: look at the admission policy again
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
        before_send: Callable[[], Awaitable[None]] | None = None,
    ) -> StageUpdate: ...


class StatusStore(Protocol):
    """``.status`` of one object, written with compare-and-set."""

    @property
    def status(self) -> Mapping[str, Any]:
        """The status as last read or written by this store."""
        ...

    @property
    def uid(self) -> str:
        """metadata.uid of the object as last read: a delete and re-create under the same name changes it."""
        ...

    @property
    def generation(self) -> int | None:
        """metadata.generation of the object as last read: a spec edit raises it."""
        ...

    async def write(self, status: Mapping[str, Any]) -> None:
        """Replace the status, only if the object is unchanged since ``status`` was read; else StaleStatus."""
        ...

    async def refresh(self) -> Mapping[str, Any]:
        """Read the object again; later writes compare against this version. ObjectGone if deleted."""
        ...


class Abort(enum.Enum):
    JOURNAL = "another attempt wrote this generation's journal meanwhile"
    EDITED = "the spec was edited (a new generation) before the move was sent"
    REPLACED = "the promotion was deleted and created again under the same name"
    DELETED = "the promotion was deleted"


class AttemptAborted(Exception):
    """The object changed under this attempt in a way that ends it without writing anything more:
    another attempt (a stale copy of this one, or another replica) wrote this generation's journal,
    a newer generation started before the move was sent, or the object was deleted or replaced."""

    def __init__(self, status: Mapping[str, Any], why: Abort = Abort.JOURNAL) -> None:
        super().__init__(f"the promotion changed under this attempt: {why.value}")
        self.status = status
        self.why = why


# Restarts the workloads and re-syncs the ExternalSecrets afterSuccess names; the argument is the version
# the restarted pod templates are stamped with (secretstage.io/version: the gate counts pods by it).
AfterSuccessRunner = Callable[[str | None], Awaitable[list[dict[str, str]]]]
# The gate's checks for the version: creates its Jobs if they do not exist yet, reads everything once.
GateRunner = Callable[[Gate, str], Awaitable[list[Check]]]
# The canary promotion of this generation (created if it does not exist yet), as a check.
CanaryRunner = Callable[[], Awaitable[Check]]
# Why the gate could not give a fair verdict, asked before the first send: (field, what to do).
GateRefusals = Callable[[Gate], Awaitable[list[tuple[str, str]]]]
#: Why the approvals written on the object cannot be trusted now (the admission policy that authenticates
#: approvers is missing, or newer than the object), or None.
ApprovalPolicy = Callable[[], Awaitable[str | None]]


# KMS accepts a signed request for 15 minutes around its timestamp (kms-api.md 4.3): a request that got
# no answer can land until then. A minute more for the distance between this clock and KMS's.
LANDING_WINDOW_SECONDS = 16 * 60

SecretKey = tuple[str, str, str]


@dataclass(frozen=True)
class Holder:
    owner: str  # the promotion's uid: a re-created promotion of the same name is someone else
    who: str  # its name, shown to those that wait (only ever in the same namespace: see secret_key)
    until: float | None = None  # a reservation after the attempt ended: until then (epoch seconds)
    sent_time: str | None = None  # the request that may still land


class SecretLocks:
    """One promotion per secret at a time in this process (see ``secret_key``); the others wait.

    A promotion holds its secret while an attempt runs, and keeps it afterwards while a request of
    it that got no answer may still land (``reserve``): on a KMS that ignores a stale
    RemoveFromVersion, such a request landing after a rival's move would undo that move.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._running: dict[SecretKey, Holder] = {}
        self._reserved: dict[SecretKey, Holder] = {}
        self.clock = clock

    def holder(self, key: SecretKey) -> Holder | None:
        running = self._running.get(key)
        if running is not None:
            return running
        reserved = self._reserved.get(key)
        if reserved is not None and reserved.until is not None and reserved.until > self.clock():
            return reserved
        self._reserved.pop(key, None)
        return None

    @contextlib.asynccontextmanager
    async def hold(self, key: SecretKey, owner: str, who: str) -> AsyncIterator[Holder | None]:
        """Yields None while this promotion holds the secret, or the other promotion that holds it."""
        other = self.holder(key)
        if other is not None and (other.owner != owner or other.until is None):
            yield other
            return
        self._running[key] = Holder(owner, who)
        try:
            yield None
        finally:
            del self._running[key]

    def reserve(self, key: SecretKey, owner: str, who: str, sent_time: str | None) -> None:
        """Keep the secret for ``owner`` until a request sent at ``sent_time`` can no longer land;
        with None, give up any reservation of ``owner``."""
        if sent_time is None:
            if (held := self._reserved.get(key)) is not None and held.owner == owner:
                del self._reserved[key]
            return
        until = _epoch(sent_time) + LANDING_WINDOW_SECONDS
        if until > self.clock():
            self._reserved[key] = Holder(owner, who, until, sent_time)


def reserve_unlanded(locks: SecretLocks, key: SecretKey, uid: str, who: str, status: Mapping[str, Any]) -> None:
    """Reserve ``key`` for the generation whose journal ``status`` holds, while a move of it that got
    no answer may still land: at start-up (a restart forgets reservations), and before a newer
    generation of the same object starts (an edit does not recall a request on its way)."""
    generation = status.get("observedGeneration")
    if not isinstance(generation, int):
        return
    journal = Journal.of(status, generation)
    moves = [journal.move, journal.rollback.move if journal.rollback else None]
    times = [t for move in moves if move is not None for t in move.may_still_land()]
    if times:
        locks.reserve(key, f"{uid}/{generation}", who, max(times))


def _epoch(timestamp: str) -> float:
    return datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def secret_key(namespace: str, endpoint: str, secret_name: str, region: str | None = None) -> SecretKey:
    """What identifies one secret for the per-secret lock, whatever its spelling.

    The secret store is the region where it is known (an ARN's, the spec's regionId, or the region
    in a KMS gateway's host name: the public and the VPC gateway reach the same secrets); else the
    endpoint itself. An ARN and a plain name of the same secret share a key. The namespace is part
    of the key: the account in an ARN is whatever a tenant writes there, so keying across
    namespaces would let one tenant hold another's secret (and learn its promotions' names).
    Promotions of one secret from two namespaces are kept apart by KMS itself (compare-and-set).
    """
    name = secret_name
    if secret_name.startswith("acs:kms:"):
        parts = secret_name.split(":", 5)
        region = parts[2] or region
        name = secret_name.split(":secret/", 1)[1] if ":secret/" in secret_name else secret_name
    region = region or region_of(endpoint)
    store = f"region/{region}" if region else f"endpoint/{endpoint.rstrip('/').lower()}"
    return (namespace, store, name)


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
    gate_checks: GateRunner | None = None
    gate_refusals: GateRefusals | None = None
    canary: CanaryRunner | None = None
    rng: random.Random = field(default_factory=random.Random)
    locks: SecretLocks = field(default_factory=SecretLocks)
    key: SecretKey = ("", "", "")  # see secret_key()
    who: str = ""  # namespace/name, shown to promotions that wait for this one
    annotations: Mapping[str, str] = field(default_factory=dict)  # the object's, as read: approvals
    approval_policy: ApprovalPolicy | None = None  # why approvals cannot be trusted now, or None

    def __post_init__(self) -> None:
        self.base = dict(self.store.status)  # the status this attempt started from (history, attempts)
        self.uid = self.store.uid  # the object this attempt works for: its writes go to no other
        self.owner = f"{self.uid}/{self.generation}"  # who holds the secret: this generation of this object
        self.journal = Journal.of(self.base, self.generation)
        self.result = AttemptResult(outcome=Outcome(Kind.RETRY, "InProgress", ""))
        self.result.stages_before = self.journal.stages_before
        # What an earlier generation moved: carried in every write of this one until it decides.
        self.result.inherited = (
            self.journal.inherited if _observed(self.base) == self.generation else Inherited.of_earlier(self.base)
        )
        self.result.move = self.journal.move
        self.result.after_success = list(self.journal.after_success)
        self.result.request_id = self.journal.move.request_id if self.journal.move else None
        self.result.gate = self.journal.gate
        self.result.rollback = self.journal.rollback
        self.unconfirmed: MoveRecord | None = None  # a sent move a read found not applied (yet)
        # Send times of this generation's moves that got no answer and that no read has shown landed:
        # such a request may still land, so the secret stays reserved (SecretLocks.reserve).
        self.may_land: set[str] = set(self.journal.move.may_still_land() if self.journal.move else ())
        rollback_move = self.journal.rollback.move if self.journal.rollback else None
        self.may_land.update(rollback_move.may_still_land() if rollback_move else ())

    # --- the steps -------------------------------------------------------------------------------

    async def run(self) -> AttemptResult:
        """One attempt; writes the final status unless it was aborted (``AttemptAborted``)."""
        foreign = not_this_specs(self.journal.move, self.request)
        if foreign is not None:
            assert self.journal.move is not None
            self.result.outcome = failed(
                "JournalMismatch",
                f"status.move records {self.journal.move.describe()}, but {foreign}: this status was not "
                "written for this spec (edited by hand, restored from a backup, or written by another "
                "controller), and the operator does not act on a record it did not write. Nothing was sent. "
                "To run the promotion from a fresh read of KMS, bump spec.retry",
            )
            await self._write(self.result.outcome)
            return self.result
        if _observed(self.base) < self.generation:  # an earlier generation's move may still be on its way
            reserve_unlanded(self.locks, self.key, self.uid, self.who, self.base)
        async with self.locks.hold(self.key, self.owner, self.who) as holder:
            if holder is not None:
                self.result.outcome = self._waiting(holder)
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
                finally:
                    # Even when aborted: a request that got no answer may land after this attempt.
                    self.locks.reserve(self.key, self.owner, self.who, max(filter(None, self.may_land), default=None))
            if not self._still_waiting_as_written():
                await self._write(self.result.outcome)
        return self.result

    def _still_waiting_as_written(self) -> bool:
        """The status already says this generation waits for its schedule, or for approval, as this
        attempt found: a restarted operator (or a spurious wake) writes nothing for thousands of
        waiting promotions."""
        outcome = self.result.outcome
        if outcome.reason not in WAITING_REASONS or _observed(self.base) != self.generation:
            return False
        written = succeeded_condition(self.base)
        return bool(written.get("reason") == outcome.reason and written.get("message") == outcome.message)

    def _waiting(self, holder: Holder) -> Outcome:
        delay = self.rng.uniform(0.5, 1.5)
        if holder.until is not None:  # minutes, not a round trip: look less often
            delay = max(1.0, min(holder.until - self.locks.clock(), self.rng.uniform(10.0, 30.0)))
            why = (
                f"a move of promotion {holder.who} sent at {holder.sent_time} got no answer and may still land "
                f"until {LANDING_WINDOW_SECONDS // 60} minutes after that; this one waits so that it cannot be undone"
            )
        else:
            why = f"promotion {holder.who} is changing secret {self.request.secret_name}"
        return Outcome(
            Kind.PENDING, "WaitingForSecret", f"{why}; this one waits its turn (next look in {delay:.1f}s)", None, delay
        )

    async def _steps(self) -> None:
        request, result = self.request, self.result
        if result.rollback is not None:  # a failed gate decided to move back: finish that, nothing else
            await self._rollback()
            return
        if result.gate is not None and result.gate.verdict is Verdict.PENDING and request.gate is not None:
            await self._gate()  # the gate runs: its checks only, no KMS read until a verdict
            return
        if self._may_send_a_new_move():
            # Asked only before anything of this generation may have been sent: a window that closes,
            # or a rejection that comes, during a move, its gate or its rollback interrupts none of them.
            if request.approval is not None and not await self._approved(request.approval):
                return
            wait = request.schedule.wait(parse_time(self.now())) if request.schedule is not None else None
            if wait is not None:
                result.outcome = self._scheduled(wait)
                return
        if request.canary is not None and self.canary is not None and self._nothing_done_yet():
            # Read-only here (the canary promotion journals its own moves): a crash, an edit or a
            # delete at this await leaves nothing of this generation to undo.
            check = await self.canary()
            if check.verdict is Verdict.PENDING:
                result.outcome = Outcome(Kind.VERIFYING, "CanaryVerifying", check.message, None, POLL_SECONDS)
                return
            if check.verdict is not Verdict.PASSED:
                result.outcome = failed("CanaryFailed", f"{check.message}; {request.version_stage} was not moved")
                return
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
                self.may_land.discard(result.move.sent_time)  # it landed (a request lands once)
                result.move = result.move.seen_applied(self.now())
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
            inherited = self._gate_of_earlier_generation(placement) if plan.call is None else None
            if inherited is not None:
                result.stages_before, result.stages_after = dict(inherited.stages_before), placement
                if inherited.fresh and result.gate is None:
                    # A re-run: fresh consumers first (a held gate's pods crash-looped). The new gate's
                    # start rides on the restarts' intent write: after a crash there, the next attempt
                    # finds this generation gating (restarts not repeated), never "already in place".
                    assert request.gate is not None
                    assert request.move_to_version is not None
                    now = self.now()
                    result.gate = GateState(request.move_to_version, now, later(now, request.gate.timeout_seconds))
                    await self._after_success(moved=True)
                await self._gate()
                return
            refused = await self._gate_refusals() if plan.call is not None else []
            if refused:
                result.stages_before = result.stages_after = placement
                result.outcome = failed(
                    "GateCannotRun",
                    "; ".join(f"{where}: {what}" for where, what in refused) + "; nothing was moved",
                )
                return
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
            if state is MoveState.MOVED:
                self.may_land.discard(result.move.sent_time)
                result.move = result.move.seen_applied(self.now())
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
        if request.gate is not None:
            await self._gate()
            return
        result.outcome = previous_problem or self._promoted(move)

    def _scheduled(self, wait: Wait) -> Outcome:
        """Pending until the schedule allows the move: one status write, then asleep until then (a
        delayed key costs no request; a spec edit wakes it at once)."""
        now = parse_time(self.now())
        if wait.until is None:
            return Outcome(Kind.PENDING, wait.reason, f"{wait.message}; nothing is sent", None, NEVER_RECHECK_SECONDS)
        self.result.schedule_opens = wait.until.strftime("%Y-%m-%dT%H:%M:%SZ")
        delay = max(1.0, (wait.until - now).total_seconds())
        return Outcome(Kind.PENDING, wait.reason, f"{wait.message}; nothing is sent until then", None, delay)

    def _may_send_a_new_move(self) -> bool:
        """This generation has journaled nothing, and it is not only carrying on with what an earlier
        generation moved (the same version, gated anew after an edit: approved and scheduled then).
        A generation that may move the stage to a version of its own is approved and scheduled first,
        also when an earlier generation moved it (an edit of a finished promotion to another version)."""
        journal, inherited, request = self.journal, self.result.inherited, self.request
        if journal.move is not None or journal.gate is not None or journal.rollback is not None:
            return False
        return not (
            inherited is not None
            and request.gate is not None
            and inherited.version_stage == request.version_stage
            and inherited.version == request.move_to_version
        )

    async def _approved(self, rule: ApprovalRule) -> bool:
        """spec.approval: True when this generation may go on; else the outcome says why it waits, or
        that it was rejected. Read-only: a crash, an edit or a delete at this await leaves nothing to
        undo, and an approval or rejection written meanwhile changes the object, so the status written
        from this look fails its compare-and-set and the next attempt reads the new one."""
        result = self.result
        problem = (
            await self.approval_policy()
            if self.approval_policy is not None
            else "the operator cannot check the admission policy that authenticates approvers"
        )
        if problem is not None:
            again = APPROVAL_POLICY_RECHECK_SECONDS
            message = f"{problem} (looking again in {again:.0f}s)"
            result.outcome = Outcome(Kind.PENDING, "ApprovalUntrusted", message, None, again)
            return False
        approvals = decide(rule, self.annotations, self.generation)
        result.approval = approval_record(approvals, self.generation, self.now(), self.base.get("approval"))
        namespace, _, name = self.who.partition("/")
        message = approvals.message(name, namespace, rule, self.generation)
        if approvals.decision is Decision.REJECTED:
            result.outcome = failed("Rejected", message)
            return False
        if approvals.decision is Decision.WAITING:
            # Asleep until the object changes (an approval is a change); a daily look is a safety net.
            result.outcome = Outcome(Kind.PENDING, "AwaitingApproval", message, None, NEVER_RECHECK_SECONDS)
            return False
        return True

    def _nothing_done_yet(self) -> bool:
        """This generation has journaled nothing, and no earlier one moved the stage: the canary comes
        first. Once this stage's move may have been sent, the canary is history."""
        journal = self.journal
        return (
            journal.move is None
            and journal.gate is None
            and journal.rollback is None
            and self.unconfirmed is None
            and self.result.inherited is None
        )

    async def _gate_refusals(self) -> list[tuple[str, str]]:
        """Read-only, before the first send of this generation (nothing journaled yet: a crash, an
        edit or a delete here leaves nothing to undo). Not asked once a send may be on its way: a
        refusal then could not stop a move that still lands."""
        if self.request.gate is None or self.gate_refusals is None or self.unconfirmed is not None:
            return []
        return await self.gate_refusals(self.request.gate)

    async def _move(
        self, call: planning.StageCall, placement: dict[str, str]
    ) -> tuple[dict[str, str], KmsError | None]:
        """intent, then the one UpdateSecretVersionStage. Returns the placement after it (read back,
        or, with verify off and a custom stage, as KMS's success answer implies) and the error that
        hid the answer, if any.

        The intent is written right before the request leaves (``before_send``: after the KMS
        client's waits for a concurrency slot, a rate-limit token and credentials), so an edit,
        delete or re-create that lands during those waits fails the intent's compare-and-set and
        the move is never sent.
        """
        result = self.result
        result.stages_before = placement
        record = MoveRecord.intent(call, self.now(), self.unconfirmed)

        async def journal_intent() -> None:
            result.move = record
            result.inherited = None  # this generation moves itself: what an earlier one moved is history
            await self._write(Outcome(Kind.RETRY, "Promoting", f"{call.describe()}: calling KMS"), sends_move=True)
            self.may_land.add(record.sent_time)  # from here on the request may be on its way

        try:
            request_id = await self._update(call, before_send=journal_intent)
        except CredentialsError:
            result.move = self.unconfirmed  # no credentials, no request: this move was never sent
            raise
        except KmsError as exc:
            if exc.maybe_applied:
                result.move = record.lost()
                return (await self._read()).placement(), exc  # did it land? classify() decides
            # Refused: this request was certainly not applied. An earlier one of this generation
            # whose answer was lost may still land (or just did): keep its record in the journal.
            self.may_land.discard(record.sent_time)
            result.move = self.unconfirmed
            if exc.retryable:
                raise
            # A refusal can mean a concurrent change made the move stale (KMS checking RemoveFromVersion
            # is what makes compare-and-set atomic): plan again from a fresh read, precondition included.
            listing = await self._read()
            if listing.placement() != placement:
                raise _Restart(listing) from None
            raise
        self.may_land.discard(record.sent_time)  # answered: applied
        result.move = record.received(request_id)
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
            self._previous_landed()  # an earlier attempt's fix-up, if any, is in place
            return placement, None

        # The fix-up is irreversible: journal the move's RequestId first, and let the compare-and-set
        # prove this attempt is not working from a stale copy (whose "displaced" may be out of date).
        # It completes a move that landed, so an edit since does not stop it; a delete does.
        async def journal_move() -> None:
            assert self.result.move is not None
            self.result.move = replace(self.result.move, previous_sent=self.now())
            await self._write(Outcome(Kind.RETRY, "SettingPrevious", f"{fix.describe()}: calling KMS"))
            if self.result.move.previous_sent:
                self.may_land.add(self.result.move.previous_sent)

        try:
            await self._update(fix, before_send=journal_move)
        except KmsError as exc:
            if not (exc.maybe_applied or exc.retryable):
                self._previous_landed()  # refused: it cannot land
                return placement, Outcome(
                    Kind.SUCCEEDED,
                    "PromotedPreviousNotMoved",
                    f"{move.describe()} done (RequestId {move.request_id or 'unknown'}), but KMS refused to put "
                    f"ACSPrevious on {displaced}: {exc.code}: {exc.message}",
                    _error(exc),
                )
            if not exc.maybe_applied:
                self._previous_landed()  # refused for now (throttled): it cannot land; retried from the journal
            after = (await self._read()).placement()
            if after.get(ACS_PREVIOUS) == displaced:
                self._previous_landed()
                return after, None
            return after, from_kms_error(exc.code, exc.message, exc.request_id, True, self.number, rng=self.rng)
        self._previous_landed()
        return (await self._read()).placement(), None

    def _previous_landed(self) -> None:
        move = self.result.move
        if move is not None and move.previous_sent:
            self.may_land.discard(move.previous_sent)
            self.result.move = replace(move, previous_sent=None)

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
        result.after_success = await self.after_success(request.move_to_version)
        result.after_success_changed = True

    # --- the gate and the rollback (domain.gate) ----------------------------------------------------

    def _gate_of_earlier_generation(self, placement: Mapping[str, str]) -> Inherited | None:
        """What an earlier generation of this promotion moved (``result.inherited``), when it moved the
        stage to this spec's version and the stage is still there: this generation gates that version
        instead of calling it "already in place", and a rollback goes back to where the stage was
        before the first move.

        Still gating then (an edit during the gate: a longer timeout, another check): the gate starts
        anew under the new spec, consumers as they are. Otherwise (its gate passed; failed and held;
        failed with the move back not sent yet; or it moved and never gated: a crash before the gate,
        a gate the edit added): consumers restarted first (spec.retry, the Argo CD action rerun-gate).
        """
        request, inherited = self.request, self.result.inherited
        if request.gate is None or inherited is None:
            return None
        if inherited.version_stage != request.version_stage or inherited.version != request.move_to_version:
            return None
        if placement.get(request.version_stage) != inherited.version:
            return None
        return inherited

    async def _gate(self) -> None:
        """Start the gate (journaled first: its deadline survives a restart), look at its checks once, and
        decide: still waiting (look again in a few seconds), passed, or failed (Hold, or roll back)."""
        request, result = self.request, self.result
        gate, stage = request.gate, request.version_stage
        self._stop_if_edited()  # the new generation gates (or moves) under its own spec
        assert gate is not None
        assert request.move_to_version is not None
        assert self.gate_checks is not None
        if result.gate is None:
            now = self.now()
            result.gate = GateState(request.move_to_version, now, later(now, gate.timeout_seconds))
            await self._write(
                Outcome(
                    Kind.VERIFYING,
                    "Verifying",
                    f"{stage} is on {request.move_to_version}; the gate checks its consumers until "
                    f"{result.gate.deadline}",
                )
            )
        state = result.gate
        checks = await self.gate_checks(gate, state.version)
        verdict, failure = verdict_of(checks, timed_out=passed_deadline(self.now(), state.deadline))
        result.gate = state.with_checks(checks, verdict, failure)
        if verdict is Verdict.PENDING:
            waiting = "; ".join(c.message for c in checks if c.verdict is Verdict.PENDING)
            result.outcome = Outcome(
                Kind.VERIFYING, "Verifying", f"until {state.deadline}: {waiting}", None, POLL_SECONDS
            )
            return
        listing = await self._read()
        placement = listing.placement()
        result.stages_after = placement
        if placement.get(stage) != state.version:
            result.outcome = failed(
                "SupersededDuringGate",
                f"the gate {'passed' if verdict is Verdict.PASSED else 'failed'}, but {stage} is no longer on "
                f"{state.version}: another change moved it to {placement.get(stage) or 'no version'} meanwhile; "
                "the operator neither confirms nor rolls back over it",
            )
            return
        if verdict is Verdict.PASSED:
            moved = (
                self._promoted(result.move).message
                if result.move is not None
                else f"{stage} is on {state.version} (moved by an earlier generation of this promotion)"
            )
            result.outcome = Outcome(Kind.SUCCEEDED, "Verified", f"{moved}; every gate check passed")
            return
        assert failure is not None
        if verdict is Verdict.INCONCLUSIVE:  # never a rollback on a guess, whatever onFailure says
            result.outcome = failed(
                "GateFailed",
                f"{failure}; an inconclusive analysis holds: {stage} stays on {state.version} for a person to decide",
            )
            return
        if gate.on_failure == HOLD:
            result.outcome = failed(
                "GateFailed", f"{failure}; onFailure is Hold: {stage} stays on {state.version} for a person to decide"
            )
            return
        before = result.stages_before or {}
        result.rollback = RollbackState(failure, before.get(stage) or "")
        await self._rollback(listing)

    async def _rollback(self, listing: VersionList | None = None) -> None:
        """Move the stage back where stagesBefore had it, compare-and-set on the version the promotion
        moved it to; then ACSPrevious back too, then the consumers restarted again (once). Journaled
        like the move: the intent before the request leaves, never re-sent blindly after a lost answer."""
        request, result = self.request, self.result
        rollback, gate = result.rollback, result.gate
        assert rollback is not None
        assert gate is not None
        stage, before = request.version_stage, result.stages_before or {}
        call = planning.rollback_call(stage, gate.version, before)
        placement = (listing or await self._read()).placement()
        if rollback.move is None or classify(rollback.move, placement) is MoveState.NOT_APPLIED:
            if rollback.move is None and placement.get(stage) != gate.version:
                result.outcome = self._rollback_superseded(placement)
                return
            placement = await self._send_rollback(call, placement)  # journaled first
        rollback = result.rollback
        assert rollback is not None
        if rollback.move is None:  # refused: the stage had left the version meanwhile
            result.outcome = self._rollback_superseded(placement)
            return
        state = classify(rollback.move, placement)
        if state is MoveState.SUPERSEDED:
            result.outcome = self._rollback_superseded(placement)
            return
        if state is MoveState.NOT_APPLIED:
            delay = backoff_delay(self.number, rng=self.rng)
            result.stages_after = placement
            result.outcome = Outcome(
                Kind.RETRY,
                "RollbackOutcomeUnknown",
                f"the gate failed ({rollback.reason}); {call.describe()} got no answer and KMS does not show it; "
                f"reading again in {delay:.1f}s (nothing is re-sent blindly)",
                None,
                delay,
            )
            return
        self.may_land.discard(rollback.move.sent_time)  # it landed: a request lands once
        result.rollback = replace(rollback, move=rollback.move.seen_applied(self.now()))
        placement = await self._rollback_previous(placement)
        result.stages_after = placement
        await self._restart_after_rollback()
        assert result.rollback is not None
        assert result.rollback.move is not None
        back = result.rollback.move
        earlier = (
            f"; an earlier request of it, sent at {back.earlier_unanswered}, got no answer and may be the one that "
            "moved it"
            if back.earlier_unanswered
            else ""
        )
        result.outcome = failed(
            "RolledBack",
            f"the gate failed: {rollback.reason}; {call.describe()} "
            f"(RequestId {back.request_id or 'unknown: its answer was lost'}){earlier}",
        )

    def _stop_if_edited(self) -> None:
        """A generation whose spec was edited since starts nothing new (no gate look, no move back): its
        status writes succeed once re-based on the edited object, so the compare-and-set alone cannot
        tell. What it journaled before stays, and the new generation decides from a fresh read."""
        if self.store.generation is not None and self.store.generation != self.generation:
            raise AttemptAborted(self.store.status, Abort.EDITED)

    def _rollback_superseded(self, placement: Mapping[str, str]) -> Outcome:
        rollback, gate, stage = self.result.rollback, self.result.gate, self.request.version_stage
        assert rollback is not None
        assert gate is not None
        self.result.stages_after = dict(placement)
        return failed(
            "RollbackSuperseded",
            f"the gate failed ({rollback.reason}), but {stage} is on {placement.get(stage) or 'no version'} now, "
            f"not {gate.version}: another change moved it; the operator does not roll back over it",
        )

    async def _send_rollback(self, call: planning.StageCall, placement: dict[str, str]) -> dict[str, str]:
        result = self.result
        assert result.rollback is not None
        earlier = result.rollback.move
        record = MoveRecord.intent(call, self.now(), earlier)

        async def journal_intent() -> None:
            assert result.rollback is not None
            self._stop_if_edited()
            result.rollback = replace(result.rollback, move=record)
            await self._write(Outcome(Kind.RETRY, "RollingBack", f"{call.describe()}: calling KMS"), sends_move=True)
            self.may_land.add(record.sent_time)

        try:
            request_id = await self._update(call, before_send=journal_intent)
        except KmsError as exc:
            if exc.maybe_applied:
                result.rollback = replace(result.rollback, move=record.lost())
                return (await self._read()).placement()
            self.may_land.discard(record.sent_time)
            result.rollback = replace(result.rollback, move=earlier)
            if exc.retryable:
                raise
            # Refused for good: on a KMS that checks RemoveFromVersion, another change moved the stage
            # off the version this promotion put it on. Said as such; anything else is KMS's refusal.
            after = (await self._read()).placement()
            if after.get(call.version_stage) != call.remove_from_version:
                return after
            raise
        self.may_land.discard(record.sent_time)
        result.rollback = replace(result.rollback, move=record.received(request_id))
        return (await self._read()).placement()

    async def _rollback_previous(self, placement: dict[str, str]) -> dict[str, str]:
        """ACSPrevious back where it was before the promotion; a refusal is said, not retried forever."""
        result = self.result
        assert result.rollback is not None
        assert result.rollback.move is not None
        assert result.gate is not None
        stage, left = self.request.version_stage, result.gate.version
        fix = planning.rollback_previous(stage, left, result.stages_before or {}, placement)
        if fix is None:
            self._rollback_previous_landed()
            return placement

        async def journal_fix() -> None:
            assert result.rollback is not None
            assert result.rollback.move is not None
            move = replace(result.rollback.move, previous_sent=self.now())
            result.rollback = replace(result.rollback, move=move)
            await self._write(Outcome(Kind.RETRY, "RollingBack", f"{fix.describe()}: calling KMS"))
            if move.previous_sent:
                self.may_land.add(move.previous_sent)

        try:
            await self._update(fix, before_send=journal_fix)
        except KmsError as exc:
            if exc.maybe_applied or exc.retryable:
                raise  # the next attempt reads and decides again (the fix-up is idempotent on a fresh read)
            log.warning("%s: after the rollback KMS refused %s: %s %s", self.who, fix.describe(), exc.code, exc.message)
        self._rollback_previous_landed()
        return (await self._read()).placement()

    def _rollback_previous_landed(self) -> None:
        rollback = self.result.rollback
        if rollback is not None and rollback.move is not None and rollback.move.previous_sent:
            self.may_land.discard(rollback.move.previous_sent)
            self.result.rollback = replace(rollback, move=replace(rollback.move, previous_sent=None))

    async def _restart_after_rollback(self) -> None:
        """The consumers go back to the old version too: restarted once more, at most once."""
        request, result = self.request, self.result
        rollback = result.rollback
        assert rollback is not None
        if not request.restart or self.after_success is None:
            return
        if rollback.after_success:  # started by an earlier attempt: never again
            result.rollback = replace(rollback, after_success=tuple(interrupted(rollback.after_success)))
            return
        named = [*request.restart, *(("ExternalSecret", name) for name in request.refresh_external_secrets)]
        started = tuple({"kind": k, "name": n, "result": STARTED, "message": "running"} for k, n in named)
        result.rollback = replace(rollback, after_success=started)
        await self._write(Outcome(Kind.RETRY, "RollingBack", "the stage is back; restarting its consumers"))
        done = await self.after_success(rollback.to_version or None)
        result.rollback = replace(result.rollback, after_success=tuple(done))
        result.rollback_restarts_changed = True

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

    async def _update(self, call: planning.StageCall, *, before_send: Callable[[], Awaitable[None]]) -> str:
        action = f"UpdateSecretVersionStage {call.describe()}"
        try:
            update = await self.kms.update_secret_version_stage(
                self.request.secret_name,
                call.version_stage,
                move_to_version=call.move_to_version,
                remove_from_version=call.remove_from_version,
                before_send=before_send,
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

    async def _write(self, outcome: Outcome, *, sends_move: bool = False) -> None:
        result = replace(self.result, outcome=outcome)
        try:
            await write_status(
                self.store,
                self.base,
                result,
                outcome,
                self.generation,
                self.number,
                self.now,
                uid=self.uid,
                sends_move=sends_move,
            )
        except AttemptAborted as aborted:
            if aborted.why is not Abort.JOURNAL and (self.result.request_id or self.may_land):
                # Nothing will be written for what this attempt did in KMS: say it here.
                self._log_unwritten(aborted.why.value, outcome)
            raise
        except Exception as exc:
            if self.result.request_id or outcome.kind in (Kind.SUCCEEDED, Kind.FAILED):
                # The API server stays unreachable: what was done in KMS is said here, since no status
                # or event will say it.
                self._log_unwritten(f"the status could not be written ({exc})", outcome)
            raise

    def _log_unwritten(self, why: str, outcome: Outcome) -> None:
        move = self.result.move
        log.warning(
            "%s generation %d: %s; what this attempt did: %s: %s (%s, RequestId %s, sent at %s)",
            self.who or "the promotion",
            self.generation,
            why,
            outcome.reason,
            outcome.message,
            move.describe() if move else "no move",
            self.result.request_id or "unknown",
            move.sent_time if move else "-",
        )

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
    *,
    uid: str,
    sends_move: bool = False,
) -> None:
    """A journal or final write, compare-and-set on the resourceVersion. On a conflict the object
    is read again and the write is

    * dropped (``AttemptAborted``) when the object is another one (deleted, or re-created under the
      same name), when a newer generation has written status, when this generation's journal is not
      the one the attempt knows (a stale copy, another replica) or is final, and, after an edit of
      the spec, unless the attempt completes a move its generation journaled: the intent of a move
      (``sends_move``) is always dropped then, so a withdrawn move is never sent;
    * taken as done when the object already holds it (the write landed, its answer was lost);
    * written again otherwise (labels, annotations: the journal is as the attempt knows it).
    """
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
        except ObjectGone:
            raise AttemptAborted({}, Abort.DELETED) from None
        except StaleStatus:
            try:
                fresh = await store.refresh()
            except ObjectGone:
                raise AttemptAborted({}, Abort.DELETED) from None
            if store.uid != uid:
                raise AttemptAborted(fresh, Abort.REPLACED) from None
            edited = store.generation != generation
            if _observed(fresh) > generation or (edited and sends_move):
                raise AttemptAborted(fresh, Abort.EDITED) from None
            if _holds(fresh, status):
                return
            if edited and known.move is None:
                # After an edit an old generation may complete a move it journaled (the ACSPrevious
                # fix-up, afterSuccess, its report), never start one, nor report on one it never sent.
                raise AttemptAborted(fresh, Abort.EDITED) from None
            if Journal.of(fresh, generation) != known or is_done(fresh, generation):
                raise AttemptAborted(fresh) from None
    raise AttemptAborted(store.status)


def _observed(status: Mapping[str, Any]) -> int:
    value = status.get("observedGeneration")
    return value if isinstance(value, int) else 0


def _holds(current: Mapping[str, Any], patch: Mapping[str, Any]) -> bool:
    """Whether ``current`` already shows everything the merge patch ``patch`` sets."""
    for key, value in patch.items():
        if value is None:
            if key in current:
                return False
        elif isinstance(value, Mapping):
            inner = current.get(key)
            if not isinstance(inner, Mapping) or not _holds(inner, value):
                return False
        elif current.get(key) != value:
            return False
    return True


def _error(exc: KmsError) -> ErrorInfo:
    return ErrorInfo(exc.code, exc.message, exc.request_id, exc.retryable)
