"""A fault explorer for the promotion protocol (secretstage.protocol).

The protocol runs against an in-memory KMS (the emulator's own ``Store``, with every switch the
docs leave open) reached through the real ``KmsClient`` (its retry loop and its classification of
answers: only the HTTP exchange is replaced), and an in-memory API server with Kubernetes'
compare-and-set, uid and generation semantics. Each call into either, each afterSuccess run, and
the end of each attempt is an *await point*, numbered in order across attempts. A schedule injects
faults at chosen points; after the faulted attempt, fresh attempts run (as kopf would retry) until
the promotion is final, then every stale copy of the object that ever existed is handed to one more
attempt (as kopf does when an event lags). Then the invariants are checked (``check``).

Besides faults of one call (a crash, a lost answer, throttling, ...), a schedule can change the
world around the promotion at any point ("edges"): the spec is edited (a new generation), the
object is deleted, or deleted and created again under the same name (a new uid, a new spec),
another writer changes its status, a stale copy of it is handed to another process, or another
replica takes over (its KMS calls then fenced off in the old one, its status writes not).
"""

from __future__ import annotations

import contextlib
import itertools
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from secretstage import protocol
from secretstage.domain.gate import Check, Gate, Verdict
from secretstage.domain.journal import Answer, Journal, ObjectGone, StaleStatus
from secretstage.domain.promotion import ACS_CURRENT, ACS_PREVIOUS, Canary, PromotionRequest
from secretstage.emulator.state import KmsFault, Store
from secretstage.kms import Credentials, CredentialsError, KmsApiError, KmsClient, KmsError, KmsTransportError
from secretstage.kms import StaticProvider as _StaticProvider
from secretstage.kms.retry import RetryPolicy

SECRET = "app/db"
ACCOUNT = "1234567890123456"
ARN = f"acs:kms:cn-hangzhou:{ACCOUNT}:secret/{SECRET}"
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
NAMESPACE = "team-a"
# P names the secret by region (the public gateway); its rival Q by ARN over the VPC gateway: two
# spellings of one secret, which must share the per-secret lock.
P_KEY = protocol.secret_key(NAMESPACE, "https://kms.cn-hangzhou.aliyuncs.com", SECRET, "cn-hangzhou")
Q_KEY = protocol.secret_key(NAMESPACE, "https://kms-vpc.cn-hangzhou.aliyuncs.com", ARN)

# Changes of the world around the promotion, possible at any point (once per schedule).
EDGE_FAULTS = ("edit", "recreate", "delete", "hand-edit", "stale", "replica")
# Faults by kind of await point. "foreign" = another pipeline moves the stage just before the call
# lands; "rival" = another promotion of the same secret in this operator starts now.
# "credentials": the credentials provider fails before anything is sent (an STS exchange, a token).
# "throttle": refused for the rest of the call (the client's own retries give up); "throttle-once":
# refused once, then the client's retry goes through.
KMS_READ_FAULTS = ("crash", "throttle", "throttle-once", "credentials", "foreign", "rival", *EDGE_FAULTS)
# "late": the request times out on the client and lands at KMS at the next await point; "later":
# four points on (typically inside the next attempt, after it read the stage still unmoved).
# "internal-400"/"internal-200": applied, then answered InternalFailure under HTTP 400 or 200;
# "unavailable-503": not applied, answered ServiceUnavailable (503).
KMS_MOVE_FAULTS = (
    "crash",
    "crash-after",
    "lost-after",
    "timeout-before",
    "late",
    "later",
    "throttle",
    "throttle-once",
    "credentials",
    "foreign",
    "rival",
    "internal-400",
    "internal-200",
    "unavailable-503",
    *EDGE_FAULTS,
)
# "answer-lost": the write lands, its answer does not; the store's own retry then meets a conflict.
WRITE_FAULTS = ("crash", "crash-after", "conflict", "answer-lost", *EDGE_FAULTS)
AFTER_SUCCESS_FAULTS = ("crash", "crash-after", *EDGE_FAULTS)
# A look of the gate at its checks: "gate-fail" = the consumers fail from now on (a crash loop on the
# new value); "gate-inconclusive" = an analysis that cannot decide (it must hold, never roll back);
# "foreign" = another pipeline moves the stage while the gate runs.
GATE_FAULTS = ("crash", "gate-fail", "gate-inconclusive", "foreign", "retry", *EDGE_FAULTS)
# "retry": a new generation with the same spec (spec.retry + 1, the Argo CD actions retry and
# rerun-gate), during the gate or after the verdict: gated scenarios only (explore() leaves it out
# of the others, where it is an "edit" that asks nothing new).
GATED_ONLY_FAULTS = ("retry",)
FAULTS_BY_KIND = {
    "kms.read": KMS_READ_FAULTS,
    "kms.move": KMS_MOVE_FAULTS,
    "status.write": WRITE_FAULTS,
    "status.refresh": ("crash", *EDGE_FAULTS),
    "after-success": AFTER_SUCCESS_FAULTS,
    "gate": GATE_FAULTS,
    "canary": ("crash", "canary-fail", "foreign", "retry", *EDGE_FAULTS),
    "attempt.end": ("rival", "retry", *EDGE_FAULTS),  # between two attempts of P, and after the last
}
# Every KMS behaviour the docs leave open: auto ACSPrevious x label held elsewhere x stale RemoveFromVersion.
MODES = [
    {"auto_previous": a, "label_held_elsewhere": h, "remove_mismatch": r}
    for a, h, r in itertools.product((True, False), ("move", "reject"), ("reject", "ignore"))
]
_NO_HTTP = httpx.AsyncClient()  # never sends: ModelKms replaces the HTTP exchange


def mode_id(mode: Mapping[str, object]) -> str:
    return (
        f"prev-{'auto' if mode['auto_previous'] else 'manual'}"
        f"_held-{mode['label_held_elsewhere']}_mismatch-{mode['remove_mismatch']}"
    )


def lenient(mode: Mapping[str, object], remove_from: str | None) -> bool:
    """Whether KMS applies a move planned on a placement that changed before it landed: with
    RemoveFromVersion only when it ignores a stale one (and moves the label from its real holder);
    without (attaching a label that was on no version) whenever it moves a label held elsewhere,
    which is what the API page's sample shows."""
    if remove_from is None:
        return mode["label_held_elsewhere"] == "move"
    return mode["label_held_elsewhere"] == "move" and mode["remove_mismatch"] == "ignore"


class Crash(BaseException):
    """The operator process dies here: nothing in it survives, only what KMS and the API server hold."""


@dataclass
class Scenario:
    name: str
    request: PromotionRequest
    initial: dict[str, str]  # version -> comma-separated stages, beyond v1=ACSCurrent
    foreign_target: str  # where another pipeline moves the stage

    def asked(self, placement: Mapping[str, str]) -> bool:
        holder = placement.get(self.request.version_stage)
        if self.request.move_to_version is not None:
            return holder == self.request.move_to_version
        return holder != self.request.remove_from_version


