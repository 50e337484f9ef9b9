"""The promotions waiting for a worker: keys only, fair by namespace.

A promotion that waits for its turn (a burst of thousands, or a retry's backoff) costs a key here,
a few hundred bytes, and nothing else: no body, no task, no retry state. A worker takes a key, reads
the object fresh and runs one attempt (``secretstage.workers``); the journal in ``.status`` and the
compare-and-set status writes make a fresh read as safe as the body an event carried.

The semantics are client-go's workqueue, in one place: a key is at most once in the queue; a key
being worked on is not handed to a second worker, and a change seen meanwhile marks it to run again
once the worker is done; a delayed key (a retry's backoff) becomes ready when it is due. Ready keys
go out round robin by namespace, the namespace with the fewest keys being worked on first, so one
namespace's backlog of thousands delays another's single promotion by at most one turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

Key = tuple[str, str]  # (namespace, name)
#: (uid, generation, decisions): which object, which generation, and how many approval decisions it carries
#: (lines of its secretstage.io/approvals annotation, which only grows): a watch event that shows another
#: token wakes a waiting key; one that shows the same (the echo of its own status write) does not.
Token = tuple[str, int, int]


@dataclass
class _Delayed:
    due: float
    token: Token | None


class FairQueue:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._ready: dict[str, OrderedDict[str, None]] = {}  # namespace -> names; dict order = turn order
        self._delayed: dict[Key, _Delayed] = {}
        self._heap: list[tuple[float, int, Key]] = []  # (due, tie-breaker, key); stale entries skipped
        self._order = itertools.count()
        self._working: dict[Key, Token | None] = {}  # key -> what the worker is working on, once known
        self._again: set[Key] = set()  # changed while being worked on: ready again when done
        self.working_by_namespace: Counter[str] = Counter()
        self._wakeup = asyncio.Event()

    # --- what events do ------------------------------------------------------------------------------

    def add(self, key: Key) -> None:
        """Ready now (a delayed key too: something changed that its backoff was not about)."""
        if key in self._working:
            self._again.add(key)
            return
        self._delayed.pop(key, None)
        names = self._ready.setdefault(key[0], OrderedDict())
        if key[1] not in names:
            names[key[1]] = None
            self._wakeup.set()

    def offer(self, key: Key, token: Token) -> bool:
        """A watch event shows ``token`` (uid, generation) not done: queue it unless that is already
        known. A key delayed or being worked on for the same token keeps its turn (a retry keeps its
        backoff; the status writes of its own attempt change nothing). Returns True if queued."""
        if key in self._working:
            if self._working[key] == token:
                return False
            self._again.add(key)
            return True
        delayed = self._delayed.get(key)
        if delayed is not None and delayed.token == token:
            return False
        if self.is_ready(key):
            return False
        self.add(key)
        return True

    def add_after(self, key: Key, delay: float, token: Token | None = None) -> None:
        """Ready once ``delay`` seconds have passed (a backoff); an ``add`` meanwhile makes it ready at once."""
        if key in self._working:
            raise RuntimeError("add_after is for keys not being worked on; done() takes the delay")
        if self.is_ready(key):
            return
        due = self._clock() + max(0.0, delay)
        self._delayed[key] = _Delayed(due, token)
        heapq.heappush(self._heap, (due, next(self._order), key))
        self._wakeup.set()

    def forget(self, key: Key, token: Token | None = None) -> None:
        """The object is gone: drop a waiting entry (of that object only, when ``token`` is given)."""
        delayed = self._delayed.get(key)
        if delayed is not None and (token is None or delayed.token is None or delayed.token[0] == token[0]):
            del self._delayed[key]
        names = self._ready.get(key[0])
        if names is not None and key[1] in names and key not in self._working:
            del names[key[1]]
            if not names:
                del self._ready[key[0]]

    # --- what workers do -------------------------------------------------------------------------------

    async def get(self) -> Key:
        """The next ready key, by namespace in turn; waits while there is none."""
        while True:
            self._promote_due()
            key = self._take()
            if key is not None:
                return key
            self._wakeup.clear()
            timeout = self._heap[0][0] - self._clock() if self._heap else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout)

    def working_on(self, key: Key, token: Token) -> None:
        """The worker read the object: events of this same generation change nothing for it."""
        if key in self._working:
            self._working[key] = token

    def done(self, key: Key, *, again_in: float | None = None, token: Token | None = None) -> None:
        """The worker is done with ``key``. ``again_in``: run it again after that many seconds (a
        retry's backoff), unless a change came meanwhile, which runs it at once."""
        self._working.pop(key, None)
        self.working_by_namespace[key[0]] -= 1
        if self.working_by_namespace[key[0]] <= 0:
            del self.working_by_namespace[key[0]]
        if key in self._again:
            self._again.discard(key)
            self.add(key)
        elif again_in is not None:
            self.add_after(key, again_in, token)
        self._wakeup.set()  # a namespace's share went down: its next key may go first now

    # --- what is shown ---------------------------------------------------------------------------------

    def is_ready(self, key: Key) -> bool:
        names = self._ready.get(key[0])
        return names is not None and key[1] in names

    def lengths(self) -> dict[str, tuple[int, int]]:
        """namespace -> (ready, delayed): what waits for a worker, and what waits out a backoff."""
        out: dict[str, tuple[int, int]] = {ns: (len(names), 0) for ns, names in self._ready.items()}
        for key in self._delayed:
            ready, delayed = out.get(key[0], (0, 0))
            out[key[0]] = (ready, delayed + 1)
        return out

    def position(self, key: Key) -> int | None:
        """About how many ready keys go out before this one: round robin, so up to as many of every other
        namespace as are ahead of it in its own (one more of those whose turn comes first). None if it
        is not ready."""
        names = self._ready.get(key[0])
        if names is None or key[1] not in names:
            return None
        if next(reversed(names)) == key[1]:  # the usual case, just queued: no scan
            index = len(names) - 1
        else:
            index = next(i for i, name in enumerate(names) if name == key[1])
        ahead, before_us = index, True
        for namespace, other in self._ready.items():  # turn order: the earlier ones serve first in each round
            if namespace == key[0]:
                before_us = False
            else:
                ahead += min(len(other), index + 1 if before_us else index)
        return ahead

    def __len__(self) -> int:
        return sum(len(names) for names in self._ready.values()) + len(self._delayed)

    # --- inside ----------------------------------------------------------------------------------------

    def _promote_due(self) -> None:
        now = self._clock()
        while self._heap and self._heap[0][0] <= now:
            due, _, key = heapq.heappop(self._heap)
            entry = self._delayed.get(key)
            if entry is not None and entry.due == due:  # else: made ready, forgotten or delayed anew since
                self.add(key)

    def _take(self) -> Key | None:
        if not self._ready:
            return None
        namespace = min(self._ready, key=self.working_by_namespace.__getitem__)  # min keeps turn order on ties
        names = self._ready.pop(namespace)
        name, _ = names.popitem(last=False)
        if names:
            self._ready[namespace] = names  # back of the line
        key = (namespace, name)
        self._working[key] = None
        self.working_by_namespace[namespace] += 1
        return key
