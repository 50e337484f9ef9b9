"""spec.approval in the protocol: asked before anything is sent (not even a KMS read), by every
generation that may move the stage to a version of its own, also after an earlier generation moved it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from secretstage.domain.approval import APPROVALS_ANNOTATION, REQUESTED_BY_ANNOTATION
from secretstage.domain.promotion import ACS_CURRENT, ACS_PREVIOUS, parse_spec
from secretstage.kms.models import SecretVersion, StageUpdate, VersionList
from secretstage.protocol import Attempt

NOW = "2026-12-07T10:00:00Z"


class Store:
    """One object's status, written as merge patches (compare-and-set is explorer.py's business)."""

    def __init__(self, generation: int, status: Mapping[str, Any] | None = None) -> None:
        self._status: dict[str, Any] = dict(status or {})
        self._generation = generation

    @property
    def status(self) -> Mapping[str, Any]:
        return self._status

    @property
    def uid(self) -> str:
        return "uid-1"

    @property
    def generation(self) -> int | None:
        return self._generation

    async def write(self, status: Mapping[str, Any]) -> None:
        for key, value in status.items():
            if value is None:
                self._status.pop(key, None)
            else:
                self._status[key] = value

    async def refresh(self) -> Mapping[str, Any]:
        return self._status


class Kms:
    def __init__(self) -> None:
        self.placement = {ACS_CURRENT: "v1"}
        self.calls: list[str] = []

    async def list_secret_version_ids(self, secret_name: str, *, include_deprecated: bool = False) -> VersionList:
        self.calls.append("ListSecretVersionIds")
        versions = tuple(
            SecretVersion(v, NOW, tuple(s for s, held in self.placement.items() if held == v))
            for v in ("v1", "v2", "v3")
        )
        return VersionList(secret_name, versions, ("read",))

    async def update_secret_version_stage(
        self,
        secret_name: str,
        version_stage: str,
        *,
        move_to_version: str | None = None,
        remove_from_version: str | None = None,
        before_send: Callable[[], Awaitable[None]] | None = None,
    ) -> StageUpdate:
        if before_send is not None:
            await before_send()
        self.calls.append(f"UpdateSecretVersionStage {version_stage} -> {move_to_version}")
        if version_stage == ACS_CURRENT and move_to_version is not None:
            self.placement[ACS_PREVIOUS] = self.placement[ACS_CURRENT]
        if move_to_version is not None:
            self.placement[version_stage] = move_to_version
        return StageUpdate(secret_name, "move")


def spec(version: str, **extra: Any) -> dict[str, Any]:
    return {
        "secretName": "db",
        "versionStage": ACS_CURRENT,
        "moveToVersion": version,
        "regionId": "cn-hangzhou",
        "credentials": {"secretRef": {"name": "kms"}},
        "approval": {"required": True, "approvers": {"users": ["bob"]}},
        **extra,
    }


async def attempt(
    kms: Kms, store: Store, spec_: dict[str, Any], lines: tuple[str, ...], problem: str | None = None
) -> str:
    async def policy() -> str | None:
        return problem

    run = Attempt(
        request=parse_spec(spec_),
        kms=kms,
        store=store,
        generation=store._generation,
        number=1,
        now=lambda: NOW,
        who="payments/db-v2",
        annotations={APPROVALS_ANNOTATION: "\n".join(lines), REQUESTED_BY_ANNOTATION: "alice"},
        approval_policy=policy,
    )
    result = await run.run()
    return result.outcome.reason


async def test_without_approval_nothing_is_sent_not_even_a_read() -> None:
    kms = Kms()
    assert await attempt(kms, Store(1), spec("v2"), ()) == "AwaitingApproval"
    assert await attempt(kms, Store(1), spec("v2"), ("approve 1 alice",)) == "AwaitingApproval"  # the requester
    assert await attempt(kms, Store(1), spec("v2"), ("approve 1 bob",), problem="no policy") == "ApprovalUntrusted"
    assert await attempt(kms, Store(1), spec("v2"), ("reject 1 bob",)) == "Rejected"
    assert kms.calls == []


async def test_approved_it_moves() -> None:
    kms, store = Kms(), Store(1)
    assert await attempt(kms, store, spec("v2"), ("approve 1 bob",)) == "Promoted"
    assert "UpdateSecretVersionStage ACSCurrent -> v2" in kms.calls
    assert store.status["approval"]["approvals"] == [{"user": "bob", "generation": 1, "time": NOW}]


async def test_an_edit_after_a_move_to_another_version_asks_again() -> None:
    """Generation 1 moved the stage (approved); generation 2 moves it on: its own approval, its own schedule."""
    kms, store = Kms(), Store(1)
    assert await attempt(kms, store, spec("v2"), ("approve 1 bob",)) == "Promoted"
    sent = list(kms.calls)
    store._generation = 2
    assert await attempt(kms, store, spec("v3"), ("approve 1 bob",)) == "AwaitingApproval"
    closed = {"windows": [{"cron": "0 3 1 1 *", "duration": "1h"}]}
    assert await attempt(kms, store, spec("v3", schedule=closed), ("approve 1 bob", "approve 2 bob")) == "OutsideWindow"
    assert kms.calls == sent  # nothing more was sent
    assert await attempt(kms, store, spec("v3"), ("approve 1 bob", "approve 2 bob")) == "Promoted"
    assert kms.placement[ACS_CURRENT] == "v3"


async def test_a_rejection_after_the_move_was_sent_changes_nothing() -> None:
    """Once this generation journaled its move, approval is history: the move is finished, not undone."""
    kms, store = Kms(), Store(1)
    assert await attempt(kms, store, spec("v2"), ("approve 1 bob",)) == "Promoted"
    journal = dict(store.status)
    journal["phase"] = "InProgress"  # as if the attempt had stopped after the move, before its final write
    assert await attempt(kms, Store(1, journal), spec("v2"), ("approve 1 bob", "reject 1 carol")) == "Promoted"


async def test_a_wait_already_written_is_not_written_again() -> None:
    """A restarted operator (or a spurious wake) finds thousands waiting for approval: it writes nothing
    for those whose status already says the same; a new approval changes the message, and is written."""

    class CountingStore(Store):
        writes = 0

        async def write(self, status: Mapping[str, Any]) -> None:
            CountingStore.writes += 1
            await super().write(status)

    kms, store = Kms(), CountingStore(1)
    assert (
        await attempt(
            kms,
            store,
            spec("v2", approval={"required": True, "approvers": {"users": ["bob", "carol"]}, "minApprovals": 2}),
            (),
        )
        == "AwaitingApproval"
    )
    assert CountingStore.writes == 1
    two = {"required": True, "approvers": {"users": ["bob", "carol"]}, "minApprovals": 2}
    assert await attempt(kms, store, spec("v2", approval=two), ()) == "AwaitingApproval"
    assert CountingStore.writes == 1
    assert await attempt(kms, store, spec("v2", approval=two), ("approve 1 bob",)) == "AwaitingApproval"
    assert CountingStore.writes == 2
    assert store.status["approval"]["approvals"][0]["user"] == "bob"
    assert kms.calls == []