def _request(**kw: Any) -> PromotionRequest:
    return PromotionRequest(secret_name=SECRET, credentials_secret="k", **kw)


GATED = Scenario(
    "current-gated-rollback",
    _request(
        version_stage=ACS_CURRENT,
        move_to_version="v2",
        precondition_current_version="v1",
        restart=(("Deployment", "api"),),
        gate=Gate(consumers=True),
    ),
    {},
    "v3",
)
GATED_HOLD = Scenario(
    "current-gated-hold",
    _request(
        version_stage=ACS_CURRENT,
        move_to_version="v2",
        restart=(("Deployment", "api"),),
        gate=Gate(consumers=True, on_failure="Hold"),
    ),
    {},
    "v3",
)
GATED_CANARY = Scenario(
    "current-gated-with-canary",
    _request(
        version_stage=ACS_CURRENT,
        move_to_version="v2",
        precondition_current_version="v1",
        restart=(("Deployment", "api"),),
        gate=Gate(consumers=True),
        canary=Canary("ACSCanary", (("Deployment", "api-canary"),), Gate(consumers=True)),
    ),
    {},
    "v3",
)
GATED_SCENARIOS = [GATED, GATED_HOLD, GATED_CANARY]

SCENARIOS = [
    Scenario(
        "current-with-precondition-and-restart",
        _request(
            version_stage=ACS_CURRENT,
            move_to_version="v2",
            precondition_current_version="v1",
            restart=(("Deployment", "api"),),
        ),
        {},
        "v3",
    ),
    Scenario("current-no-precondition", _request(version_stage=ACS_CURRENT, move_to_version="v2"), {}, "v3"),
    Scenario(
        "current-already-in-place-with-restart",
        _request(version_stage=ACS_CURRENT, move_to_version="v1", restart=(("Deployment", "api"),)),
        {},
        "v3",
    ),
    Scenario(
        "custom-attach-verify-off",
        _request(version_stage="Canary", move_to_version="v2", verify=False, refresh_external_secrets=("db",)),
        {},
        "v3",
    ),
    Scenario(
        "custom-remove",
        _request(version_stage="Canary", remove_from_version="v2"),
        {"v2": "Canary"},
        "v3",
    ),
]


def edited_request(scenario: Scenario) -> PromotionRequest:
    """What an edit (or the re-created object) asks instead: the same stage on v3."""
    return _request(version_stage=scenario.request.version_stage, move_to_version="v3")


def rival_request(scenario: Scenario | None) -> PromotionRequest:
    assert scenario is not None
    return PromotionRequest(
        secret_name=ARN, credentials_secret="k", version_stage=scenario.request.version_stage, move_to_version="v3"
    )


@dataclass
class AppliedMove:
    who: str  # the promotion: "P" (any process, any generation of it), "Q"
    stage: str
    move_to: str | None
    remove_from: str | None
    holder_before: str | None
    point: int
    request_id: str
    holder_after: str | None = None
    uid: str = ""
    generation: int = 0
    late: bool = False  # landed after its client gave up on it

    @property
    def effective(self) -> bool:
        return self.holder_before != self.holder_after


