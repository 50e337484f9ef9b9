"""A fault explorer for the promotion protocol (secretstage.protocol).

The protocol runs against an in-memory KMS (the emulator's own ``Store``, with every switch the
docs leave open) and an in-memory status store with Kubernetes' compare-and-set semantics. Each
call it makes into either, and each afterSuccess run, is an *await point*, numbered in order across
attempts. A schedule injects faults at chosen points; after the faulted attempt, fresh attempts run
(as kopf would retry) until the promotion is final, then every stale copy of the object that ever
existed is handed to one more attempt (as kopf does when an event lags). Then the invariants are
checked (``check``).
"""

from __future__ import annotations

import contextlib
import itertools
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from secretstage import protocol
from secretstage.domain.journal import Journal, StaleStatus
from secretstage.domain.promotion import ACS_CURRENT, ACS_PREVIOUS, PromotionRequest
from secretstage.emulator.state import KmsFault, Store
from secretstage.kms import CredentialsError, KmsApiError, KmsTransportError
from secretstage.kms.models import SecretVersion, StageUpdate, VersionList

SECRET = "app/db"
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)

# Faults by kind of await point. "foreign" = another pipeline moves the stage just before the call
# lands; "rival" = another promotion of the same secret in this operator starts now.
# "credentials": the credentials provider fails before anything is sent (an STS exchange, a token).
KMS_READ_FAULTS = ("crash", "throttle", "credentials", "foreign", "rival")
# "late": the request times out on the client and lands at KMS at the next await point; "later":
# four points on (typically inside the next attempt, after it read the stage still unmoved).
KMS_MOVE_FAULTS = (
    "crash",
    "crash-after",
    "lost-after",
    "timeout-before",
    "late",
    "later",
    "throttle",
    "credentials",
    "foreign",
    "rival",
)
WRITE_FAULTS = ("crash", "crash-after", "conflict")
AFTER_SUCCESS_FAULTS = ("crash", "crash-after")
FAULTS_BY_KIND = {
    "kms.read": KMS_READ_FAULTS,
    "kms.move": KMS_MOVE_FAULTS,
    "status.write": WRITE_FAULTS,
    "status.refresh": ("crash",),
    "after-success": AFTER_SUCCESS_FAULTS,
}
# Every KMS behaviour the docs leave open: auto ACSPrevious x label held elsewhere x stale RemoveFromVersion.
MODES = [
    {"auto_previous": a, "label_held_elsewhere": h, "remove_mismatch": r}
    for a, h, r in itertools.product((True, False), ("move", "reject"), ("reject", "ignore"))
]


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


@dataclass
class AppliedMove:
    who: str
    stage: str
    move_to: str | None
    remove_from: str | None
    holder_before: str | None
    point: int
    request_id: str
    holder_after: str | None = None

    @property
    def effective(self) -> bool:
        return self.holder_before != self.holder_after


