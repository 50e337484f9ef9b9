"""FairCalls: blocking Kubernetes calls on threads taken in turn by namespace (the gate is FairGate's)."""

from __future__ import annotations

import asyncio
import threading

from secretstage.kubecalls import FairCalls


async def test_one_namespace_backlog_does_not_hold_another_namespaces_call() -> None:
    calls = FairCalls(threads=2)
    started: list[str] = []
    release, both_busy = threading.Event(), threading.Event()

    def blocking(who: str) -> str:
        started.append(who)
        if len(started) == 2:
            both_busy.set()
        release.wait(5)
        return who

    crowd = [asyncio.ensure_future(calls.run("crowded", blocking, f"c{i}")) for i in range(20)]
    assert await asyncio.to_thread(both_busy.wait, 5)  # both threads busy with the crowd
    lonely = asyncio.ensure_future(calls.run("quiet", blocking, "q"))
    await asyncio.sleep(0)  # queued at the gate behind 18 of the crowd's
    release.set()
    assert await lonely == "q"
    await asyncio.gather(*crowd)
    # the quiet namespace's call was the first to get a freed thread, not the 21st
    assert started.index("q") == 2, started
