from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable
from typing import Any

from secretstage.kms import Credentials, KmsClient, StaticProvider
from tests.harness import E2E_KEY_ID, E2E_KEY_SECRET, E2E_SECRET_VALUE, E2E_TOKEN, GROUP, PLURAL, VERSION, Promotions
from tests.support import wait_for


def seed_many(url: str, names: Iterable[str]) -> None:
    """Secrets with v1 (ACSCurrent) and v2 (no stage), created concurrently."""

    async def run() -> None:
        creds = StaticProvider(Credentials(E2E_KEY_ID, E2E_KEY_SECRET, E2E_TOKEN))
        async with KmsClient(endpoint=url, credentials=creds) as client:
            sem = asyncio.Semaphore(20)

            async def one(name: str) -> None:
                async with sem:
                    await client.create_secret(name, "v1", E2E_SECRET_VALUE)
                    await client.put_secret_value(name, "v2", E2E_SECRET_VALUE + "2", version_stages=[])

            await asyncio.gather(*(one(n) for n in names))

    asyncio.run(run())


def unique(prefix: str) -> str:
    return f"{prefix}/{uuid.uuid4().hex[:10]}"


def list_all(promotions: Promotions, namespace: str) -> list[dict[str, Any]]:
    return list(promotions.api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"])


def wait_all_terminal(
    promotions: Promotions, namespaces: list[str], count: int, timeout: float
) -> list[dict[str, Any]]:
    def probe() -> list[dict[str, Any]]:
        return [o for ns in namespaces for o in list_all(promotions, ns)]

    def done(objs: list[dict[str, Any]]) -> bool:
        return len(objs) == count and all((o.get("status") or {}).get("phase") in ("Succeeded", "Failed") for o in objs)

    def summary(objs: list[dict[str, Any]]) -> dict[str, int]:
        phases: dict[str, int] = {}
        for o in objs:
            phase = (o.get("status") or {}).get("phase", "None")
            phases[phase] = phases.get(phase, 0) + 1
        return phases

    try:
        return wait_for(probe, done, timeout=timeout, what=f"{count} promotions to finish", interval=1.0)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nphases: {summary(probe())}") from None


def max_in_window(arrivals: list[float], window: float = 1.0) -> int:
    arrivals = sorted(arrivals)
    best, j = 0, 0
    for i, t in enumerate(arrivals):
        while arrivals[j] <= t - window:
            j += 1
        best = max(best, i - j + 1)
    return best