@dataclass
class ApiObject:
    """The API server's copy of one promotion: identity, spec, status, and every version it held."""

    name: str
    uid: str
    request: PromotionRequest
    rv: int
    generation: int = 1
    status: dict[str, Any] = field(default_factory=dict)
    # (resourceVersion, status, generation, writer, spec): writer is the uid of the attempt that wrote
    # it, or "api" (created, edited), "hand" (another writer)
    versions: list[tuple[int, dict[str, Any], int, str, PromotionRequest]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.versions.append((self.rv, dict(self.status), self.generation, "api", self.request))

    def bump(self, rv: int, writer: str) -> None:
        self.rv = rv
        self.versions.append((rv, dict(self.status), self.generation, writer, self.request))


@dataclass
class World:
    """KMS, the API server's objects, and what happened, for one schedule."""

    mode: Mapping[str, object]
    faults: dict[int, str]
    kms: Store = field(init=False)
    points: list[tuple[int, str, str]] = field(default_factory=list)  # (index, kind, who)
    applied: list[AppliedMove] = field(default_factory=list)
    foreign_points: list[int] = field(default_factory=list)
    after_success_runs: Counter[tuple[str, int]] = field(default_factory=Counter)  # (uid, generation)
    rollback_restarts: Counter[tuple[str, int]] = field(default_factory=Counter)  # (uid, generation)
    gate_failed: bool = False  # the consumers fail on the new version from the "gate-fail" point on
    gate_inconclusive: bool = False  # an analysis cannot decide from the "gate-inconclusive" point on
    canary_failed_at: int | None = None  # the canary promotion failed at this point (a "canary-fail" fault)
    canary_looks: int = 0
    gate_looks: int = 0
    returned_ids: dict[str, list[tuple[int, str]]] = field(default_factory=dict)  # who -> (point, RequestId)
    crashes: dict[str, list[int]] = field(default_factory=dict)
    late: list[tuple[int, tuple[str, str, str | None, str | None, str]]] = field(default_factory=list)
    rival_started: list[int] = field(default_factory=list)
    writes: list[int] = field(default_factory=list)  # P's points whose status write landed
    unjournaled: list[str] = field(default_factory=list)  # irreversible steps taken before their journal write
    violations: list[str] = field(default_factory=list)  # withdrawn moves sent, blind re-sends, stale acts
    attempt_start: int = 0  # P's point index where its current attempt began
    locks: protocol.SecretLocks = field(init=False)
    clock: int = 0
    skipped: float = 0.0  # time passed without points (the landing window, at the end)
    rid: int = 0
    rv: int = 1
    scenario: Scenario | None = None
    objects: dict[str, ApiObject] = field(default_factory=dict)  # by name: what the API server holds now
    gone: list[ApiObject] = field(default_factory=list)  # deleted objects (for stale copies of them)
    edge: tuple[str, int] | None = None
    fenced: bool = False  # another replica took over: this process's KMS calls are fenced off
    before_edge: tuple[str, int, dict[str, Any]] | None = None  # P as it was just before the edge

    def __post_init__(self) -> None:
        self.kms = Store(account=ACCOUNT)
        self.kms.configure(**self.mode)
        self.locks = self.new_locks()

    # --- time, ids -------------------------------------------------------------------------------

    def now(self) -> str:
        self.clock += 1
        return (EPOCH + timedelta(seconds=self.clock)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def wall(self) -> float:
        return (EPOCH + timedelta(seconds=self.clock)).timestamp() + self.skipped

    def new_locks(self) -> protocol.SecretLocks:
        return protocol.SecretLocks(clock=self.wall)

    def request_id(self) -> str:
        self.rid += 1
        return f"RID-{self.rid:04d}"

    def next_rv(self) -> int:
        self.rv += 1
        return self.rv

    def placement(self) -> dict[str, str]:
        _, versions = self.kms.list_versions(SECRET, True)
        return {stage: v.version_id for v in versions for stage in v.stages}

    # --- the API server --------------------------------------------------------------------------

    def create(self, name: str, uid: str, request: PromotionRequest) -> ApiObject:
        obj = ApiObject(name, uid, request, self.next_rv())
        self.objects[name] = obj
        return obj

    def key_of(self, obj: ApiObject) -> protocol.SecretKey:
        return Q_KEY if obj.request.secret_name == ARN else P_KEY

    def started_process(self) -> protocol.SecretLocks:
        """The memory of a new operator process: at start-up it reserves the secrets of promotions
        whose journal shows a move that may still land (reconcile.reserve_unlanded_moves)."""
        locks = self.new_locks()
        for obj in self.objects.values():
            protocol.reserve_unlanded(locks, self.key_of(obj), obj.uid, f"{NAMESPACE}/{obj.name}", obj.status)
        return locks

    def restart(self) -> None:
        self.locks = self.started_process()

    # --- await points and faults -----------------------------------------------------------------

    async def point(self, kind: str, who: str) -> str | None:
        """An await point of ``who``; returns the fault to inject (only P's points are faulted)."""
        due = [args for when, args in self.late if when <= len(self.points)]
        self.late = [(when, args) for when, args in self.late if when > len(self.points)]
        for args in due:  # a request that was still on its way lands now
            self._apply(*args)
        if who != "P":
            return None
        index = len([p for p in self.points if p[2] == "P"])
        self.points.append((index, kind, who))
        fault = self.faults.get(index)
        if fault is None or fault not in FAULTS_BY_KIND[kind]:
            return None
        if fault in EDGE_FAULTS or fault in GATED_ONLY_FAULTS:
            if self.edge is None:
                self.edge = (fault, index)
                await self.change(fault, index)
            return None
        if fault == "foreign":
            self.foreign_move(index)
        elif fault == "rival":
            await self.run_rival(index, between=kind == "attempt.end")
        elif fault == "crash":
            self.crashes.setdefault(who, []).append(index)
            raise Crash(f"crash at point {index} ({kind})")
        return fault

    async def change(self, fault: str, index: int) -> None:
        assert self.scenario is not None
        obj = self.objects.get("P")
        if obj is None:
            return
        self.before_edge = (obj.uid, obj.generation, dict(obj.status))
        if fault == "edit":
            obj.generation += 1
            obj.request = edited_request(self.scenario)
            obj.bump(self.next_rv(), "api")
        elif fault == "retry":
            obj.generation += 1
            obj.bump(self.next_rv(), "api")
        elif fault in ("recreate", "delete"):
            del self.objects["P"]
            self.gone.append(obj)
            if fault == "recreate":
                self.create("P", "uid-P2", edited_request(self.scenario))
        elif fault == "hand-edit":
            # Another writer puts a move into this generation's journal that the spec never asked for.
            obj.status = merge(
                obj.status,
                {
                    "phase": "InProgress",
                    "observedGeneration": obj.generation,
                    "move": {
                        "versionStage": obj.request.version_stage,
                        "moveToVersion": "v9",
                        "removeFromVersion": None,
                        "answer": "Received",
                        "sentTime": self.now(),
                        "requestId": "HAND-EDITED",
                    },
                },
            )
            obj.bump(self.next_rv(), "hand")
        elif fault == "stale":
            await self.hand_stale_copies(f"point {index}")
        elif fault == "replica":
            await self.replica_takes_over()

    def journal_check(self, step: str, uid: str, generation: int, actor: str) -> None:
        """Before each irreversible step, the API server must already hold what a later attempt needs,
        on the object and generation the step is for; a move the spec no longer asks for is never sent."""
        assert self.scenario is not None
        seen: tuple[str, int, dict[str, Any]] | None = None
        if (obj := self.objects.get("P")) is not None:
            seen = (obj.uid, obj.generation, obj.status)
        if (
            actor == "P"
            and step == "afterSuccess"
            and self.edge is not None
            and self.edge[0] in ("edit", "recreate", "delete", "hand-edit")
            and self.edge[1] == len(self.points) - 1
        ):
            # The change came between the journal write and the step it announces (one round trip;
            # docs/operator.md): what the journal announced goes ahead, judged by the journal as written.
            seen = self.before_edge
        if seen is None or seen[0] != uid:
            self.violations.append(f"{step} sent for object {uid}, which was deleted or replaced")
            return
        if step == self.scenario.request.version_stage and seen[1] != generation:
            self.violations.append(f"{step} move of generation {generation} sent after the edit to {seen[1]}")
            return
        journal = Journal.of(seen[2], generation)
        rollback = journal.rollback.move if journal.rollback else None
        if step == self.scenario.request.version_stage:
            ok = journal.move is not None and journal.move.answer.value == "Pending"
            ok = ok or (rollback is not None and rollback.answer is Answer.PENDING)  # the move back
        else:  # the ACSPrevious fix-up, afterSuccess: the move's RequestId, if one arrived, is journaled
            since = self.attempt_start if actor == "P" else 0
            returned = {rid for point, rid in self.returned_ids.get(actor, []) if point >= since}
            ids = {journal.move.request_id if journal.move else None, rollback.request_id if rollback else None}
            # a generation that gates what an earlier one moved has no move of its own: its rollback's
            # move is the journaled one (the ACSPrevious fix-up after it)
            moved = journal.move is not None or rollback is not None
            ok = moved and (not returned or bool(returned & ids))
            if step == "afterSuccess":
                # a re-run gate restarts with no move of its own generation: its gate is the journal
                regate = journal.move is None and journal.gate is not None and not returned
                ok = (ok or regate) and journal.after_success_started
        if not ok:
            self.unjournaled.append(f"{step} at point {len(self.points) - 1}: journal {journal}")

    def foreign_move(self, index: int) -> None:
        assert self.scenario is not None
        stage = self.scenario.request.version_stage
        holder = self.placement().get(stage)
        target = self.scenario.foreign_target
        if holder == target:
            return
        self.kms.update_secret_version_stage(SECRET, stage, target, holder, self.now())
        if stage == ACS_CURRENT and holder and not self.kms.auto_previous:
            previous = self.placement().get(ACS_PREVIOUS)
            self.kms.update_secret_version_stage(SECRET, ACS_PREVIOUS, holder, previous, self.now())
        self.foreign_points.append(index)

    async def run_rival(self, index: int, *, between: bool) -> None:
        """Promotion Q of the same secret (another spelling of it), handled by this operator.

        Inside P's attempt Q must wait. Between two attempts of P it may run, but not while a move
        of P that got no answer may still land (it would undo Q's move); if it runs, it is a
        concurrent change as far as P is concerned.
        """
        assert self.scenario is not None
        if "Q" not in self.objects:
            self.create("Q", "uid-Q", rival_request(self.scenario))
        before = len(self.applied)
        in_flight = [args for _, args in self.late if args[0] == "P"]
        result = await self.attempt("Q")
        assert result is not None
        if not between or in_flight or result.outcome.reason == "WaitingForSecret":
            if any(m.who == "Q" for m in self.applied[before:]):
                self.violations.append(f"rival Q moved the secret while P held it (point {index})")
            if result.outcome.reason != "WaitingForSecret":
                self.violations.append(f"rival Q did not wait for P (point {index}): {result.outcome}")
            self.rival_started.append(index)
            return
        for _ in range(MAX_ATTEMPTS):  # Q runs now, to the end: for P, a concurrent change
            if self.objects["Q"].status.get("phase") in FINAL:
                break
            await self.attempt("Q")
        if any(m.who == "Q" and m.effective for m in self.applied[before:]):
            self.foreign_points.append(index)
        self.rival_started.append(index)

    async def hand_stale_copies(self, when: str) -> None:
        """kopf hands an attempt (here: of another process) an older copy of an object: every version
        whose journal is not what the API server now holds for its generation. None may act."""
        for obj in [*self.gone, *self.objects.values()]:
            if obj.name != "P":
                continue
            current = self.objects.get("P")
            tried: list[tuple[int, Journal, PromotionRequest]] = []  # what an attempt acts on: one copy of each
            for rv, status, generation, _, spec in obj.versions:
                if status.get("phase") in FINAL and status.get("observedGeneration") == generation:
                    continue  # kopf's filter: a final generation is never offered to the handler
                journal = Journal.of(status, generation)
                if (
                    current is not None
                    and current.uid == obj.uid
                    and journal == Journal.of(current.status, generation)
                    and (generation == current.generation or journal.move is not None)
                ):
                    continue  # the journal the API server holds: a fresh attempt (or a completion), not a stale one
                if (generation, journal, spec) in tried:
                    continue
                tried.append((generation, journal, spec))
                applied_before, state_before, writes_before = len(self.applied), self.placement(), self.rv
                runs_before = Counter(self.after_success_runs)
                view = StatusView(self, "P", rv, dict(status), obj.uid, generation, "stale")
                with contextlib.suppress(protocol.AttemptAborted, Crash):
                    await self.run_attempt(view, spec, "stale", self.started_process(), number=1)
                if len(self.applied) != applied_before or self.placement() != state_before:
                    self.violations.append(f"a stale copy (rv {rv}, generation {generation}) moved KMS at {when}")
                if self.rv != writes_before and any(v[3] == obj.uid for v in self._versions_since(writes_before)):
                    self.violations.append(f"a stale copy (rv {rv}, generation {generation}) wrote status at {when}")
                if self.after_success_runs != runs_before:
                    self.violations.append(f"a stale copy (rv {rv}) ran afterSuccess at {when}")

    def _versions_since(self, rv: int) -> list[tuple[int, dict[str, Any], int, str, PromotionRequest]]:
        return [v for o in [*self.gone, *self.objects.values()] for v in o.versions if v[0] > rv]

    async def replica_takes_over(self) -> None:
        """Another replica becomes leader and carries P out with its own memory; this one's KMS calls
        are fenced from now on (the Lease), its status writes are not."""
        self.fenced = True
        # For what it can still write, the old leader is as good as dead from here on.
        self.crashes.setdefault("P", []).append(len(self.points) - 1)
        locks = self.started_process()
        for _ in range(MAX_ATTEMPTS):
            obj = self.objects.get("P")
            if obj is None or (obj.status.get("phase") in FINAL and obj.status.get("observedGeneration") == 1):
                break
            view = StatusView(self, "P", obj.rv, dict(obj.status), obj.uid, obj.generation, "R")
            with contextlib.suppress(protocol.AttemptAborted):
                await self.run_attempt(view, obj.request, "R", locks, number=int(obj.status.get("attempts") or 0) + 1)

    def _apply(self, who: str, stage: str, move_to: str | None, remove_from: str | None, rid: str) -> None:
        holder = self.placement().get(stage)
        try:
            self.kms.update_secret_version_stage(SECRET, stage, move_to, remove_from, self.now())
        except KmsFault:
            return
        after = self.placement().get(stage)
        self.applied.append(
            AppliedMove(who, stage, move_to, remove_from, holder, len(self.points) - 1, rid, after, late=True)
        )

    def pass_time(self, seconds: float) -> None:
        """Time passes with nothing of ours running: every request still on its way lands."""
        for _, args in self.late:
            self._apply(*args)
        self.late.clear()
        self.skipped += seconds

    # --- attempts --------------------------------------------------------------------------------

    async def attempt(self, name: str) -> Any:
        """One attempt of the named promotion by this operator process, from the API server's copy."""
        obj = self.objects[name]
        if name == "P":
            self.attempt_start = len(self.points)
        view = StatusView(self, name, obj.rv, dict(obj.status), obj.uid, obj.generation, name)
        number = (
            int(obj.status.get("attempts") or 0) if obj.status.get("observedGeneration") == obj.generation else 0
        ) + 1
        try:
            result = await self.run_attempt(view, obj.request, name, self.locks, number=number)
        except protocol.AttemptAborted:
            if view.final_landed:  # then the handler would post no Event for what the status now says
                self.violations.append(f"{name}'s final status landed, but its attempt was reported aborted")
            return None
        except Crash:
            self.restart()
            return None
        holder = self.locks.holder(self.key_of(obj))
        if name == "P" and result.outcome.reason == "WaitingForSecret" and holder and holder.until:
            self.pass_time(holder.until - self.wall() + 1)  # kopf looks again until the reservation ends
        return result

    async def run_attempt(
        self, view: StatusView, request: PromotionRequest, actor: str, locks: protocol.SecretLocks, *, number: int
    ) -> Any:
        promotion = "Q" if view.name == "Q" else "P"
        attempt = protocol.Attempt(
            request=request,
            kms=ModelKms(self, actor, promotion, view.uid, view.generation),
            store=view,
            generation=view.generation,
            number=number,
            now=self.now,
            after_success=AfterSuccess(self, actor, view.uid, view.generation, request.move_to_version).run,
            gate_checks=GateModel(self, actor).run,
            canary=CanaryModel(self, actor).run,
            locks=locks,
            key=Q_KEY if promotion == "Q" else P_KEY,
            who=f"{NAMESPACE}/{view.name}",
        )
        return await attempt.run()


class ModelKms(KmsClient):
    """The real KmsClient (retry loop, answer classification, parsing) with the HTTP exchange
    replaced by the model: each attempt is an await point, faults become the answers KMS gives."""

    def __init__(self, world: World, actor: str, promotion: str, uid: str, generation: int) -> None:
        super().__init__(
            endpoint="https://kms.cn-hangzhou.aliyuncs.com",
            credentials=_StaticProvider(Credentials("model-key", "model-secret")),
            http=_NO_HTTP,
            retry=RetryPolicy(max_attempts=3, base_delay=0.0, max_delay=0.0),
            sleep=_no_sleep,
        )
        self.world, self.actor, self.promotion = world, actor, promotion
        self.uid, self.generation = uid, generation
        self.sends: list[bool] = []  # per logical call: whether each HTTP attempt may have been applied
        self.throttled = False

    async def call(
        self,
        action: str,
        params: Mapping[str, str],
        *,
        before_send: Callable[[], Awaitable[None]] | None = None,
    ) -> dict[str, Any]:
        self.sends, self.throttled = [], False
        return await super().call(action, params, before_send=before_send)

    async def _fault(self, kind: str) -> str | None:
        fault = await self.world.point(kind, self.actor)
        if fault == "throttle":
            self.throttled = True  # a storm that outlasts the client's retries
        if self.throttled:
            return "throttle"
        return "throttle" if fault == "throttle-once" else fault

    async def _attempt(
        self, action: str, params: Mapping[str, str], before_send: Callable[[], Awaitable[None]] | None = None
    ) -> dict[str, Any]:
        if action == "ListSecretVersionIds":
            return await self._list(params)
        assert action == "UpdateSecretVersionStage"
        return await self._update(params, before_send)

    @property
    def fenced(self) -> bool:
        return self.actor == "P" and self.world.fenced

    def _refused(self, code: str, status: int, rid: str) -> KmsApiError:
        return KmsApiError(code=code, message=code, http_status=status, request_id=rid, action="model")

    async def _list(self, params: Mapping[str, str]) -> dict[str, Any]:
        world = self.world
        fault = await self._fault("kms.read")
        if self.fenced:
            raise KmsError(code="NotLeader", message="fenced", retryable=True, maybe_applied=False)
        rid = world.request_id()
        if fault == "throttle":
            raise self._refused("Throttling", 400, rid)
        if fault == "credentials":
            raise CredentialsError("cannot get a token of ServiceAccount ns/promoter: HTTP 500")
        try:
            name = world.kms.resolve(params["SecretName"]).name
        except KmsFault as exc:
            raise self._refused(exc.code, exc.status, rid) from None
        _, versions = world.kms.list_versions(name, params.get("IncludeDeprecated") == "true")
        items = [
            {"VersionId": v.version_id, "CreateTime": v.create_time, "VersionStages": {"VersionStage": list(v.stages)}}
            for v in versions
        ]
        return {
            "SecretName": name,
            "TotalCount": len(items),
            "PageNumber": 1,
            "VersionIds": {"VersionId": items},
            "RequestId": rid,
        }

    async def _update(
        self, params: Mapping[str, str], before_send: Callable[[], Awaitable[None]] | None
    ) -> dict[str, Any]:
        world = self.world
        fault = await self._fault("kms.move")
        here = len(world.points) - 1
        if fault == "credentials":  # the provider runs before the intent write and the request
            raise CredentialsError("cannot get a token of ServiceAccount ns/promoter: HTTP 500")
        if before_send is not None:
            await before_send()
        if self.fenced:  # the Lease moved on: the fence stops the request after the journal write
            raise KmsError(code="NotLeader", message="fenced", retryable=True, maybe_applied=False)
        stage = params["VersionStage"]
        move_to, remove_from = params.get("MoveToVersion"), params.get("RemoveFromVersion")
        rid = world.request_id()
        if any(self.sends):
            world.violations.append(
                f"UpdateSecretVersionStage re-sent blindly at point {here} after an answer that may hide a move"
            )
        if fault == "throttle":
            self.sends.append(False)
            raise self._refused("Throttling", 400, rid)
        if fault == "timeout-before":
            self.sends.append(False)
            raise KmsTransportError(code="SDK.ServerUnreachable", message="connect timeout", sent=False)
        if fault == "unavailable-503":
            self.sends.append(False)
            raise self._refused("ServiceUnavailable", 503, rid)
        if fault in ("late", "later"):
            self.sends.append(True)
            lands = len(world.points) + (0 if fault == "late" else 4)
            world.late.append((lands, (self.promotion, stage, move_to, remove_from, rid)))
            raise KmsTransportError(code="SDK.ReadTimeout", message="timeout")
        holder = world.placement().get(stage)
        if self.promotion == "P":
            world.journal_check(stage, self.uid, self.generation, self.actor)
        try:
            world.kms.update_secret_version_stage(SECRET, stage, move_to, remove_from, "t")
        except KmsFault as refused:
            self.sends.append(False)
            raise self._refused(refused.code, refused.status, rid) from None
        self.sends.append(True)
        after = world.placement().get(stage)
        world.applied.append(
            AppliedMove(
                self.promotion, stage, move_to, remove_from, holder, here, rid, after, self.uid, self.generation
            )
        )
        if fault == "crash-after":
            world.crashes.setdefault(self.actor, []).append(len(world.points) - 1)
            raise Crash("crash after the move was applied")
        if fault == "lost-after":
            raise KmsTransportError(code="SDK.ConnectionLost", message="reset")
        if fault == "internal-400":
            raise self._refused("InternalFailure", 400, rid)
        if fault == "internal-200":
            raise self._refused("InternalFailure", 200, rid)
        assert world.scenario is not None
        if stage == world.scenario.request.version_stage:
            # the answer arrives after the intent write (which is inside this call): count from now
            world.returned_ids.setdefault(self.actor, []).append((len(world.points) - 1, rid))
        return {"SecretName": params["SecretName"], "RequestId": rid}


async def _no_sleep(_: float) -> None:
    return None


class AfterSuccess:
    def __init__(self, world: World, actor: str, uid: str, generation: int, forward: str | None) -> None:
        self.world, self.actor, self.uid, self.generation = world, actor, uid, generation
        self.forward = forward  # the spec's version: a restart stamped with another one follows a rollback

    async def run(self, version: str | None) -> list[dict[str, str]]:
        fault = await self.world.point("after-success", self.actor)
        if version is not None and version != self.forward:
            self.world.rollback_restarts[(self.uid, self.generation)] += 1
            if fault == "crash-after":
                raise Crash("crash right after the restarts that follow a rollback")
            return [{"kind": "Deployment", "name": "api", "result": "Restarted", "message": "ok"}]
        if self.uid != "uid-Q":
            self.world.journal_check("afterSuccess", self.uid, self.generation, self.actor)
        self.world.after_success_runs[(self.uid, self.generation)] += 1
        if fault == "crash-after":
            self.world.crashes.setdefault(self.actor, []).append(len(self.world.points) - 1)
            raise Crash("crash right after afterSuccess")
        return [{"kind": "Deployment", "name": "x", "result": "Restarted", "message": "ok"}]


class GateModel:
    """The consumers as the gate sees them: not ready at the first look, healthy after, unless a
    "gate-fail" fault made them crash-loop on the new version."""

    def __init__(self, world: World, actor: str) -> None:
        self.world, self.actor = world, actor

    async def run(self, gate: Gate, version: str) -> list[Check]:
        fault = await self.world.point("gate", self.actor)
        if fault == "gate-fail":
            self.world.gate_failed = True
        if fault == "gate-inconclusive":
            self.world.gate_inconclusive = True
        self.world.gate_looks += 1
        if self.world.gate_failed:
            return [Check("Deployment", "api", Verdict.FAILED, f"Deployment api: crash loop on {version}", "0/1")]
        if self.world.gate_inconclusive:
            return [Check("AnalysisRun", "p-analysis-g1", Verdict.INCONCLUSIVE, "AnalysisRun: Inconclusive")]
        if self.world.gate_looks == 1:
            return [Check("Deployment", "api", Verdict.PENDING, "Deployment api: rolling out", "0/1")]
        return [Check("Deployment", "api", Verdict.PASSED, f"Deployment api: 1/1 pods ready on {version}", "1/1")]


class CanaryModel:
    """The canary promotion as the parent sees it: still running at the first look, Succeeded after,
    unless a "canary-fail" fault made it fail (its own gate failed and it moved its label back; its
    moves are its own protocol's, explored as a promotion of its own)."""

    def __init__(self, world: World, actor: str) -> None:
        self.world, self.actor = world, actor

    async def run(self) -> Check:
        fault = await self.world.point("canary", self.actor)
        if fault == "canary-fail" and self.world.canary_failed_at is None:
            self.world.canary_failed_at = len(self.world.points) - 1
        self.world.canary_looks += 1
        name = "P-canary-g1"
        if self.world.canary_failed_at is not None:
            return Check("SecretStagePromotion", name, Verdict.FAILED, f"canary {name} failed: RolledBack: crash loop")
        if self.world.canary_looks == 1:
            return Check("SecretStagePromotion", name, Verdict.PENDING, f"canary {name}: Verifying")
        return Check("SecretStagePromotion", name, Verdict.PASSED, f"canary {name}: Verified")


def merge(target: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7386 JSON merge patch, as the API server applies it."""
    out = dict(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


class StatusView:
    """What one attempt holds: a copy of the object at some resourceVersion (``protocol.StatusStore``)."""

    def __init__(
        self, world: World, name: str, rv: int, status: dict[str, Any], uid: str, generation: int, who: str
    ) -> None:
        self.world, self.name, self.rv, self._status, self.who = world, name, rv, status, who
        self._uid, self._generation = uid, generation
        self.final_landed = False  # a final status written by this attempt landed

    @property
    def status(self) -> Mapping[str, Any]:
        return self._status

    @property
    def uid(self) -> str:
        return self._uid

    @property
    def generation(self) -> int | None:
        return self._generation

    async def write(self, status: Mapping[str, Any]) -> None:
        world = self.world
        fault = await world.point("status.write", self.who)
        obj = world.objects.get(self.name)
        if obj is None:
            raise ObjectGone()
        if fault == "conflict":
            obj.bump(world.next_rv(), "api")  # someone touched labels or annotations: same status
        if self.rv != obj.rv:
            raise StaleStatus()  # a resourceVersion is global: a re-created object never matches
        obj.status = merge(obj.status, status)
        obj.bump(world.next_rv(), self._uid)
        if self.who == "P":
            world.writes.append(len(world.points) - 1)
        if status.get("phase") in FINAL:
            self.final_landed = True
        if fault == "crash-after":
            world.crashes.setdefault(self.who, []).append(len(world.points) - 1)
            raise Crash("crash after a status write")
        if fault == "answer-lost":
            raise StaleStatus()  # the retry of a write that landed: the resourceVersion moved on
        self.rv, self._status = obj.rv, dict(obj.status)

    async def refresh(self) -> Mapping[str, Any]:
        await self.world.point("status.refresh", self.who)
        obj = self.world.objects.get(self.name)
        if obj is None:
            raise ObjectGone()
        self.rv, self._status, self._uid, self._generation = obj.rv, dict(obj.status), obj.uid, obj.generation
        return self._status


FINAL = ("Succeeded", "Failed")
MAX_ATTEMPTS = 8


def _final(obj: ApiObject | None) -> bool:
    return obj is None or (obj.status.get("phase") in FINAL and obj.status.get("observedGeneration") == obj.generation)


async def run_schedule(scenario: Scenario, mode: Mapping[str, object], faults: dict[int, str]) -> World:
    world = World(mode, faults)
    world.scenario = scenario
    world.kms.create_secret(SECRET, "v1", "d1", "text", "", "2026-01-01T00:00:00Z")
    for i, version in enumerate(("v2", "v3"), 2):
        stages = [s for s in scenario.initial.get(version, "").split(",") if s]
        world.kms.put_secret_value(SECRET, version, f"d{i}", "text", stages, f"2026-01-01T00:00:0{i}Z")
    world.create("P", "uid-P", scenario.request)
    for _ in range(MAX_ATTEMPTS):
        if world.objects.get("P") is None:
            break
        await world.attempt("P")
        with contextlib.suppress(Crash):
            await world.point("attempt.end", "P")
        if _final(world.objects.get("P")):
            break
    for _, args in world.late:  # a request still on its way when the promotion ended lands now
        world._apply(*args)
    world.late.clear()
    world.p_final_placement = world.placement()  # type: ignore[attr-defined]
    world.p_applied = list(world.applied)  # type: ignore[attr-defined]
    # kopf may hand an attempt any older copy of the object (a lagging watch event): none may act.
    await world.hand_stale_copies("the end")
    # Every request of P has landed or can no longer land: the time of its signature has passed.
    world.skipped += protocol.LANDING_WINDOW_SECONDS + 60
    if world.rival_started and "Q" in world.objects:
        for _ in range(MAX_ATTEMPTS):
            if world.objects["Q"].status.get("phase") in FINAL:
                break
            await world.attempt("Q")
    return world


def check(world: World, scenario: Scenario) -> None:
    """The protocol's promises, for one explored schedule."""
    assert not world.violations, f"{world.violations}; placement {world.placement()}"
    assert not world.unjournaled, f"irreversible step before its journal write: {world.unjournaled}"
    _check_transition_times(world)
    for (uid, generation), runs in world.after_success_runs.items():
        assert runs <= 1, f"afterSuccess ran {runs} times for {uid} generation {generation}"
    for (uid, generation), runs in world.rollback_restarts.items():
        assert runs <= 1, f"the restarts after a rollback ran {runs} times for {uid} generation {generation}"
    if scenario.request.gate is not None:
        _check_gated(world, scenario)
    elif world.edge is not None and world.edge[0] in ("edit", "recreate", "delete", "hand-edit"):
        _check_edge(world, scenario, *world.edge)
    else:
        _check_one_generation(world, scenario)
    # A request of P that got no answer never lands over a rival's move (the reservation).
    q_moved = False
    for move in world.applied:
        q_moved = q_moved or (move.who == "Q" and move.effective)
        assert not (move.who == "P" and move.late and move.effective and q_moved), (
            f"a late request of P undid rival Q's move: {world.applied}"
        )
    # A rival promotion of the same secret waited (or ran between P's attempts), then ran on its own.
    if "Q" in world.objects and world.rival_started:
        q = world.objects["Q"].status
        assert q.get("phase") == "Succeeded", f"rival: {q.get('phase')} {_reason(q)}; kms {world.placement()}"
        if world.edge is None or world.edge[0] not in ("edit", "recreate"):
            movers = [m.who for m in world.applied if m.effective and m.stage == scenario.request.version_stage]
            if movers and movers[-1] == "Q":
                assert world.placement().get(scenario.request.version_stage) == "v3", (
                    f"rival Q's move was undone: kms {world.placement()}, moves {world.applied}"
                )


def _check_transition_times(world: World) -> None:
    """lastTransitionTime never decreases, over every version the API server held of one object."""
    for obj in [*world.gone, *world.objects.values()]:
        seen: dict[str, str] = {}
        for _, version, _, _, _ in obj.versions:
            for condition in version.get("conditions") or []:
                earlier = seen.get(condition["type"], "")
                assert condition["lastTransitionTime"] >= earlier, f"lastTransitionTime went back on {obj.uid}"
                seen[condition["type"]] = condition["lastTransitionTime"]


def _check_edge(world: World, scenario: Scenario, kind: str, at: int) -> None:
    """After an edit, a delete + re-create, a delete, or another writer's change of the journal."""
    stage = scenario.request.version_stage
    final_placement: dict[str, str] = world.p_final_placement  # type: ignore[attr-defined]
    obj = world.objects.get("P")
    where = f"{kind} at point {at}: kms={final_placement} moves={world.applied} status={obj.status if obj else None}"
    if kind == "delete":
        assert obj is None, where
        return
    assert obj is not None, where
    assert _final(obj), f"not final: {where}"
    status = obj.status
    if kind == "hand-edit":
        # A journal the operator did not write is never acted on: the promotion says so.
        assert (status.get("phase"), _reason(status)) == ("Failed", "JournalMismatch"), where
        later = [m for m in world.applied if m.who == "P" and m.stage == stage and m.point > at]
        assert not later, f"a move was sent after another writer changed the journal: {where}"
        return
    # edit / recreate: the new spec (the stage on v3) is carried out for the object as it is now.
    assert (status.get("phase"), status.get("observedGeneration")) == ("Succeeded", obj.generation), where
    assert final_placement.get(stage) == "v3", f"the new spec is not what KMS shows: {where}"
    if kind == "recreate":
        foreign_writers = {w for _, _, _, w, _ in obj.versions} - {"api", obj.uid}
        assert not foreign_writers, f"the re-created object was written by {foreign_writers}: {where}"
    if stage == ACS_CURRENT:
        moves = [m for m in world.applied if m.stage == stage and m.effective]
        last = moves[-1] if moves else None
        if last is not None and not world.foreign_points and last.generation == obj.generation:
            assert final_placement.get(ACS_PREVIOUS) == last.holder_before, f"ACSPrevious misplaced: {where}"


def _check_one_generation(world: World, scenario: Scenario) -> None:
    request = scenario.request
    obj = world.objects["P"]
    status = obj.status
    phase, reason = status.get("phase"), _reason(status)
    final_placement: dict[str, str] = world.p_final_placement  # type: ignore[attr-defined]
    mine = [m for m in world.p_applied if m.who == "P"]  # type: ignore[attr-defined]
    stage_moves = [m for m in mine if m.stage == request.version_stage]
    foreign = bool(world.foreign_points)
    where = f"phase={phase} reason={reason} kms={final_placement} moves={mine} status.move={status.get('move')}"

    # 1. Final, and the end state is what was asked, or Failed with a reason that is true.
    assert phase in FINAL, f"not final after {MAX_ATTEMPTS} attempts: {where}"
    if phase == "Succeeded":
        after = status.get("stagesAfter") or {}
        assert scenario.asked(after) or not request.verify, f"Succeeded, but stagesAfter is not as asked: {where}"
        if not foreign:
            assert scenario.asked(final_placement), f"Succeeded, but KMS is not as asked: {where}"
    else:
        assert foreign, f"Failed without any concurrent change to blame: {where}"
        assert reason in ("PreconditionFailed", "Superseded", "VerificationFailed", "ConcurrentChanges"), where
        if reason == "Superseded":
            assert not scenario.asked(final_placement) or world.foreign_points, where

    # 2. No move of ours violated the precondition or undid a change it had not read.
    for move in stage_moves:
        if not move.effective:
            continue  # changed nothing, undid nothing
        named_true_holder = move.holder_before == move.remove_from or (
            move.remove_from is None and move.holder_before is None
        )
        precondition_ok = (
            request.precondition_current_version is None
            or move.holder_before == request.precondition_current_version
            or move.holder_before == move.move_to  # a no-op: the label was already there
        )
        if not (named_true_holder and precondition_ok):
            # Possible only where KMS does not check RemoveFromVersion, and only when another change
            # landed inside the window between our last read and our move (docs/operator.md).
            assert lenient(world.mode, move.remove_from), f"stale move applied by a KMS that checks it: {where}"
            assert foreign, f"stale move without a concurrent change: {where}"

    # 3. requestId is the move's RequestId whenever KMS returned it to an attempt that lived to write.
    effective = [m for m in stage_moves if m.effective]
    if len(effective) > 1:
        # A second effective move is the window of a KMS that applies stale moves: a late request of
        # ours landed, another change moved the stage on, and our next move overrode it.
        assert all(lenient(world.mode, m.remove_from) for m in effective), f"two effective moves: {where}"
        assert foreign, f"two effective moves without a concurrent change: {where}"
    request_id = status.get("requestId")
    all_move_ids = {m.request_id for m in stage_moves}
    assert request_id is None or request_id in all_move_ids, f"requestId is not a move's RequestId: {where}"
    crashes = world.crashes.get("P", [])
    for point, rid in world.returned_ids.get("P", []):
        next_crash = min((c for c in crashes if c >= point), default=10**9)
        lived_to_write = any(point < w < next_crash for w in world.writes) or next_crash == 10**9
        if lived_to_write and any(m.request_id == rid for m in effective):
            assert request_id == rid, f"the move's RequestId {rid} was returned but not kept: {where}"
    if phase == "Succeeded" and reason == "Promoted" and request_id not in {m.request_id for m in effective}:
        # Only a KMS that accepts a move already in place answers success for a no-op; then an earlier
        # request that landed late did the move, and the status must say it may have.
        # A KMS that ignores a stale RemoveFromVersion also answers success for a call a concurrent
        # change turned into a no-op: indistinguishable from an applied move (docs/operator.md).
        message = next(c["message"] for c in status["conditions"] if c["type"] == "Succeeded")
        assert request_id in all_move_ids, where
        ignored = world.mode["remove_mismatch"] == "ignore" and foreign
        assert ignored or "may be the one that moved it" in message, (
            f"a no-op's RequestId passed as the move's: {where}"
        )
    if reason == "AlreadyInPlace":
        assert not effective, f"AlreadyInPlace although this generation moved the stage: {where}"
        assert request_id is None, where

    # 4. afterSuccess at most once (checked for every object), and only when this generation moved the stage.
    runs = world.after_success_runs[(obj.uid, 1)]
    if runs:
        assert effective, f"afterSuccess ran although this generation moved nothing: {where}"
    wants = bool(request.restart or request.refresh_external_secrets)
    if wants and phase == "Succeeded" and effective and reason in ("Promoted", "PromotedAnswerLost"):
        entries = status.get("afterSuccess") or []
        assert entries, f"moved, but afterSuccess neither ran nor was reported: {where}"
        if runs == 0:
            assert all(e["result"] == "Interrupted" for e in entries), where

    # 5. ACSPrevious is on the version this promotion displaced.
    if (
        request.version_stage == ACS_CURRENT
        and phase == "Succeeded"
        and effective
        and all(f <= effective[0].point for f in world.foreign_points)
    ):
        move = effective[0]
        in_window = move.point in world.foreign_points and lenient(world.mode, move.remove_from)
        if in_window and world.mode["auto_previous"]:
            assert reason == "PromotedOverConcurrentChange", f"a lost race KMS revealed went unreported: {where}"
        if in_window and not world.mode["auto_previous"]:
            # Nothing shows which version the move really took ACSCurrent from (docs/operator.md).
            assert final_placement.get(ACS_PREVIOUS) in (move.holder_before, move.remove_from), where
        else:
            assert final_placement.get(ACS_PREVIOUS) == move.holder_before, f"ACSPrevious misplaced: {where}"


def _check_gated(world: World, scenario: Scenario) -> None:
    """A gated promotion: at most one rollback per generation, never one over a foreign move, restarts
    at most once per direction (checked above), and the verdict the checks earned."""
    request = scenario.request
    stage = request.version_stage
    final_placement: dict[str, str] = world.p_final_placement  # type: ignore[attr-defined]
    applied: list[AppliedMove] = world.p_applied  # type: ignore[attr-defined]
    obj = world.objects.get("P")
    status = obj.status if obj else {}
    phase, reason = status.get("phase"), _reason(status)
    foreign = bool(world.foreign_points)
    where = (
        f"phase={phase} reason={reason} kms={final_placement} moves={applied} gate={status.get('gate')} "
        f"rollback={status.get('rollback')} edge={world.edge}"
    )
    backs = [m for m in applied if m.who == "P" and m.stage == stage and m.move_to == "v1" and m.effective]
    by_generation = Counter((m.uid, m.generation) for m in backs)
    assert all(n <= 1 for n in by_generation.values()), f"more than one rollback in a generation: {where}"
    for move in backs:
        if move.holder_before != "v2":  # it took the stage from a version another change put there
            assert lenient(world.mode, move.remove_from), (
                f"a rollback over a foreign move, on a KMS that checks: {where}"
            )
            assert foreign, where
    # Moves of generations whose spec has the canary (an edit or a re-create asks for v3 without one).
    canaried = [
        m
        for m in applied
        if m.who == "P"
        and m.stage == stage
        and ((m.generation == 1 and m.uid == "uid-P") or (world.edge is not None and world.edge[0] == "retry"))
    ]
    if world.canary_failed_at is not None:
        # ACSCurrent never moves once the canary failed (whatever retries came), and when no earlier
        # move of it had landed the promotion says CanaryFailed.
        later_moves = [m for m in canaried if m.point > world.canary_failed_at]
        assert not later_moves, f"the stage moved after its canary failed: {where}"
        if not foreign and world.edge is None and not [m for m in applied if m.who == "P" and m.stage == stage]:
            assert (phase, reason) == ("Failed", "CanaryFailed"), f"the canary failed: {where}"
        return
    if request.canary is not None:
        assert not canaried or world.canary_looks >= 2, f"the stage moved before its canary passed: {where}"
    if world.edge is not None and world.edge[0] in ("edit", "recreate", "delete", "hand-edit"):
        return  # what the new spec does, and that nothing of the old one acts after it, is checked above
    assert obj is not None, where
    assert phase in FINAL, f"not final after {MAX_ATTEMPTS} attempts: {where}"
    if foreign:  # another change moved the stage (before, during or after the gate): the safety above is the claim
        return
    if world.gate_inconclusive and not world.gate_failed:
        assert (phase, reason) == ("Failed", "GateFailed"), f"an inconclusive analysis holds: {where}"
        assert final_placement.get(stage) == "v2", where
        assert not backs, f"rolled back on an inconclusive analysis: {where}"
    elif not world.gate_failed:
        assert (phase, reason) == ("Succeeded", "Verified"), f"the checks passed: {where}"
        assert final_placement.get(stage) == "v2", where
        assert not backs, where
    elif request.gate is not None and request.gate.on_failure == "Hold":
        assert (phase, reason) == ("Failed", "GateFailed"), where
        assert final_placement.get(stage) == "v2", where
    else:
        assert (phase, reason) == ("Failed", "RolledBack"), f"the checks failed: {where}"
        assert final_placement.get(stage) == "v1", where
        # one by the generation the status is for (a retry after a rollback moves and rolls back anew)
        current = [m for m in backs if m.generation in (obj.generation, 0)]  # 0: a late landing, unattributed
        assert len(current) == 1, where
        rollback = status.get("rollback") or {}
        rid, earlier = rollback.get("requestId"), (rollback.get("move") or {}).get("earlierUnansweredTime")
        message = next(c["message"] for c in status["conditions"] if c["type"] == "Succeeded")
        if rid is not None and rid != current[0].request_id:
            # an earlier request of the rollback got no answer, landed late, and this one was a no-op
            assert earlier, f"a no-op's RequestId passed off: {where}"
            assert "may be the one that moved it" in message, where


def _reason(status: Mapping[str, Any]) -> str | None:
    return next((c.get("reason") for c in status.get("conditions") or [] if c.get("type") == "Succeeded"), None)