@dataclass
class World:
    """KMS, the API server's copy of each promotion, and what happened, for one schedule."""

    mode: Mapping[str, object]
    faults: dict[int, str]
    kms: Store = field(init=False)
    points: list[tuple[int, str, str]] = field(default_factory=list)  # (index, kind, who)
    applied: list[AppliedMove] = field(default_factory=list)
    foreign_points: list[int] = field(default_factory=list)
    after_success_runs: Counter[str] = field(default_factory=Counter)
    returned_ids: dict[str, list[tuple[int, str]]] = field(default_factory=dict)  # who -> (point, RequestId)
    crashes: dict[str, list[int]] = field(default_factory=dict)
    late: list[tuple[int, tuple[str, str, str | None, str | None, str]]] = field(default_factory=list)
    rival_started: list[int] = field(default_factory=list)
    writes: list[int] = field(default_factory=list)  # P's points whose status write landed
    unjournaled: list[str] = field(default_factory=list)  # irreversible steps taken before their journal write
    attempt_start: int = 0  # P's point index where its current attempt began
    locks: protocol.SecretLocks = field(default_factory=protocol.SecretLocks)
    clock: int = 0
    rid: int = 0
    scenario: Scenario | None = None
    objects: dict[str, ApiObject] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.kms = Store()
        self.kms.configure(**self.mode)

    def now(self) -> str:
        self.clock += 1
        return (EPOCH + timedelta(seconds=self.clock)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def request_id(self) -> str:
        self.rid += 1
        return f"RID-{self.rid:04d}"

    def placement(self) -> dict[str, str]:
        _, versions = self.kms.list_versions(SECRET, True)
        return {stage: v.version_id for v in versions for stage in v.stages}

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
        if fault == "foreign":
            self.foreign_move(index)
        elif fault == "rival":
            await self.run_rival(index)
        elif fault == "crash":
            self.crashes.setdefault(who, []).append(index)
            raise Crash(f"crash at point {index} ({kind})")
        return fault

    def journal_check(self, step: str) -> None:
        """Before each irreversible step, the API server must already hold what a later attempt needs."""
        assert self.scenario is not None
        journal = Journal.of(self.objects["P"].status, 1)
        if step == self.scenario.request.version_stage:
            ok = journal.move is not None and journal.move.answer.value == "Pending"
        else:  # the ACSPrevious fix-up, afterSuccess: the move's RequestId, if one arrived, is journaled
            returned = {rid for point, rid in self.returned_ids.get("P", []) if point >= self.attempt_start}
            ok = journal.move is not None and (not returned or journal.move.request_id in returned)
            if step == "afterSuccess":
                ok = ok and journal.after_success_started
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

    async def run_rival(self, index: int) -> None:
        """Promotion Q of the same secret, handled by this operator while P is in flight."""
        self.rival_started.append(index)
        before = len(self.applied)
        result = await self.attempt("Q", rival_request(self.scenario))
        assert result is not None
        assert len(self.applied) == before, "a rival promotion moved the secret while P held it"
        assert result.outcome.reason == "WaitingForSecret", result.outcome

    def _apply(self, who: str, stage: str, move_to: str | None, remove_from: str | None, rid: str) -> None:
        holder = self.placement().get(stage)
        try:
            self.kms.update_secret_version_stage(SECRET, stage, move_to, remove_from, self.now())
        except KmsFault:
            return
        after = self.placement().get(stage)
        self.applied.append(AppliedMove(who, stage, move_to, remove_from, holder, len(self.points) - 1, rid, after))

    async def attempt(self, who: str, request: PromotionRequest) -> Any:
        if who == "P":
            self.attempt_start = len(self.points)
        obj = self.objects[who]
        store = obj.view()
        attempt = protocol.Attempt(
            request=request,
            kms=FakeKms(self, who),
            store=store,
            generation=1,
            number=int(store.status.get("attempts") or 0) + 1,
            now=self.now,
            after_success=AfterSuccess(self, who).run,
            locks=self.locks,
            key=("http://kms", SECRET),
            who=who,
        )
        try:
            return await attempt.run()
        except protocol.AttemptAborted:
            return None


def rival_request(scenario: Scenario | None) -> PromotionRequest:
    assert scenario is not None
    return _request(version_stage=scenario.request.version_stage, move_to_version="v3")


class FakeKms:
    def __init__(self, world: World, who: str) -> None:
        self.world, self.who = world, who

    async def list_secret_version_ids(self, secret_name: str, *, include_deprecated: bool = False) -> VersionList:
        fault = await self.world.point("kms.read", self.who)
        if fault == "throttle":
            raise KmsApiError(code="Throttling", message="QPS", http_status=400, request_id=self.world.request_id())
        if fault == "credentials":
            raise CredentialsError("cannot get a token of ServiceAccount ns/promoter: HTTP 500")
        _, versions = self.world.kms.list_versions(secret_name, include_deprecated)
        return VersionList(
            secret_name,
            tuple(SecretVersion(v.version_id, v.create_time, tuple(v.stages)) for v in versions),
            (self.world.request_id(),),
        )

    async def update_secret_version_stage(
        self,
        secret_name: str,
        version_stage: str,
        *,
        move_to_version: str | None = None,
        remove_from_version: str | None = None,
    ) -> StageUpdate:
        world = self.world
        fault = await world.point("kms.move", self.who)
        rid = world.request_id()
        if fault == "throttle":
            raise KmsApiError(code="Throttling", message="QPS", http_status=400, request_id=rid)
        if fault == "timeout-before":
            raise KmsTransportError(code="SDK.ReadTimeout", message="timeout")
        if fault == "credentials":
            raise CredentialsError("cannot get a token of ServiceAccount ns/promoter: HTTP 500")
        if fault in ("late", "later"):
            lands = len(world.points) + (0 if fault == "late" else 4)
            world.late.append((lands, (self.who, version_stage, move_to_version, remove_from_version, rid)))
            raise KmsTransportError(code="SDK.ReadTimeout", message="timeout")
        holder = world.placement().get(version_stage)
        if self.who == "P":
            world.journal_check(version_stage)
        try:
            world.kms.update_secret_version_stage(secret_name, version_stage, move_to_version, remove_from_version, "t")
        except KmsFault as fault_:
            raise KmsApiError(
                code=fault_.code, message=fault_.message, http_status=fault_.status, request_id=rid
            ) from None
        here = len(world.points) - 1
        after = world.placement().get(version_stage)
        world.applied.append(
            AppliedMove(self.who, version_stage, move_to_version, remove_from_version, holder, here, rid, after)
        )
        if fault == "crash-after":
            world.crashes.setdefault(self.who, []).append(len(world.points) - 1)
            raise Crash("crash after the move was applied")
        if fault == "lost-after":
            raise KmsTransportError(code="SDK.ConnectionLost", message="reset")
        assert world.scenario is not None
        if version_stage == world.scenario.request.version_stage:
            world.returned_ids.setdefault(self.who, []).append((here, rid))
        return StageUpdate(secret_name, rid)


class AfterSuccess:
    def __init__(self, world: World, who: str) -> None:
        self.world, self.who = world, who

    async def run(self) -> list[dict[str, str]]:
        fault = await self.world.point("after-success", self.who)
        self.world.journal_check("afterSuccess")
        self.world.after_success_runs[self.who] += 1
        if fault == "crash-after":
            self.world.crashes.setdefault(self.who, []).append(len(self.world.points) - 1)
            raise Crash("crash right after afterSuccess")
        return [{"kind": "Deployment", "name": "x", "result": "Restarted", "message": "ok"}]


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


@dataclass
class ApiObject:
    """The API server's copy of one promotion: its status and resourceVersion, with every version kept."""

    world: World
    who: str
    rv: int = 1
    status: dict[str, Any] = field(default_factory=dict)
    versions: list[tuple[int, dict[str, Any]]] = field(default_factory=lambda: [(1, {})])

    def view(self, rv: int | None = None, status: Mapping[str, Any] | None = None, who: str = "") -> StatusView:
        return StatusView(
            self, self.rv if rv is None else rv, dict(self.status if status is None else status), who or self.who
        )


class StatusView:
    """What one attempt holds: a copy of the object at some resourceVersion (``protocol.StatusStore``)."""

    def __init__(self, obj: ApiObject, rv: int, status: dict[str, Any], who: str) -> None:
        self.obj, self.rv, self._status, self.who = obj, rv, status, who

    @property
    def status(self) -> Mapping[str, Any]:
        return self._status

    async def write(self, status: Mapping[str, Any]) -> None:
        obj, world = self.obj, self.obj.world
        fault = await world.point("status.write", self.who)
        if fault == "conflict":
            obj.rv += 1  # someone touched labels or annotations: same status, new resourceVersion
            obj.versions.append((obj.rv, dict(obj.status)))
        if self.rv != obj.rv:
            raise StaleStatus()
        obj.rv += 1
        obj.status = merge(obj.status, status)
        obj.versions.append((obj.rv, dict(obj.status)))
        self.rv, self._status = obj.rv, dict(obj.status)
        if self.who == "P":
            world.writes.append(len(world.points) - 1)
        if fault == "crash-after":
            world.crashes.setdefault(self.who, []).append(len(world.points) - 1)
            raise Crash("crash after a status write")

    async def refresh(self) -> Mapping[str, Any]:
        await self.obj.world.point("status.refresh", self.who)
        self.rv, self._status = self.obj.rv, dict(self.obj.status)
        return self._status


FINAL = ("Succeeded", "Failed")
MAX_ATTEMPTS = 8


async def run_schedule(scenario: Scenario, mode: Mapping[str, object], faults: dict[int, str]) -> World:
    world = World(mode, faults)
    world.scenario = scenario
    world.kms.create_secret(SECRET, "v1", "d1", "text", "", "2026-01-01T00:00:00Z")
    for i, version in enumerate(("v2", "v3"), 2):
        stages = [s for s in scenario.initial.get(version, "").split(",") if s]
        world.kms.put_secret_value(SECRET, version, f"d{i}", "text", stages, f"2026-01-01T00:00:0{i}Z")
    world.objects = {"P": ApiObject(world, "P"), "Q": ApiObject(world, "Q")}
    for _ in range(MAX_ATTEMPTS):
        with contextlib.suppress(Crash):
            await world.attempt("P", scenario.request)
        if world.objects["P"].status.get("phase") in FINAL:
            break
    for _, args in world.late:  # a request still on its way when the promotion ended lands now
        world._apply(*args)
    world.late.clear()
    world.p_final_placement = world.placement()  # type: ignore[attr-defined]
    world.p_applied = list(world.applied)  # type: ignore[attr-defined]
    runs_before = Counter(world.after_success_runs)
    # kopf may hand an attempt any older copy of the object (a lagging watch event): none may act.
    obj = world.objects["P"]
    for rv, status in obj.versions[:-1]:
        if status.get("phase") in FINAL:
            continue
        applied_before, state_before = len(world.applied), world.placement()
        attempt = protocol.Attempt(
            request=scenario.request,
            kms=FakeKms(world, "stale"),
            store=obj.view(rv, status, who="stale"),
            generation=1,
            number=int(status.get("attempts") or 0) + 1,
            now=world.now,
            after_success=AfterSuccess(world, "P").run,
            locks=world.locks,
            key=("http://kms", SECRET),
            who="stale",
        )
        try:
            await attempt.run()
            stale_wrote = True
        except protocol.AttemptAborted:
            stale_wrote = False
        assert not stale_wrote, f"faults {faults}: an attempt on the stale copy at rv {rv} wrote status"
        moved = world.applied[applied_before:]
        assert not moved, f"faults {faults}: a stale copy at rv {rv} moved KMS: {moved}"
        assert world.placement() == state_before, f"faults {faults}: a stale copy at rv {rv} changed KMS"
    assert world.after_success_runs == runs_before, f"faults {faults}: a stale copy ran afterSuccess"
    if world.rival_started:
        for _ in range(MAX_ATTEMPTS):
            await world.attempt("Q", rival_request(scenario))
            if world.objects["Q"].status.get("phase") in FINAL:
                break
    return world


def check(world: World, scenario: Scenario) -> None:
    """The protocol's promises, for one explored schedule."""
    request = scenario.request
    status = world.objects["P"].status
    phase, reason = status.get("phase"), _reason(status)
    final_placement: dict[str, str] = world.p_final_placement  # type: ignore[attr-defined]
    mine = [m for m in world.p_applied if m.who == "P"]  # type: ignore[attr-defined]
    stage_moves = [m for m in mine if m.stage == request.version_stage]
    foreign = bool(world.foreign_points)
    where = f"phase={phase} reason={reason} kms={final_placement} moves={mine} status.move={status.get('move')}"

    # 0. Every irreversible step was preceded by the journal write a later attempt needs.
    assert not world.unjournaled, f"irreversible step before its journal write: {world.unjournaled}; {where}"

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

    # 4. afterSuccess at most once, and only when this generation moved the stage.
    runs = world.after_success_runs["P"]
    assert runs <= 1, f"afterSuccess ran {runs} times: {where}"
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

    # 6. lastTransitionTime never decreases, over every version the API server held.
    seen: dict[str, str] = {}
    for _, version in world.objects["P"].versions:
        for condition in version.get("conditions") or []:
            earlier = seen.get(condition["type"], "")
            assert condition["lastTransitionTime"] >= earlier, f"lastTransitionTime went back: {where}"
            seen[condition["type"]] = condition["lastTransitionTime"]

    # 7. A rival promotion of the same secret waited, then ran on its own.
    if world.rival_started:
        q = world.objects["Q"].status
        assert q.get("phase") == "Succeeded", f"rival: {q.get('phase')} {_reason(q)}"
        assert world.placement().get(request.version_stage) == "v3"


def _reason(status: Mapping[str, Any]) -> str | None:
    return next((c.get("reason") for c in status.get("conditions") or [] if c.get("type") == "Succeeded"), None)
