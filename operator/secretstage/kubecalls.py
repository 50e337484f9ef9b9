"""afterSuccess's Kubernetes API calls (official client), on threads of their own, taken in turn by namespace.

The hot path's calls are async (``kubehttp``); afterSuccess patches workloads and ExternalSecrets
with the official ``kubernetes`` client, which is synchronous, so each call runs on a thread. With asyncio's
default executor (a handful of threads, first come first served), 500 promotions of one namespace
retrying for ever (each retry a Secret read and a status write) kept every thread busy, and another
namespace's single promotion waited behind all of their calls: 15.7 s in bench/ (docs/benchmarks.md).
Here a call waits for a thread through a ``FairGate``: a free thread goes to the waiting namespace
that holds the fewest, so one namespace's backlog costs another at most about one call per thread.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from secretstage.kms.ratelimit import FairGate

T = TypeVar("T")
THREADS = 8  # the kubernetes client's urllib3 pool holds 5 x CPUs connections: 10 on 2 cores


class FairCalls:
    def __init__(self, threads: int = THREADS) -> None:
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="kube-call")
        self.gate = FairGate(threads)

    async def run(self, namespace: str, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        async with self.gate.slot(namespace):
            return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))


#: The one instance afterSuccess's calls go through (leader election has its own executor: a Lease
#: renewal must never wait behind promotions).
CALLS = FairCalls()


async def call(namespace: str, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    return await CALLS.run(namespace, fn, *args, **kwargs)
