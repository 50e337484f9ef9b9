"""The fair work queue: keys only, one place per key, round robin by namespace, backoffs kept."""

from __future__ import annotations

import asyncio

import pytest

from secretstage.workqueue import FairQueue


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def drain(queue: FairQueue, count: int) -> list[tuple[str, str]]:
    """Take ``count`` ready keys (and mark each done at once), in the order the queue hands them out."""

    async def take() -> list[tuple[str, str]]:
        taken = []
        for _ in range(count):
            key = await asyncio.wait_for(queue.get(), 1)
            taken.append(key)
            queue.done(key)
        return taken

    return asyncio.run(take())


def test_a_key_is_queued_once_and_namespaces_take_turns() -> None:
    queue = FairQueue()
    for i in range(4):
        queue.add(("crowded", f"p{i}"))
    queue.add(("crowded", "p0"))  # again: still one entry
    queue.add(("quiet", "q0"))
    assert len(queue) == 5
    assert queue.position(("quiet", "q0")) == 1  # behind crowded/p0 only, not behind all four
    assert queue.position(("crowded", "p3")) == 4
    assert drain(queue, 5) == [
        ("crowded", "p0"),
        ("quiet", "q0"),
        ("crowded", "p1"),
        ("crowded", "p2"),
        ("crowded", "p3"),
    ]
    assert len(queue) == 0


def test_the_namespace_with_fewest_keys_in_work_goes_first() -> None:
    async def scenario() -> list[tuple[str, str]]:
        queue = FairQueue()
        for i in range(3):
            queue.add(("a", f"p{i}"))
        first = await queue.get()  # a/p0, being worked on
        queue.add(("b", "q0"))
        second = await queue.get()  # b holds none, a holds one: b first, though a's turn came first
        third = await queue.get()
        return [first, second, third]

    assert asyncio.run(scenario()) == [("a", "p0"), ("b", "q0"), ("a", "p1")]


def test_a_change_while_worked_on_runs_it_again_once_done() -> None:
    async def scenario() -> None:
        queue = FairQueue()
        queue.add(("ns", "p"))
        key = await queue.get()
        queue.working_on(key, ("uid-1", 1, 0))
        assert not queue.offer(key, ("uid-1", 1, 0))  # its own status writes: nothing new
        assert not queue.is_ready(key)
        assert queue.offer(key, ("uid-1", 2, 0))  # an edit: a new generation
        assert not queue.is_ready(key)  # never a second worker on the same key
        queue.done(key, again_in=30.0, token=("uid-1", 1, 0))
        assert queue.is_ready(key)  # the edit runs at once, not after the old generation's backoff

    asyncio.run(scenario())


def test_a_backoff_is_kept_unless_the_object_or_generation_changes() -> None:
    async def scenario() -> None:
        clock = Clock()
        queue = FairQueue(clock=clock)
        queue.add(("ns", "p"))
        key = await queue.get()
        queue.working_on(key, ("uid-1", 1, 0))
        queue.done(key, again_in=10.0, token=("uid-1", 1, 0))
        assert not queue.offer(key, ("uid-1", 1, 0))  # e.g. the echo of its Retry status: no early retry
        assert not queue.is_ready(key)
        assert queue.lengths() == {"ns": (0, 1)}
        clock.now = 10.0
        assert await asyncio.wait_for(queue.get(), 1) == key  # due: handed out
        queue.done(key, again_in=10.0, token=("uid-1", 1, 0))
        assert queue.offer(key, ("uid-2", 1, 0))  # deleted and created again: the new object now
        assert queue.is_ready(key)

    asyncio.run(scenario())


def test_a_delayed_key_waits_for_its_time() -> None:
    async def scenario() -> None:
        queue = FairQueue()
        queue.add_after(("ns", "late"), 0.2)
        queue.add(("ns", "now"))
        assert await asyncio.wait_for(queue.get(), 1) == ("ns", "now")
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await asyncio.wait_for(queue.get(), 2) == ("ns", "late")
        assert loop.time() - started >= 0.15

    asyncio.run(scenario())


def test_forget_drops_waiting_entries_of_that_object_only() -> None:
    queue = FairQueue()
    queue.add(("ns", "ready"))
    queue.add_after(("ns", "delayed"), 60, ("uid-old", 1, 0))
    queue.forget(("ns", "ready"))
    queue.forget(("ns", "delayed"), ("uid-new", 1, 0))  # a DELETED event of another object of that name
    assert queue.lengths() == {"ns": (0, 1)}
    queue.forget(("ns", "delayed"), ("uid-old", 1, 0))
    assert len(queue) == 0
    assert queue.lengths() == {}


def test_add_after_is_not_for_a_key_in_work() -> None:
    async def scenario() -> None:
        queue = FairQueue()
        queue.add(("ns", "p"))
        key = await queue.get()
        with pytest.raises(RuntimeError):
            queue.add_after(key, 1)

    asyncio.run(scenario())


def test_memory_is_keys_only() -> None:
    """A backlog of 10,000 keys: what the queue holds per promotion (the measured curve with the
    operator is bench/ and docs/development/benchmarks.md; this only keeps the queue itself small)."""
    import tracemalloc

    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    queue = FairQueue()
    for i in range(10_000):
        queue.add((f"ns-{i % 10}", f"promotion-{i:05d}"))
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    print(f"queue of 10,000 keys: {grown / 10_000:.0f} bytes per key")
    assert grown / 10_000 < 400, f"{grown / 10_000:.0f} bytes per queued key"
