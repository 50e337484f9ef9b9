"""KMS traffic is shared round robin between tenants: slots (FairGate) and rate tokens (TokenBucket)."""

from __future__ import annotations

import asyncio

import pytest

from secretstage.kms import FairGate, TokenBucket


async def _hold(gate: FairGate, tenant: str, order: list[str], release: asyncio.Event) -> None:
    async with gate.slot(tenant):
        order.append(tenant)
        await release.wait()


async def until(predicate, what: str) -> None:  # type: ignore[no-untyped-def]
    for _ in range(1000):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never happened: {what}")


async def test_a_freed_slot_goes_to_the_next_tenant_in_turn() -> None:
    gate = FairGate(2)
    order: list[str] = []
    releases = [asyncio.Event() for _ in range(12)]
    tasks = [asyncio.create_task(_hold(gate, "a", order, releases[i])) for i in range(10)]
    await until(lambda: len(order) == 2, "a holds both slots")
    tasks.append(asyncio.create_task(_hold(gate, "b", order, releases[10])))
    await until(lambda: "b" in gate._waiters._queues, "b waits")
    releases[0].set()  # one of a's calls ends
    await until(lambda: len(order) == 3, "the freed slot is taken")
    assert order == ["a", "a", "b"]  # b, not a's third call: 8 more of a's were waiting before b came
    for event in releases:
        event.set()
    await asyncio.gather(*tasks)
    assert gate.in_use.total() == 0


async def test_per_tenant_cap() -> None:
    gate = FairGate(4, per_tenant=1)
    order: list[str] = []
    release = asyncio.Event()
    tasks = [asyncio.create_task(_hold(gate, t, order, release)) for t in ("a", "a", "b")]
    await until(lambda: len(order) == 2, "one of a's and b's")
    assert sorted(order) == ["a", "b"]  # a's second waits although two slots are free
    release.set()
    await asyncio.gather(*tasks)
    assert order.count("a") == 2


async def test_a_cancelled_waiter_holds_no_slot() -> None:
    gate = FairGate(1)
    order: list[str] = []
    release = asyncio.Event()
    first = asyncio.create_task(_hold(gate, "a", order, release))
    await until(lambda: order == ["a"], "a holds the slot")
    waiter = asyncio.create_task(_hold(gate, "b", order, release))
    await until(lambda: bool(gate._waiters), "b waits")
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    release.set()
    await first
    assert gate.in_use.total() == 0
    async with gate.slot("c"):
        assert dict(gate.in_use) == {"c": 1}


async def test_tokens_go_round_robin() -> None:
    bucket = TokenBucket(rate=200, burst=1)
    await bucket.acquire("a")  # the saved token
    served: list[str] = []

    async def take(tenant: str) -> None:
        await bucket.acquire(tenant)
        served.append(tenant)

    tasks = [asyncio.create_task(take("a")) for _ in range(20)]
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(take("b")))
    await asyncio.gather(*tasks)
    # b came after 20 of a's requests, and got the first or second token after it asked
    assert served.index("b") <= 1, served
