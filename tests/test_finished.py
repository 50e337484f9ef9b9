"""What a watch event queues (``Workers.offer``): a generation this process just finished is not
queued again from a late event of its own intent write, and the record goes once the final status
comes back. Only bodies this process wrote are skipped: a status someone else changed runs, as after
a restart. A new object with an empty status is announced as Queued; one with a status is not."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from secretstage.reconcile import RecentlyFinished, Runtime
from secretstage.workers import Workers


class _Runtime:
    """The one thing ``offer`` reads of the runtime."""

    def __init__(self, finished: RecentlyFinished) -> None:
        self.finished = finished


def offered(finished: RecentlyFinished, generation: int, status: dict[str, object], rv: str = "11") -> bool:
    async def offer() -> bool:
        workers = Workers(cast(Runtime, _Runtime(finished)))
        workers.offer("MODIFIED", "ns", "p", "u1", generation, rv, status)
        return workers.queue.is_ready(("ns", "p"))

    return asyncio.run(offer())


def announced(status: dict[str, Any]) -> int:
    async def offer() -> int:
        workers = Workers(cast(Runtime, _Runtime(RecentlyFinished())))
        workers.offer(None, "ns", "p", "u1", 1, "7", status)
        workers.offer("MODIFIED", "ns", "p", "u1", 1, "8", status)  # twice: announced once
        return len(workers._announcements)

    return asyncio.run(offer())


def test_only_a_generation_without_any_status_is_announced_as_queued() -> None:
    assert announced({}) == 1
    # an earlier generation's status (its journal) is never overwritten by a Queued one
    assert announced({"phase": "Succeeded", "observedGeneration": 0}) == 0
    assert announced({"phase": "InProgress", "observedGeneration": 1}) == 0


def test_a_stale_body_of_a_generation_just_finished_is_not_offered_again() -> None:
    finished = RecentlyFinished()
    intent = {"phase": "InProgress", "observedGeneration": 1}
    assert offered(finished, 1, intent)
    finished.add("u1", 1, ["11", "12"])  # our intent write (11) and final write (12)
    assert not offered(finished, 1, intent, rv="11")  # the intent write's event, seen after the final write
    assert offered(finished, 2, {"phase": "Succeeded", "observedGeneration": 1})  # a new generation is
    assert not offered(finished, 1, {"phase": "Succeeded", "observedGeneration": 1}, rv="12")
    assert len(finished) == 0  # kopf caught up: forgotten


def test_a_status_changed_by_someone_else_runs_before_and_after_a_restart_alike() -> None:
    finished = RecentlyFinished()
    finished.add("u1", 1, ["11", "12"])
    hand_edited = {"phase": "InProgress", "observedGeneration": 1}
    assert offered(finished, 1, hand_edited, rv="13")  # not a body this process wrote
    assert offered(RecentlyFinished(), 1, hand_edited, rv="13")  # a restarted process: the same answer


def test_the_record_is_bounded() -> None:
    finished = RecentlyFinished(capacity=3)
    for i in range(10):
        finished.add(f"u{i}", 1, ["5"])
    assert len(finished) == 3
    assert finished.covers("u9", 1, "5")
    assert not finished.covers("u0", 1, "5")
