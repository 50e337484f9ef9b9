"""`make bench`: our operator against two yardsticks, side by side, on one machine, timed alike.

The yardsticks (bench/yardstick.py) are minimal controllers with no framework, each a process of its
own, watching the promotions of one namespace like the operator does:

* raw: the least any controller must do, one UpdateSecretVersionStage + one status PATCH;
* contract: our protocol's calls (Secret read, read, intent, move, read back, final status, Event).

All three are timed the same way, from the create request to phase Succeeded seen on a watch, on the
same control plane (kube-apiserver + etcd, with an audit log) and the same KMS emulator (latency 0 and
50 ms). Costs are counted, not timed: KMS requests by action (the emulator's counters), Kubernetes
requests by verb and resource (the audit log), CPU of the controller, kube-apiserver and etcd.
Writes bench/results/latest.json (flat numbers) and docs/development/benchmarks.md with PNG plots.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil

from bench import report
from bench.harness import AK_ID, AK_SECRET, ROOT, Plane, Proc, Watcher, emulator, operator
from secretstage.kms import Credentials, KmsClient, StaticProvider

RESULTS = ROOT / "bench" / "results"
FAIRNESS_TIMEOUT = 120.0
SCENARIOS = ("fairness", "latency", "cost", "startup", "scaling", "soak", "backlog", "gate", "schedule")
# A window that is not open while the bench runs (03:00 on 1 January): promotions wait for it.
FAR_WINDOW = {"windows": [{"cron": "0 3 1 1 *", "duration": "1h", "timeZone": "Asia/Shanghai"}]}
BACKLOG_RATE = 40.0  # KMS requests/s while a backlog drains: the shared gateway's quota per account and region
KMS_CONCURRENCY = 20  # the operator's default --kms-max-concurrency: the yardsticks' promotions in flight


def cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def settle(proc: Proc, quiet_ms: float = 20, timeout: float = 15) -> None:
    """Until the process has used less than ``quiet_ms`` of CPU in half a second: it finished what it
    does after the last promotion (posting events, kopf's bookkeeping, freeing memory)."""
    deadline = time.monotonic() + timeout
    last = proc.cpu_s()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = proc.cpu_s()
        if (now - last) * 1000 < quiet_ms:
            return
        last = now


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


CONTROLLERS = ("ours", "contract", "raw")
# A gate needs at least, per promotion: the Job created, read once it is done, and the gate's start
# journaled (status); and one KMS read after the verdict (the stage still on the version).
GATE_FLOOR_K8S, GATE_FLOOR_KMS = 3, 1
SMOKE_JOB = {
    "name": "smoke",
    "template": {
        "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "smoke", "image": "smoke:1"}]}}
    },
}


class Bench:
    def __init__(self, quick: bool, before: Path | None) -> None:
        self.quick = quick
        self.before = before  # another revision's operator/ (--before): "ours" measured again with it
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

    def controller(self, kind: str, ns: str, label: str) -> Proc:
        """``ours`` (the operator, or with ``before`` the other revision's), ``raw`` or ``contract``."""
        if kind in ("ours", "before"):
            return operator(
                self.plane, self.url, ns, f"operator-{label}", source=self.before if kind == "before" else None
            )
        proc = Proc(
            [
                sys.executable,
                "-m",
                "bench.yardstick",
                kind,
                *("--namespace", ns, "--kubeconfig", self.plane.kubeconfig, "--kms", self.url),
                *("--access-key-id", AK_ID, "--concurrency", str(KMS_CONCURRENCY)),
            ],
            self.plane.state / f"yardstick-{label}.log",
            {"YARDSTICK_ACCESS_KEY_SECRET": AK_SECRET, "PYTHONPATH": str(ROOT)},
        )
        assert proc.popen.stdout is not None
        if proc.popen.stdout.readline().decode().strip() != "ready":
            raise RuntimeError(f"yardstick {kind} did not start; see {self.plane.state / f'yardstick-{label}.log'}")
        return proc

    def create(self, ns: str, names: list[str], indices: range, pool: ThreadPoolExecutor | None = None) -> None:
        """Promotions p<i> for secret names[i], from 8 threads."""
        if pool is None:
            with ThreadPoolExecutor(8) as own:
                self.create(ns, names, indices, own)
            return
        list(pool.map(lambda i: self.plane.create(ns, f"p{i}", spec(self.url, names[i])), indices))

    def kinds(self) -> tuple[str, ...]:
        return (*CONTROLLERS, "before") if self.before is not None else CONTROLLERS

    def latency(self, kms_ms: int) -> None:
        """One promotion at a time, create -> Succeeded seen on a watch, for every controller."""
        self.emu_http.put("/_emulator/faults", json={"*": {"latency_ms": kms_ms}} if kms_ms else {})
        n = 50 if self.quick else 200
        try:
            for kind in self.kinds():
                ns, names = self.fresh(f"lat-{kind}-{kms_ms}", n + 1)
                proc = self.controller(kind, ns, f"latency-{kind}-{kms_ms}")
                watcher = Watcher(self.plane, ns)
                times = []
                try:
                    # one not timed first: a controller's first request pays for connections and
                    # caches (the operator's watch can also meet "storage is (re)initializing")
                    self.plane.create(ns, "warm-up", spec(self.url, names.pop()))
                    watcher.wait(["warm-up"], 60)
                    for i, name in enumerate(names):
                        started = time.monotonic()
                        self.plane.create(ns, f"p{i}", spec(self.url, name))
                        watcher.wait([f"p{i}"], 60)
                        times.append(watcher.done[f"p{i}"] - started)
                finally:
                    watcher.stop()
                    proc.stop()
                self.samples[f"latency_{kind}_{kms_ms}ms"] = times
                for p in (50, 95, 99):
                    self.results[f"latency_{kms_ms}ms_p{p}_{kind}_s"] = round(pct(times, p), 4)
        finally:
            self.emu_http.put("/_emulator/faults", json={})
        for p in (50, 95, 99):
            ours = self.results[f"latency_{kms_ms}ms_p{p}_ours_s"]
            for kind in ("raw", "contract"):
                self.results[f"latency_{kms_ms}ms_p{p}_vs_{kind}"] = round(
                    ours / self.results[f"latency_{kms_ms}ms_p{p}_{kind}_s"], 2
                )

    def cost(self, count: int) -> None:
        """A burst of ``count`` for every controller: throughput, and per promotion the requests it
        caused (KMS by action, Kubernetes by verb/resource) and the CPU of it, kube-apiserver and etcd.
        A burst of creates with no controller is the baseline the API server's share is net of."""
        apiserver, etcd = self.plane.process("kube-apiserver"), self.plane.process("etcd")
        for kind in ("creates-only", *self.kinds()):
            ns, names = self.fresh(f"cost-{kind}", count)
            proc = None if kind == "creates-only" else self.controller(kind, ns, f"cost-{kind}")
            watcher = Watcher(self.plane, ns)
            self.emu_http.post("/_emulator/reset")
            mark = self.plane.audit_mark()
            cpu_before = [cpu(p) for p in (apiserver, etcd)] + [proc.cpu_s() if proc else 0.0]
            started = time.monotonic()
            try:
                self.create(ns, names, range(count))
                if proc is not None:
                    watcher.wait([f"p{i}" for i in range(count)], 1800)
                    elapsed = max(watcher.done.values()) - started
                    settle(proc)  # what the controller does after Succeeded (events, bookkeeping) counts too
                cpu_after = [cpu(p) for p in (apiserver, etcd)] + [proc.cpu_s() if proc else 0.0]
            finally:
                watcher.stop()
                if proc is not None:
                    proc.stop()
            if watcher.failed:
                raise RuntimeError(f"{kind}: {len(watcher.failed)} failed, e.g. {list(watcher.failed.items())[:2]}")
            ms = [(b - a) * 1000 / count for a, b in zip(cpu_before, cpu_after, strict=True)]
            r = self.results
            r[f"cost_{kind}_cpu_ms_apiserver"], r[f"cost_{kind}_cpu_ms_etcd"] = round(ms[0], 2), round(ms[1], 2)
            if proc is None:
                continue
            r[f"cost_{kind}_cpu_ms_controller"] = round(ms[2], 2)
            r[f"cost_{kind}_cpu_ms_total"] = round(sum(ms), 2)
            r[f"throughput_{kind}_per_s"] = round(count / elapsed, 2)
            requests = Counter(
                f"{e['verb']} {e['objectRef']['resource']}"
                + (f"/{e['objectRef']['subresource']}" if e["objectRef"].get("subresource") else "")
                for e in self.plane.audited(mark, ns)
                if e["verb"] not in ("list", "watch")
            )
            r[f"cost_{kind}_k8s"] = {k: round(v / count, 2) for k, v in sorted(requests.items())}
            r[f"cost_{kind}_k8s_writes"] = round(
                sum(v for k, v in requests.items() if k.split()[0] in ("create", "patch", "update")) / count, 2
            )
            calls = self.emu_http.get("/_emulator/calls").json()["calls"]
            r[f"cost_{kind}_kms"] = {k: round(v / count, 2) for k, v in sorted(calls.items())}
        r = self.results
        r["cost_burst"] = count
        for kind in self.kinds():
            net = r[f"cost_{kind}_cpu_ms_apiserver"] + r[f"cost_{kind}_cpu_ms_etcd"]
            net -= r["cost_creates-only_cpu_ms_apiserver"] + r["cost_creates-only_cpu_ms_etcd"]
            r[f"cost_{kind}_cpu_ms_control_plane_net"] = round(net, 2)
        for kind in ("raw", "contract"):
            r[f"cost_cpu_vs_{kind}"] = round(r["cost_ours_cpu_ms_total"] / r[f"cost_{kind}_cpu_ms_total"], 2)
            r[f"throughput_vs_{kind}"] = round(r["throughput_ours_per_s"] / r[f"throughput_{kind}_per_s"], 2)

    def complete_jobs(self, ns: str, stop: threading.Event) -> None:
        """Stands in for the Job controller and the node (this plane has neither): every Job created in
        ``ns`` is marked Complete. Its requests are the load generator's, not counted for the operator."""
        http, done = self.plane.client(), set()
        jobs = f"/apis/batch/v1/namespaces/{ns}/jobs"
        while not stop.wait(0.2):
            for job in http.get(jobs).json().get("items", []):
                name = job["metadata"]["name"]
                if name in done:
                    continue
                now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                conditions = [
                    {"type": t, "status": "True", "lastProbeTime": now, "lastTransitionTime": now}
                    for t in ("SuccessCriteriaMet", "Complete")
                ]
                status = {"startTime": now, "completionTime": now, "succeeded": 1, "conditions": conditions}
                http.patch(
                    f"{jobs}/{name}/status",
                    json={"status": status},
                    headers={"content-type": "application/merge-patch+json"},
                ).raise_for_status()
                done.add(name)

    def gate(self, count: int) -> None:
        """What a gate adds: a burst of ``count`` promotions gated by one smoke Job each (marked Complete
        at once by complete_jobs), against a burst of ``count`` ungated ones, on one operator each.
        Per promotion: Kubernetes and KMS requests, and the operator's CPU; and the ratio of the extra
        requests to the least a gate needs (GATE_FLOOR_*)."""
        r = self.results
        for kind in ("ungated", "gated"):
            ns, names = self.fresh(f"gate-{kind}", count)
            proc = self.controller("ours", ns, f"gate-{kind}")
            watcher = Watcher(self.plane, ns)
            stop = threading.Event()
            completer = threading.Thread(target=self.complete_jobs, args=(ns, stop), daemon=True)
            completer.start()
            self.emu_http.post("/_emulator/reset")
            mark = self.plane.audit_mark()
            cpu_before, started = proc.cpu_s(), time.monotonic()
            try:
                gate = {"gate": {"jobs": [SMOKE_JOB]}} if kind == "gated" else {}
                with ThreadPoolExecutor(8) as pool:
                    specs = [{**spec(self.url, name), **gate} for name in names]
                    list(pool.map(lambda i, ns=ns, specs=specs: self.plane.create(ns, f"p{i}", specs[i]), range(count)))
                watcher.wait([f"p{i}" for i in range(count)], 900)
                elapsed = max(watcher.done.values()) - started
                settle(proc)
                cpu_ms = (proc.cpu_s() - cpu_before) * 1000 / count
            finally:
                stop.set()
                watcher.stop()
                proc.stop()
            if watcher.failed:
                raise RuntimeError(
                    f"gate {kind}: {len(watcher.failed)} failed, e.g. {list(watcher.failed.items())[:2]}"
                )
            requests = Counter(
                f"{e['verb']} {e['objectRef']['resource']}"
                + (f"/{e['objectRef']['subresource']}" if e["objectRef"].get("subresource") else "")
                for e in self.plane.audited(mark, ns)
                if e["verb"] not in ("list", "watch")
            )
            calls = self.emu_http.get("/_emulator/calls").json()["calls"]
            r[f"gate_{kind}_k8s"] = {k: round(v / count, 2) for k, v in sorted(requests.items())}
            r[f"gate_{kind}_k8s_total"] = round(sum(requests.values()) / count, 2)
            r[f"gate_{kind}_kms_total"] = round(sum(calls.values()) / count, 2)
            r[f"gate_{kind}_cpu_ms"] = round(cpu_ms, 2)
            r[f"gate_{kind}_seconds"] = round(elapsed, 2)
        r["gate_burst"] = count
        extra_k8s = r["gate_gated_k8s_total"] - r["gate_ungated_k8s_total"]
        extra_kms = r["gate_gated_kms_total"] - r["gate_ungated_kms_total"]
        r["gate_extra_k8s"], r["gate_extra_kms"] = round(extra_k8s, 2), round(extra_kms, 2)
        r["gate_extra_k8s_vs_floor"] = round(extra_k8s / GATE_FLOOR_K8S, 2)
        r["gate_extra_kms_vs_floor"] = round(extra_kms / GATE_FLOOR_KMS, 2)
        r["gate_cpu_ratio"] = round(r["gate_gated_cpu_ms"] / r["gate_ungated_cpu_ms"], 2)

    def done_at_startup(self, present: int, kind: str = "ours") -> dict[str, Any]:
        """``present`` promotions already Succeeded, and one new one, when the operator starts: time to
        the new one Succeeded, RSS once settled, and every request it made about the done ones."""
        ns, names = self.fresh(f"done-{present}-{kind}", 1)

        def done(i: int) -> None:
            self.plane.create(ns, f"done-{i}", spec(self.url, f"bench/none-{i}"))
            self.plane.client().patch(
                self.plane.path(ns, f"done-{i}") + "/status",
                json={"status": {"phase": "Succeeded", "observedGeneration": 1, "requestId": f"req-{i}"}},
                headers={"content-type": "application/merge-patch+json"},
            ).raise_for_status()

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(done, range(present)))
        self.plane.create(ns, "first", spec(self.url, names[0]))
        watcher = Watcher(self.plane, ns)
        self.emu_http.post("/_emulator/reset")
        mark = self.plane.audit_mark()
        proc = None
        try:
            proc = self.controller(kind, ns, f"done-{present}-{kind}")
            watcher.wait(["first"], 120)
            startup = watcher.done["first"] - proc.started
            settle(proc)
            rss = proc.rss_mib()
        finally:
            watcher.stop()
            if proc is not None:
                proc.stop()
        made = [e for e in self.plane.audited(mark, ns) if e["verb"] not in ("list", "watch")]
        kms = self.emu_http.get("/_emulator/calls").json()["calls"]
        return {
            "startup_s": startup,
            "healthy_s": proc.healthy_s,
            "rss_mib": rss,
            # about the done ones: requests on the objects themselves (their Events are named after them)
            "k8s_requests_for_done": sum(1 for e in made if str(e["objectRef"].get("name", "")).startswith("done-")),
            "k8s_requests": len(made),  # all: the new one's Secret read, status writes and Event
            "kms_requests": sum(kms.values()),
        }

    def soak(self, total: int, window: int = 100) -> dict[str, Any]:
        """``total`` promotions created and deleted once Succeeded, at most ``window`` present at once;
        the operator's RSS sampled throughout."""
        ns, names = self.fresh("soak", total)
        proc = self.controller("ours", ns, "soak")
        watcher = Watcher(self.plane, ns)
        rss: list[tuple[float, int, float]] = []  # (seconds, promotions done, MiB)
        created = deleted = 0
        started = last_sample = time.monotonic()
        try:
            with ThreadPoolExecutor(8) as pool:
                while deleted < total:
                    finished = [f"p{i}" for i in range(deleted, created) if f"p{i}" in watcher.done]
                    # delete in creation order: what is done first is created first, near enough
                    ready = 0
                    for name in finished:
                        if name != f"p{deleted + ready}":
                            break
                        ready += 1
                    list(
                        pool.map(
                            lambda i: self.plane.http.delete(self.plane.path(ns, f"p{i}")),
                            range(deleted, deleted + ready),
                        )
                    )
                    deleted += ready
                    more = min(total, deleted + window) - created
                    list(
                        pool.map(
                            lambda i: self.plane.create(ns, f"p{i}", spec(self.url, names[i])),
                            range(created, created + more),
                        )
                    )
                    created += more
                    now = time.monotonic()
                    if now - last_sample >= 1.0:
                        rss.append((round(now - started, 1), len(watcher.done), round(proc.rss_mib(), 1)))
                        last_sample = now
                    if now - started > 3600:
                        raise TimeoutError(f"soak: {deleted}/{total} after an hour")
                    if not ready and not more:
                        time.sleep(0.05)
            rss.append((round(time.monotonic() - started, 1), len(watcher.done), round(proc.rss_mib(), 1)))
        finally:
            watcher.stop()
            proc.stop()
        if watcher.failed:
            raise RuntimeError(f"soak: {len(watcher.failed)} failed, e.g. {list(watcher.failed.items())[:2]}")
        warm = [m for _, d, m in rss if d >= total // 10]
        return {
            "samples": rss,
            "per_s": total / rss[-1][0],
            "rss_after_warmup_mib": warm[0],
            "rss_end_mib": rss[-1][2],
            "rss_max_mib": max(m for _, _, m in rss),
        }

    def throughput(self, count: int, label: str) -> dict[str, float]:
        """A burst of `count` for the operator; time until all Succeeded; RSS idle, peak and after."""
        ns, names = self.fresh(f"burst-{label}", count)
        op = self.controller("ours", ns, label)
        watcher = Watcher(self.plane, ns)
        idle = op.rss_mib()
        peak = idle
        started = time.monotonic()
        try:
            with ThreadPoolExecutor(8) as pool:
                futures = [pool.submit(self.plane.create, ns, f"p{i}", spec(self.url, names[i])) for i in range(count)]
                while len(watcher.done) < count:
                    peak = max(peak, op.rss_mib())
                    if time.monotonic() - started > 1800:
                        raise TimeoutError(f"{label}: {len(watcher.done)}/{count} done after 30 min")
                    time.sleep(0.2)
                for f in futures:
                    f.result()
            elapsed = max(watcher.done.values()) - started
            settle(op)
            after = op.rss_mib()
        finally:
            watcher.stop()
            op.stop()
        if watcher.failed:
            raise RuntimeError(f"{len(watcher.failed)} promotions failed, e.g. {list(watcher.failed.items())[:2]}")
        return {"per_s": count / elapsed, "rss_idle_mib": idle, "rss_peak_mib": peak, "rss_after_mib": after}

    def scheduled(self, count: int, quiet_s: float = 60.0) -> dict[str, float]:
        """``count`` promotions waiting for a window that stays closed: how long until all of them wait
        (reason OutsideWindow), then, over ``quiet_s`` seconds of waiting, the Kubernetes and KMS
        requests the operator made about them (the target is none) and the CPU it used."""
        ns, names = self.fresh(f"scheduled-{count}", count)
        op = operator(self.plane, self.url, ns, f"scheduled-{count}")
        apiserver, etcd = self.plane.process("kube-apiserver"), self.plane.process("etcd")
        started = time.monotonic()
        try:
            with ThreadPoolExecutor(8) as pool:
                list(
                    pool.map(
                        lambda i: self.plane.create(ns, f"p{i}", {**spec(self.url, names[i]), "schedule": FAR_WINDOW}),
                        range(count),
                    )
                )
            deadline = time.monotonic() + 900
            while True:
                items = self.plane.http.get(self.plane.path(ns)).json()["items"]
                reasons = Counter(
                    next(
                        (
                            c.get("reason")
                            for c in (o.get("status") or {}).get("conditions") or []
                            if c.get("type") == "Succeeded"
                        ),
                        None,
                    )
                    for o in items
                )
                if reasons.get("OutsideWindow", 0) == count:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"scheduled: not all waiting after 900 s: {dict(reasons)}")
                time.sleep(1.0)
            to_waiting = time.monotonic() - started
            settle(op, quiet_ms=20, timeout=120)
            self.emu_http.post("/_emulator/reset")
            mark = self.plane.audit_mark()
            cpu_before = [cpu(apiserver), cpu(etcd), op.cpu_s()]
            time.sleep(quiet_s)  # the measurement period itself, not a wait for something to happen
            cpu_after = [cpu(apiserver), cpu(etcd), op.cpu_s()]
            rss = op.rss_mib()
        finally:
            op.stop()
        made = [e for e in self.plane.audited(mark, ns) if e["verb"] not in ("list", "watch")]
        kms = self.emu_http.get("/_emulator/calls").json()["calls"]
        used = [after - before for before, after in zip(cpu_before, cpu_after, strict=True)]
        return {
            "to_waiting_s": to_waiting,
            "quiet_s": quiet_s,
            "k8s_requests": len(made),
            "kms_requests": sum(kms.values()),
            "cpu_pct_operator": used[2] / quiet_s * 100,
            "cpu_pct_apiserver": used[0] / quiet_s * 100,
            "cpu_pct_etcd": used[1] / quiet_s * 100,
            "rss_mib": rss,
        }

    def backlog(self, count: int, kind: str = "ours", drain: bool = True) -> dict[str, float]:
        """``count`` promotions created at once while the operator's KMS rate lets almost none through
        (0.2 requests/s): RSS idle, at its peak while they arrive, and once all of them wait queued.
        Then a second operator drains them at BACKLOG_RATE: its throughput against what that rate
        allows (rate / KMS requests per promotion, counted by the emulator), and RSS with all done."""
        ns, names = self.fresh(f"backlog-{count}-{kind}", count)
        source = self.before if kind == "before" else None
        op = operator(
            self.plane,
            self.url,
            ns,
            f"backlog-{count}-{kind}",
            "--kms-rate-limit",
            "0.2",
            "--kms-burst",
            "1",
            source=source,
        )
        idle = peak = op.rss_mib()
        try:
            with ThreadPoolExecutor(8) as pool:
                futures = [pool.submit(self.plane.create, ns, f"p{i}", spec(self.url, names[i])) for i in range(count)]
                while not all(f.done() for f in futures):
                    peak = max(peak, op.rss_mib())
                    time.sleep(0.1)
                for f in futures:
                    f.result()
            # every one seen and announced (or, before issue 21, taken by a handler): until the operator is quiet
            settle(op, quiet_ms=50, timeout=600)
            peak = max(peak, op.rss_mib())
            waiting = op.rss_mib()
        finally:
            op.stop()
        statuses = Counter(
            str((o.get("status") or {}).get("phase"))
            + "/"
            + str(
                next(
                    (
                        c.get("reason")
                        for c in (o.get("status") or {}).get("conditions") or []
                        if c.get("type") == "Succeeded"
                    ),
                    None,
                )
            )
            for o in self.plane.http.get(self.plane.path(ns)).json()["items"]
        )
        waiting_figures = {
            "rss_idle_mib": idle,
            "rss_peak_mib": peak,
            "rss_waiting_mib": waiting,
            "queued": statuses.get("Pending/Queued", 0),
        }
        print(f"backlog {count} {kind}: {waiting_figures}", file=sys.stderr, flush=True)
        if not drain:
            return waiting_figures
        # drain: a fresh operator at a realistic rate; its throughput against the rate's limit
        self.emu_http.post("/_emulator/reset")
        watcher = Watcher(self.plane, ns)
        drain = operator(
            self.plane,
            self.url,
            ns,
            f"drain-{count}-{kind}",
            "--kms-rate-limit",
            f"{BACKLOG_RATE:g}",
            "--kms-burst",
            "1",
            source=source,
        )
        started = time.monotonic()
        drain_peak = drain.rss_mib()
        try:
            while len(watcher.done) < count:
                drain_peak = max(drain_peak, drain.rss_mib())
                if time.monotonic() - started > 3600:
                    raise TimeoutError(f"backlog {count}: {len(watcher.done)} done after an hour")
                time.sleep(0.2)
            elapsed = max(watcher.done.values()) - started
            settle(drain)
            done_rss = drain.rss_mib()
        finally:
            watcher.stop()
            drain.stop()
        if watcher.failed:
            raise RuntimeError(f"backlog: {len(watcher.failed)} failed, e.g. {list(watcher.failed.items())[:2]}")
        kms = sum(self.emu_http.get("/_emulator/calls").json()["calls"].values())
        per_promotion = kms / count
        limit = BACKLOG_RATE / per_promotion
        return {
            **waiting_figures,
            "drain_per_s": count / elapsed,
            "drain_limit_per_s": limit,
            "drain_vs_limit": count / elapsed / limit,
            "kms_per_promotion": per_promotion,
            "drain_rss_peak_mib": drain_peak,
            "rss_done_mib": done_rss,
        }

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
        "--before",
        metavar="REV",
        help="also measure latency, cost and start-up with the operator of git revision REV (a before/after "
        "on the same machine, in the same run), e.g. 34f60ae, the last revision before issue 15's cuts",
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
    worktrees: list[Path] = []
    before = None
    if args.before:
        before = checkout(args.before)
        worktrees.append(before)
    bench = Bench(args.quick, before / "operator" if before else None)
    if args.only and old_samples.exists():
        bench.samples.update(json.loads(old_samples.read_text()))
    began = time.monotonic()

    def step(what: str) -> None:
        print(f"bench [{time.monotonic() - began:4.0f} s]: {what}", file=sys.stderr, flush=True)

    sizes = (100, 300) if args.quick else (100, 1000, 5000)
    try:
        if "fairness" in chosen:  # first: its operator watches every namespace, so the cluster must be empty
            stuck = 100 if args.quick else 500
            runs: list[tuple[str, Path | None]] = [("", None)]
            if args.fairness_before:
                worktrees.append(checkout(args.fairness_before))
                runs.append(("_before", worktrees[-1] / "operator"))
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
                step(f"latency at KMS latency {ms} ms: {', '.join(bench.kinds())}")
                bench.latency(ms)
        if "cost" in chosen:
            burst = 100 if args.quick else 500
            step(f"cost and throughput: a burst of {burst} for {', '.join(bench.kinds())}")
            bench.cost(burst)
        if "startup" in chosen:
            for present in (300, 1000) if args.quick else (1000, 5000):
                for kind in ("ours", "before") if before else ("ours",):
                    step(f"start-up with {present} done promotions present ({kind})")
                    d = bench.done_at_startup(present, kind)
                    for key, value in d.items():
                        r[f"done_{present}_{kind}_{key}"] = round(value, 3) if isinstance(value, float) else value
        if "scaling" in chosen:
            for n in sizes:
                step(f"scaling: a burst of {n}")
                s = bench.throughput(n, f"scale-{n}")
                for key, value in s.items():
                    r[f"scale_{n}_{key}"] = round(value, 2)
        if "backlog" in chosen:
            for n in (300, 1000) if args.quick else (1000, 5000, 10000):
                for kind in ("ours", "before") if before and n <= 5000 else ("ours",):
                    step(f"backlog: {n} at once, waiting; then drained at {BACKLOG_RATE:g} KMS requests/s ({kind})")
                    # the drain of 10,000 at the quota's rate takes 13 minutes; 5,000 show the throughput
                    b = bench.backlog(n, kind, drain=n <= 5000)
                    r["backlog_rate"] = BACKLOG_RATE
                    for key, value in b.items():
                        r[f"backlog_{n}_{kind}_{key}"] = round(value, 2)
        if "gate" in chosen:
            burst = 50 if args.quick else 200
            step(f"gate overhead: a burst of {burst} gated by one Job each, against {burst} ungated")
            bench.gate(burst)
        if "schedule" in chosen:
            waiting = 1000 if args.quick else 5000
            step(f"schedule: {waiting} promotions waiting for a window that stays closed")
            for key, value in bench.scheduled(waiting, 20.0 if args.quick else 60.0).items():
                r[f"schedule_{waiting}_{key}"] = round(value, 3)
            r["schedule_waiting"] = waiting
        if "soak" in chosen:
            total = 1000 if args.quick else 10000
            step(f"soak: {total} promotions created and deleted")
            soak = bench.soak(total)
            bench.samples["soak_rss"] = soak.pop("samples")
            r["soak_total"] = total
            for key, value in soak.items():
                r[f"soak_{key}"] = round(value, 2)
    finally:
        bench.close()
        for worktree in worktrees:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)], check=False)
    r.update(bench.results)
    if args.before:
        r["before_revision"] = args.before
    r["machine_cores"] = os.cpu_count()
    if not args.only:  # a partial run keeps the full run's duration (the report's header is about that run)
        r["bench_duration_s"] = round(time.monotonic() - began)
    r["quick"] = args.quick
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(r, indent=1, sort_keys=True) + "\n")
    (RESULTS / "samples.json").write_text(json.dumps(bench.samples) + "\n")
    report.write(r, bench.samples)
    print(json.dumps(r, indent=1, sort_keys=True))
    return 0


def checkout(revision: str) -> Path:
    """A throwaway git worktree of that revision (its operator/ is run for the "before")."""
    where = Path(tempfile.mkdtemp(prefix="secretstage-before-")) / "tree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), revision], check=True)
    return where


if __name__ == "__main__":
    sys.exit(main())
