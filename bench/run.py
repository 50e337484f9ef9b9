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
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from bench import report
from bench.harness import AK_ID, AK_SECRET, ROOT, Plane, Proc, Watcher, emulator, operator
from secretstage.kms import Credentials, KmsClient, StaticProvider

RESULTS = ROOT / "bench" / "results"
FAIRNESS_TIMEOUT = 120.0
SCENARIOS = ("latency", "throughput", "startup", "scaling", "fairness")


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

    def fairness(self, stuck: int, label: str = "", source: Path | None = None) -> dict[str, float | None]:
        """One namespace's promotion, alone and then behind ``stuck`` promotions of another namespace that
        retry for ever (their credentials Secret does not exist), at a production-like KMS rate
        (20 requests/s, burst 1, 50 ms per request). Its time alone is the yardstick: the best this
        operator can do for it. None: not done within FAIRNESS_TIMEOUT."""
        self.emu_http.put("/_emulator/faults", json={"*": {"latency_ms": 50}})
        crowded, _ = self.fresh(f"fair-crowded{label}", 0)
        quiet, names = self.fresh(f"fair-quiet{label}", 3)
        # All namespaces, as the chart's default: one kopf scheduler for every namespace (with a list of
        # namespaces kopf keeps one per namespace, and the old worker limit never showed).
        op = operator(
            self.plane,
            self.url,
            "",
            f"operator-fairness{label}",
            *("--kms-rate-limit", "20", "--kms-burst", "1"),
            source=source,
        )
        watcher = Watcher(self.plane, quiet)
        try:
            self.plane.create(quiet, "warm-up", spec(self.url, names[2]))  # the first one pays for start-up
            watcher.wait(["warm-up"], 60)
            started = time.monotonic()
            self.plane.create(quiet, "alone", spec(self.url, names[0]))
            watcher.wait(["alone"], 60)
            alone = watcher.done["alone"] - started
            absent = {**spec(self.url, "bench/none"), "credentials": {"secretRef": {"name": "absent"}}}
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda i: self.plane.create(crowded, f"stuck-{i}", absent), range(stuck)))
            # Measure once the operator has taken up the whole crowd, or all of it that it ever will
            # (100 with kopf's old worker limit): no progress for 10 s.
            taken, progress = 0, time.monotonic()
            while taken < stuck and time.monotonic() - progress < 10:
                time.sleep(0.5)
                now_taken = self._pending(crowded)
                if now_taken > taken:
                    taken, progress = now_taken, time.monotonic()
            started = time.monotonic()
            self.plane.create(quiet, "crowded", spec(self.url, names[1]))
            try:
                watcher.wait(["crowded"], FAIRNESS_TIMEOUT)
                behind: float | None = watcher.done["crowded"] - started
            except TimeoutError:
                behind = None
            handled = self._pending(crowded)
        finally:
            watcher.stop()
            op.stop()
            self.emu_http.put("/_emulator/faults", json={})
            for ns in (crowded, quiet):  # the next operator watches every namespace: leave nothing behind
                self.plane.http.delete(self.plane.path(ns)).raise_for_status()
                deadline = time.monotonic() + 60
                while self.plane.http.get(self.plane.path(ns)).json()["items"] and time.monotonic() < deadline:
                    time.sleep(0.2)
        return {"alone_s": alone, "behind_s": behind, "crowd_handled": handled}

    def _pending(self, namespace: str) -> int:
        items = self.plane.http.get(self.plane.path(namespace)).json()["items"]
        return sum(1 for o in items if (o.get("status") or {}).get("phase") == "Pending")

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
    parser.add_argument(
        "--only",
        action="append",
        choices=SCENARIOS,
        help="run only these scenarios (repeatable); their numbers replace those of the last run in "
        "bench/results, the rest are kept",
    )
    parser.add_argument(
        "--fairness-before",
        metavar="REV",
        help="also measure fairness with the operator of git revision REV (a before/after), e.g. 39ff1eb, "
        "the last revision before fair scheduling",
    )
    args = parser.parse_args()
    chosen = set(args.only or SCENARIOS)
    previous = RESULTS / "latest.json"
    r: dict[str, Any] = json.loads(previous.read_text()) if args.only and previous.exists() else {}
    old_samples = RESULTS / "samples.json"
    bench = Bench(args.quick)
    if args.only and old_samples.exists():
        bench.samples.update(json.loads(old_samples.read_text()))
    step: Callable[[str], None] = lambda what: print(f"bench: {what}", file=sys.stderr, flush=True)  # noqa: E731
    sizes = (100, 300, 1000) if args.quick else (100, 1000, 5000)
    worktree: Path | None = None
    try:
        if "fairness" in chosen:  # first: its operator watches every namespace, so the cluster must be empty
            stuck = 100 if args.quick else 500
            runs: list[tuple[str, Path | None]] = [("", None)]
            if args.fairness_before:
                worktree = checkout(args.fairness_before)
                runs.append(("_before", worktree / "operator"))
            for label, source in runs:
                step(
                    f"fairness: one promotion behind {stuck} stuck ones"
                    + (f" ({args.fairness_before})" if source else "")
                )
                f = bench.fairness(stuck, label.replace("_", "-"), source)
                r["fairness_stuck"] = stuck
                r[f"fairness{label}_alone_s"] = round(float(f["alone_s"] or 0), 3)
                behind = f["behind_s"]
                r[f"fairness{label}_behind_s"] = None if behind is None else round(behind, 3)
                r[f"fairness{label}_ratio"] = None if behind is None else round(behind / float(f["alone_s"] or 1), 2)
                r[f"fairness{label}_crowd_handled"] = f["crowd_handled"]
            if args.fairness_before:
                r["fairness_before_revision"] = args.fairness_before
        if "latency" in chosen:
            for ms in (0, 50):
                step(f"latency at KMS latency {ms} ms")
                bench.latency(ms)
        if "throughput" in chosen:
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
        if "startup" in chosen:
            step("start-up")
            r["startup_to_first_promotion_s"] = round(bench.startup(), 2)
        if "scaling" in chosen:
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
        if worktree is not None:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)], check=False)
    r["machine_cores"] = os.cpu_count()
    r["quick"] = args.quick
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(r, indent=1, sort_keys=True) + "\n")
    (RESULTS / "samples.json").write_text(json.dumps(bench.samples) + "\n")
    report.write(
        r,
        bench.samples,
        tuple(sorted(int(k.split("_")[1]) for k in r if k.startswith("scale_") and k.endswith("_per_s"))),
    )
    print(json.dumps(r, indent=1, sort_keys=True))
    return 0


def checkout(revision: str) -> Path:
    """A throwaway git worktree of that revision (its operator/ is run for the "before")."""
    where = Path(tempfile.mkdtemp(prefix="secretstage-before-")) / "tree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), revision], check=True)
    return where


if __name__ == "__main__":
    sys.exit(main())
