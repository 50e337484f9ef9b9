"""Client-side limits on KMS traffic, shared fairly between tenants (the operator's namespaces).

One tenant's burst of promotions must not take the whole KMS rate, or every concurrent-call slot,
for minutes while another tenant's single promotion waits behind it. Both limits therefore serve
their waiters round robin by tenant: a tenant that is waiting gets the next token and the next
free slot after at most one turn of each other waiting tenant.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable


class _RoundRobin:
    """Waiters queued per tenant; ``next()`` takes one from the tenant after the last one served."""

    def __init__(self) -> None:
        self._queues: dict[str, deque[asyncio.Future[None]]] = {}  # insertion order = turn order

    def __bool__(self) -> bool:
        return bool(self._queues)

    def add(self, tenant: str) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queues.setdefault(tenant, deque()).append(future)
        return future

    def next(
        self, admissible: Callable[[str], bool] = lambda _: True, share: Callable[[str], int] = lambda _: 0
    ) -> tuple[str, asyncio.Future[None]] | None:
        """The first waiter of the admissible tenant with the smallest ``share`` (what it holds now),
        ties broken by turn; that tenant then goes to the back of the line."""
        for tenant in list(self._queues):  # drop waiters cancelled while waiting
            queue = self._queues[tenant]
            while queue and queue[0].done():
                queue.popleft()
            if not queue:
                del self._queues[tenant]
        candidates = [t for t in self._queues if admissible(t)]
        if not candidates:
            return None
        tenant = min(candidates, key=share)  # min() keeps the first of equals: turn order
        queue = self._queues.pop(tenant)
        future = queue.popleft()
        if queue:
            self._queues[tenant] = queue  # back of the line: the others go first
        return tenant, future


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved; waiters served round robin by tenant."""

    def __init__(self, rate: float, burst: int | None = None, *, clock: Callable[[], float] = time.monotonic):
        if rate <= 0:
            raise ValueError("rate must be > 0 requests per second")
        self.rate = rate
        self.burst = max(1, burst if burst is not None else int(rate))
        self._clock = clock
        self._tokens = float(self.burst)
        self._last = clock()
        self._waiters = _RoundRobin()
        self._dispatcher: asyncio.Task[None] | None = None

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now

    async def acquire(self, tenant: str = "") -> float:
        """Take one token; returns the seconds spent waiting."""
        started = self._clock()
        self._refill()
        if not self._waiters and self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        future = self._waiters.add(tenant)
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.ensure_future(self._dispatch())
        await future
        return self._clock() - started

    async def _dispatch(self) -> None:
        while self._waiters:
            self._refill()
            if self._tokens < 1:
                await asyncio.sleep((1 - self._tokens) / self.rate)
                continue
            served = self._waiters.next()
            if served is not None:
                self._tokens -= 1
                served[1].set_result(None)


class FairGate:
    """At most ``capacity`` concurrent KMS calls, and at most ``per_tenant`` of one tenant (0: no
    cap of its own). A freed slot goes to the waiting tenant that holds the fewest, so one with a
    single call waiting gets the next slot however many another has queued."""

    def __init__(self, capacity: int, per_tenant: int = 0) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity, self.per_tenant = capacity, per_tenant
        self.in_use: Counter[str] = Counter()
        self._waiters = _RoundRobin()

    def _admissible(self, tenant: str) -> bool:
        return not self.per_tenant or self.in_use[tenant] < self.per_tenant

    @contextlib.asynccontextmanager
    async def slot(self, tenant: str = "") -> AsyncIterator[None]:
        future = self._waiters.add(tenant)
        self._fill()
        try:
            await future  # granted: the slot was counted for us in _fill
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._release(tenant)  # granted and cancelled at once: hand it on
            raise
        try:
            yield
        finally:
            self._release(tenant)

    def _fill(self) -> None:
        """Hand free slots to waiters: the tenant holding the fewest slots first, then in turn."""
        while self.in_use.total() < self.capacity:
            served = self._waiters.next(self._admissible, share=self.in_use.__getitem__)
            if served is None:
                return
            self.in_use[served[0]] += 1
            served[1].set_result(None)

    def _release(self, tenant: str) -> None:
        self.in_use[tenant] -= 1
        if self.in_use[tenant] <= 0:
            del self.in_use[tenant]
        self._fill()
