"""`make bench`: our operator against the physical limit, side by side, on one machine.

The limit is the same KMS calls and status writes made directly by a minimal client (httpx, no
framework): one UpdateSecretVersionStage + one status PATCH per promotion. Everything runs here:
a real kube-apiserver + etcd, the KMS emulator (latency 0 ms and 50 ms), the operator process.
Writes bench/results/latest.json (flat numbers) and docs/benchmarks.md with PNG plots.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from bench import report
from bench.harness import AK_ID, AK_SECRET, ROOT, Plane, Proc, Watcher, emulator, operator
from secretstage.kms import Credentials, KmsClient, StaticProvider

RESULTS = ROOT / "bench" / "results"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def seed(url: str, names: list[str]) -> None:
    async def run() -> None:
        async with KmsClient(endpoint=url, credentials=StaticProvider(Credentials(AK_ID, AK_SECRET))) as client:
            sem = asyncio.Semaphore(32)

            async def one(name: str) -> None:
                async with sem:
                    await client.create_secret(name, "v1", "value-1")
                    await client.put_secret_value(name, "v2", "value-2", version_stages=[])

            await asyncio.gather(*(one(n) for n in names))

    asyncio.run(run())


def spec(url: str, secret: str) -> dict[str, Any]:
    return {
        "secretName": secret,
        "versionStage": "ACSCurrent",
        "moveToVersion": "v2",
        "endpoint": url,
        "credentials": {"secretRef": {"name": "kms-credentials"}},
    }


class Bench:
    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.plane = Plane.up()
        self.plane.kubectl("apply", "-f", str(ROOT / "crds"))
        self.plane.kubectl("wait", "--for=condition=Established", "crd/secretstagepromotions.secretstage.io")
        self.emu, self.url, self.emu_http = emulator(self.plane.state)
        self.results: dict[str, Any] = {}
        self.samples: dict[str, list[float]] = {}
        self.counter = 0

    def close(self) -> None:
        self.emu.stop()
        self.plane.down()

    def fresh(self, label: str, count: int) -> tuple[str, list[str]]:
        self.counter += 1
        ns = f"bench-{self.counter}-{label}".replace("_", "-")
        self.plane.namespace(ns)
        names = [f"bench/{ns}/{i}" for i in range(count)]
        seed(self.url, names)
        return ns, names

    def latency(self, kms_ms: int, env: dict[str, str] | None = None, label: str = "", n: int | None = None) -> None:
        self.emu_http.put("/_emulator/faults", json={"*": {"latency_ms": kms_ms}} if kms_ms else {})
        n = n or (50 if self.quick else 200)
        # the limit: one UpdateSecretVersionStage + one status PATCH, sequentially, by a minimal client
        ns, names = self.fresh(f"limit-{kms_ms}", n)
        for i in range(n):  # objects to write status to, in a namespace no operator watches
            self.plane.create(ns, f"p{i}", spec(self.url, names[i]))
        limit = asyncio.run(self._limit_sequential(ns, names))
        # ours: create -> Succeeded seen on a watch, one at a time
        ns, names = self.fresh(f"ours-{kms_ms}{label}", n)
        op = operator(self.plane, self.url, ns, f"operator-latency-{kms_ms}{label}", **(env or {}))
        watcher = Watcher(self.plane, ns)
        ours = []
        try:
            for i, name in enumerate(names):
                started = time.monotonic()
                self.plane.create(ns, f"p{i}", spec(self.url, name))
                watcher.wait([f"p{i}"], 60)
                ours.append(watcher.done[f"p{i}"] - started)
        finally:
            watcher.stop()
            op.stop()
        self.samples[f"latency_ours_{kms_ms}ms{label}"] = ours
        self.samples[f"latency_limit_{kms_ms}ms{label}"] = limit
        for p in (50, 95, 99):
            o, lim = pct(ours, p), pct(limit, p)
            self.results[f"latency_{kms_ms}ms{label}_p{p}_ours_s"] = round(o, 4)
            self.results[f"latency_{kms_ms}ms{label}_p{p}_limit_s"] = round(lim, 4)
            self.results[f"latency_{kms_ms}ms{label}_p{p}_ratio"] = round(o / lim, 2)
        self.emu_http.put("/_emulator/faults", json={})

    async def _limit_sequential(self, ns: str, names: list[str]) -> list[float]:
        out = []
        async with (
            httpx.AsyncClient(**self.plane.async_args) as k8s_http,
            KmsClient(endpoint=self.url, credentials=StaticProvider(Credentials(AK_ID, AK_SECRET))) as kms,
        ):
            for i, name in enumerate(names):
                started = time.monotonic()
                await self._limit_one(kms, k8s_http, ns, i, name)
                out.append(time.monotonic() - started)
        return out

    async def _limit_one(self, kms: KmsClient, k8s_http: httpx.AsyncClient, ns: str, i: int, name: str) -> None:
        result = await kms.update_secret_version_stage(
            name, "ACSCurrent", move_to_version="v2", remove_from_version="v1"
        )
        r = await k8s_http.patch(
            self.plane.path(ns, f"p{i}") + "/status",
            json={"status": {"phase": "Succeeded", "requestId": result.request_id}},
            headers={"content-type": "application/merge-patch+json"},
        )
        r.raise_for_status()

    def throughput(
        self, count: int, label: str, env: dict[str, str] | None = None, rss_at: tuple[int, ...] = ()
    ) -> dict[str, float]:
        """A burst of `count`; time until all Succeeded; RSS idle, at the peak and when `rss_at` were done."""
        ns, names = self.fresh(f"burst-{label}", count)
        op = operator(self.plane, self.url, ns, f"operator-{label}", **(env or {}))
        watcher = Watcher(self.plane, ns)
        idle = op.rss_mib()
        peak = [idle]
        marks: dict[int, float] = {}

        def create(i: int) -> None:
            self.plane.create(ns, f"p{i}", spec(self.url, names[i]))

        started = time.monotonic()
        try:
            with ThreadPoolExecutor(8) as pool:
                futures = [pool.submit(create, i) for i in range(count)]
                while len(watcher.done) < count:
                    peak[0] = max(peak[0], op.rss_mib())
                    for mark in rss_at:
                        if mark not in marks and len(watcher.done) >= mark:
                            marks[mark] = op.rss_mib()
                    if time.monotonic() - started > 1800:
                        raise TimeoutError(f"{label}: {len(watcher.done)}/{count} done after 30 min")
                    time.sleep(0.2)
                for f in futures:
                    f.result()
            elapsed = max(watcher.done.values()) - started
            after = op.rss_mib()
        finally:
            watcher.stop()
            op.stop()
        if watcher.failed:
            raise RuntimeError(f"{len(watcher.failed)} promotions failed, e.g. {list(watcher.failed.items())[:2]}")
        stats = {
            "elapsed_s": elapsed,
            "per_s": count / elapsed,
            "rss_idle_mib": idle,
            "rss_peak_mib": peak[0],
            "rss_after_mib": after,
        }
        for mark, rss in marks.items():
            stats[f"rss_after_{mark}_mib"] = rss
        return stats

    def throughput_limit(self, count: int, concurrency: int) -> float:
        ns, names = self.fresh("burst-limit", count)
        for i in range(count):
            self.plane.create(ns, f"p{i}", spec(self.url, names[i]))

        async def run() -> float:
            sem = asyncio.Semaphore(concurrency)
            async with (
                httpx.AsyncClient(**self.plane.async_args) as k8s_http,
                KmsClient(endpoint=self.url, credentials=StaticProvider(Credentials(AK_ID, AK_SECRET))) as kms,
            ):

                async def one(i: int) -> None:
                    async with sem:
                        await self._limit_one(kms, k8s_http, ns, i, names[i])

                started = time.monotonic()
                await asyncio.gather(*(one(i) for i in range(count)))
                return time.monotonic() - started

        return asyncio.run(run())

    def startup(self) -> float:
        """Process start to the first promotion handled (the promotion exists before the operator starts)."""
        ns, names = self.fresh("startup", 1)
        self.plane.create(ns, "first", spec(self.url, names[0]))
        watcher = Watcher(self.plane, ns)
        try:
            op: Proc | None = None
            op = operator(self.plane, self.url, ns, "operator-startup")
            watcher.wait(["first"], 60)
            return watcher.done["first"] - op.started
        finally:
            watcher.stop()
            if op is not None:
                op.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs (for trying the scripts out)")
    args = parser.parse_args()
    bench = Bench(args.quick)
    r = bench.results
    step: Callable[[str], None] = lambda what: print(f"bench: {what}", file=sys.stderr, flush=True)  # noqa: E731
    try:
        for ms in (0, 50):
            step(f"latency at KMS latency {ms} ms")
            bench.latency(ms)
        burst = 100 if args.quick else 500
        step(f"throughput: burst of {burst}")
        ours = bench.throughput(burst, "burst")
        limit_s = bench.throughput_limit(burst, concurrency=100)
        r.update(
            {
                "throughput_burst": burst,
                "throughput_ours_per_s": round(ours["per_s"], 2),
                "throughput_limit_per_s": round(burst / limit_s, 2),
                "throughput_ratio": round(ours["per_s"] / (burst / limit_s), 3),
            }
        )
        step("start-up")
        r["startup_to_first_promotion_s"] = round(bench.startup(), 2)
        sizes = (100, 300, 1000) if args.quick else (100, 1000, 5000)
        for n in sizes:
            step(f"scaling: {n} objects")
            s = bench.throughput(n, f"scale-{n}")
            r[f"scale_{n}_per_s"] = round(s["per_s"], 2)
            r[f"scale_{n}_rss_idle_mib"] = round(s["rss_idle_mib"], 1)
            r[f"scale_{n}_rss_peak_mib"] = round(s["rss_peak_mib"], 1)
            r[f"scale_{n}_rss_after_mib"] = round(s["rss_after_mib"], 1)
            if n == sizes[-1]:
                r["rss_idle_mib"] = round(s["rss_idle_mib"], 1)
    finally:
        bench.close()
    r["machine_cores"] = __import__("os").cpu_count()
    r["quick"] = args.quick
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(r, indent=1, sort_keys=True) + "\n")
    (RESULTS / "samples.json").write_text(json.dumps(bench.samples) + "\n")
    report.write(r, bench.samples, sizes)
    print(json.dumps(r, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
