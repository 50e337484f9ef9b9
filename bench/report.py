"""docs/development/benchmarks.md and its plots, from a bench run (bench/run.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "development"
IMAGES = DOCS / "benchmarks"


LABELS = {"ours": "ours", "contract": "same-contract limit", "raw": "raw limit", "before": "before"}


def _plots(r: dict[str, Any], samples: dict[str, Any], sizes: tuple[int, ...]) -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, ms in zip(axes, (0, 50), strict=True):
        for kind, label in LABELS.items():
            if f"latency_{kind}_{ms}ms" not in samples:
                continue
            values = sorted(v * 1000 for v in samples[f"latency_{kind}_{ms}ms"])
            ax.plot(values, [(i + 1) / len(values) for i in range(len(values))], label=label)
        ax.set_title(f"create -> Succeeded, KMS latency {ms} ms")
        ax.set_xlabel("ms")
        ax.set_ylabel("fraction of promotions")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(IMAGES / "latency.png", dpi=100)
    plt.close(fig)

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    if sizes:
        left.plot(sizes, [r[f"scale_{n}_per_s"] for n in sizes], marker="o", label="ours")
    for kind in ("raw", "contract"):
        if f"throughput_{kind}_per_s" in r:
            left.axhline(r[f"throughput_{kind}_per_s"], linestyle="--", color="grey" if kind == "raw" else "black")
            left.annotate(LABELS[kind], (sizes[0] if sizes else 1, r[f"throughput_{kind}_per_s"]), fontsize=8)
    left.set_xscale("log")
    left.set_title(f"throughput vs burst size (limits: burst of {r.get('cost_burst', '?')})")
    left.set_xlabel("promotions in the burst")
    left.set_ylabel("promotions/s")
    left.grid(alpha=0.3)
    soak = samples.get("soak_rss") or []
    if soak:
        right.plot([d for _, d, _ in soak], [m for _, _, m in soak])
    right.set_title(f"operator RSS over the soak ({r.get('soak_total', '?')} created and deleted)")
    right.set_xlabel("promotions done")
    right.set_ylabel("MiB")
    right.set_ylim(bottom=0)
    right.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(IMAGES / "scaling.png", dpi=100)
    plt.close(fig)


def _seconds(value: float | None, timeout: float = 120) -> str:
    return f"not done after {timeout:.0f} s" if value is None else f"{value:.2f} s"


BACKLOG_HEADER = (
    "| waiting | operator | RSS idle | RSS peak while created | RSS all waiting | queued | drained/s | "
    "rate allows/s | ratio | RSS peak draining | RSS all done |\n|---|---|---|---|---|---|---|---|---|---|---|"
)


def _backlog(r: dict[str, Any]) -> str:
    sizes = sorted({int(k.split("_")[1]) for k in r if k.startswith("backlog_") and k.endswith("_ours_rss_peak_mib")})
    if not sizes:
        return ""
    rows = []
    for n in sizes:
        for kind in ("ours", "before"):
            k = f"backlog_{n}_{kind}_"
            if k + "rss_peak_mib" not in r:
                continue
            label = "this version" if kind == "ours" else f"before ({r.get('before_revision', '?')})"
            drained = " | ".join(
                str(r.get(k + f, "-"))
                for f in ("drain_per_s", "drain_limit_per_s", "drain_vs_limit", "drain_rss_peak_mib", "rss_done_mib")
            )
            rows.append(
                f"| {n:,} | {label} | {r[k + 'rss_idle_mib']} | {r[k + 'rss_peak_mib']} | {r[k + 'rss_waiting_mib']} | "
                f"{r[k + 'queued']:g} | {drained} |"
            )
    small, big = sizes[0], sizes[-1]
    peak = max(r[f"backlog_{n}_ours_rss_peak_mib"] for n in sizes)
    flat = (r[f"backlog_{big}_ours_rss_peak_mib"] / r[f"backlog_{small}_ours_rss_peak_mib"] - 1) * 100
    ratios = [r[f"backlog_{n}_ours_drain_vs_limit"] for n in sizes if f"backlog_{n}_ours_drain_vs_limit" in r]
    worst = min(ratios, default=0)
    return f"""## Memory under a backlog

Promotions created at once (8 threads) while the operator's KMS rate lets almost none through (0.2
requests/s): RSS idle, at its peak while they arrive, and once the operator is quiet with all of
them waiting ("queued": how many then showed Pending/Queued). Then a fresh operator drains them at
{r.get("backlog_rate", 40)} KMS requests/s, burst 1: promotions per second against what that rate
allows (rate / the KMS requests per promotion the emulator counted), its RSS peak while draining,
and RSS once all are done (MiB). The drain of 10,000 is not run: at the quota's rate it takes 13
minutes and shows nothing the drain of 5,000 does not.

{BACKLOG_HEADER}
{chr(10).join(rows)}

Targets: RSS flat from {small:,} to {big:,} waiting within 20 %: {flat:+.1f} % {_met(abs(flat) <= 20)};
peak under 150 MiB: {peak} MiB {_met(peak < 150)}; throughput within 10 % of the rate's limit: worst
ratio {worst} {_met(worst >= 0.9)}. The chart's memory request and limit (values.yaml) come from this table.

"""


def _gate(r: dict[str, Any]) -> str:
    if "gate_gated_k8s_total" not in r:
        return ""

    def row(kind: str) -> str:
        k = f"gate_{kind}_"
        return f"| {kind} | {r[k + 'k8s_total']} | {r[k + 'kms_total']} | {r[k + 'cpu_ms']} | {r[k + 'seconds']} |"

    gated = ", ".join(f"{k} {v}" for k, v in r["gate_gated_k8s"].items())
    return f"""## What a gate costs

A burst of {r["gate_burst"]} promotions gated by one smoke Job each, against {r["gate_burst"]} without a
gate, one operator each. This plane has no node: the bench marks each Job Complete as soon as it
sees it (its requests are not counted), so the figures are the gate's own work: create the Job,
look at it every 5 s until it is done, journal the gate, read KMS once after the verdict. Per
promotion:

| | Kubernetes requests | KMS requests | operator CPU (ms) | burst done after (s) |
|---|---|---|---|---|
{row("ungated")}
{row("gated")}

The gate adds {r["gate_extra_k8s"]} Kubernetes requests ({r["gate_extra_k8s_vs_floor"]}x the floor of 3: create
the Job, read it once done, journal the gate's start) and {r["gate_extra_kms"]} KMS requests
({r["gate_extra_kms_vs_floor"]}x the floor of 1: the read after the verdict); operator CPU
{r["gate_cpu_ratio"]}x an ungated promotion's. Gated, by verb and resource: {gated}. The time is the 5 s
look interval, not work.

"""


def _schedule(r: dict[str, Any]) -> str:
    n = r.get("schedule_waiting")
    if n is None:
        return ""
    k = f"schedule_{n}_"
    return f"""## Promotions waiting for a window

{n:,} promotions created with a maintenance window that stays closed (docs/change-control.md), one
operator watching their namespace. All of them showed `OutsideWindow` after
{_seconds(r[k + "to_waiting_s"])}, each having sent nothing to KMS and written its status once. Then, over
{r[k + "quiet_s"]:g} s of waiting:

| Kubernetes requests | KMS requests | operator CPU | kube-apiserver CPU | etcd CPU | operator RSS |
|---|---|---|---|---|---|
| {r[k + "k8s_requests"]} | {r[k + "kms_requests"]} | {r[k + "cpu_pct_operator"]:.2f} % \
| {r[k + "cpu_pct_apiserver"]:.2f} % | {r[k + "cpu_pct_etcd"]:.2f} % | {r[k + "rss_mib"]:.0f} MiB |

The target (and the physical limit) is 0 requests while they wait: a waiting promotion is a
delayed key in the operator's queue, due when its window opens, so thousands cost one timer and no
polling. CPU is a percentage of one core, averaged over the period.

"""


def _fairness(r: dict[str, Any]) -> str:
    if "fairness_behind_s" not in r:
        return ""
    rows = [
        f"| this version | {_seconds(r['fairness_alone_s'])} | {_seconds(r['fairness_behind_s'])} | "
        f"{r['fairness_ratio'] if r['fairness_ratio'] is not None else '-'} | {r['fairness_crowd_handled']} |"
    ]
    if "fairness_before_behind_s" in r:
        ratio = r["fairness_before_ratio"]
        rows.append(
            f"| before fair scheduling ({r['fairness_before_revision']}: kopf worker limit 100) | "
            f"{_seconds(r['fairness_before_alone_s'])} | {_seconds(r['fairness_before_behind_s'])} | "
            f"{ratio if ratio is not None else '-'} | {r['fairness_before_crowd_handled']} |"
        )
    return f"""## Fairness between namespaces

One namespace's promotion, alone and then behind {r["fairness_stuck"]} promotions of another namespace
that retry for ever (their credentials Secret does not exist), at a production-like KMS rate (20
requests/s, burst 1, 50 ms per request). **The yardstick is the same promotion alone** on the same
operator: ratio = behind / alone (1.0: the crowd costs the other tenant nothing).

| operator | alone | behind the crowd | ratio | crowd promotions taken up |
|---|---|---|---|---|
{chr(10).join(rows)}

The operator watches all namespaces (the chart's default: one kopf scheduler for all of them; with a
list of namespaces kopf keeps one per namespace and the old worker limit does not show). Before, the
crowd took all 100 of kopf's workers and the other namespace's promotion never started. What is
left of the ratio is the promotion's turn for rate tokens and threads among the crowd's retries. An
intermediate version, with KMS traffic already fair but the operator's Kubernetes calls on asyncio's
default executor (first come first served), took 15.7 s here (measured watching the two namespaces
by name); hence the fair gate on the operator's Kubernetes calls (now `secretstage.kubehttp`).

"""


REASONS = {
    "get secrets": "the credentials Secret, read on every attempt: a rotated key is used at once, never cached",
    "patch secretstagepromotions/status": "2 per promotion: the intent (journal, compare-and-set) before the "
    "move, so a crash or a lost answer never repeats it; the final status with the RequestId",
    "create events": "the Event users see in `kubectl describe` (Promoted, with the RequestId)",
    "patch secretstagepromotions": "kopf's own bookkeeping (last-handled-configuration, kopf-managed): gone",
    "ListSecretVersionIds": "2 per promotion: the read the plan and its precondition are made from, and the "
    "read back that verifies the move and finds ACSPrevious",
    "UpdateSecretVersionStage": "the move itself",
}


def _cost_rows(r: dict[str, Any], kinds: list[str], source: str) -> str:
    keys = sorted({k for kind in kinds for k in r.get(f"cost_{kind}_{source}", {})})
    return "\n".join(
        f"| {k} | " + " | ".join(str(r.get(f"cost_{kind}_{source}", {}).get(k, 0)) for kind in kinds) + f" | "
        f"{REASONS.get(k, '')} |"
        for k in keys
    )


def _met(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def _targets(r: dict[str, Any]) -> str:
    rows = []
    if "cost_cpu_vs_raw" in r:
        rows.append(
            f"| CPU per promotion (operator + apiserver + etcd) <= 2x raw | {r['cost_ours_cpu_ms_total']} ms vs "
            f"{r['cost_raw_cpu_ms_total']} ms: {r['cost_cpu_vs_raw']}x | {_met(r['cost_cpu_vs_raw'] <= 2)} |"
        )
        rows.append(
            f"| burst throughput >= 0.5x raw | {r['throughput_ours_per_s']}/s vs {r['throughput_raw_per_s']}/s: "
            f"{r['throughput_vs_raw']}x | {_met(r['throughput_vs_raw'] >= 0.5)} |"
        )
        rows.append(
            f"| burst throughput >= 1.0x same-contract | {r['throughput_ours_per_s']}/s vs "
            f"{r['throughput_contract_per_s']}/s: {r['throughput_vs_contract']}x | "
            f"{_met(r['throughput_vs_contract'] >= 1.0)} |"
        )
        rows.append(
            f"| Kubernetes writes per promotion <= 3 | {r['cost_ours_k8s_writes']} | "
            f"{_met(r['cost_ours_k8s_writes'] <= 3)} |"
        )
    if "latency_0ms_p50_vs_contract" in r:
        rows.append(
            f"| p50 at KMS 0 ms <= 1.5x same-contract | {r['latency_0ms_p50_ours_s'] * 1000:.1f} ms vs "
            f"{r['latency_0ms_p50_contract_s'] * 1000:.1f} ms: {r['latency_0ms_p50_vs_contract']}x | "
            f"{_met(r['latency_0ms_p50_vs_contract'] <= 1.5)} |"
        )
        rows.append(
            f"| p50 at KMS 0 ms <= 2x raw | {r['latency_0ms_p50_ours_s'] * 1000:.1f} ms vs "
            f"{r['latency_0ms_p50_raw_s'] * 1000:.1f} ms: {r['latency_0ms_p50_vs_raw']}x | "
            f"{_met(r['latency_0ms_p50_vs_raw'] <= 2)} |"
        )
    small, big = (300, 1000) if r.get("quick") else (1000, 5000)
    if f"done_{big}_ours_rss_mib" in r:
        rss_small, rss_big = r[f"done_{small}_ours_rss_mib"], r[f"done_{big}_ours_rss_mib"]
        growth = (rss_big / rss_small - 1) * 100
        rows.append(f"| RSS <= 100 MiB with {small:,} done | {rss_small} MiB | {_met(rss_small <= 100)} |")
        rows.append(
            f"| RSS growth {small:,} -> {big:,} done < 10 % | {rss_small} -> {rss_big} MiB: {growth:+.1f} % | "
            f"{_met(growth < 10)} |"
        )
        rows.append(
            f"| requests for done promotions at start-up = 0 ({big:,} present) | Kubernetes "
            f"{r[f'done_{big}_ours_k8s_requests_for_done']}, KMS {r[f'done_{big}_ours_kms_requests'] - 3} "
            f"(of {r[f'done_{big}_ours_kms_requests']}, 3 for the new one) | "
            f"{_met(r[f'done_{big}_ours_k8s_requests_for_done'] == 0 and r[f'done_{big}_ours_kms_requests'] <= 3)} |"
        )
        rows.append(
            f"| start-up to first Succeeded < 0.5 s ({big:,} done present) | {r[f'done_{big}_ours_startup_s']} s | "
            f"{_met(r[f'done_{big}_ours_startup_s'] < 0.5)} |"
        )
    if "soak_rss_end_mib" in r:
        growth = (r["soak_rss_end_mib"] / r["soak_rss_after_warmup_mib"] - 1) * 100
        rows.append(
            f"| soak of {r['soak_total']:,}: RSS flat after warm-up | {r['soak_rss_after_warmup_mib']} -> "
            f"{r['soak_rss_end_mib']} MiB ({growth:+.1f} %), max {r['soak_rss_max_mib']} | {_met(growth < 10)} |"
        )
    return "\n".join(rows)


def _before(r: dict[str, Any]) -> str:
    if "cost_before_cpu_ms_total" not in r:
        return ""
    small, big = (300, 1000) if r.get("quick") else (1000, 5000)
    rows = [
        (
            "p50 at KMS 0 ms",
            f"{r['latency_0ms_p50_before_s'] * 1000:.1f} ms",
            f"{r['latency_0ms_p50_ours_s'] * 1000:.1f} ms",
        ),
        (
            "p50 at KMS 50 ms",
            f"{r['latency_50ms_p50_before_s'] * 1000:.1f} ms",
            f"{r['latency_50ms_p50_ours_s'] * 1000:.1f} ms",
        ),
        ("burst throughput", f"{r['throughput_before_per_s']}/s", f"{r['throughput_ours_per_s']}/s"),
        (
            "operator CPU per promotion",
            f"{r['cost_before_cpu_ms_controller']} ms",
            f"{r['cost_ours_cpu_ms_controller']} ms",
        ),
        (
            "kube-apiserver CPU per promotion",
            f"{r['cost_before_cpu_ms_apiserver']} ms",
            f"{r['cost_ours_cpu_ms_apiserver']} ms",
        ),
        ("etcd CPU per promotion", f"{r['cost_before_cpu_ms_etcd']} ms", f"{r['cost_ours_cpu_ms_etcd']} ms"),
        ("total CPU per promotion", f"{r['cost_before_cpu_ms_total']} ms", f"{r['cost_ours_cpu_ms_total']} ms"),
        ("Kubernetes writes per promotion", str(r["cost_before_k8s_writes"]), str(r["cost_ours_k8s_writes"])),
    ]
    if f"done_{big}_before_startup_s" in r:
        rows += [
            (
                f"start-up to first Succeeded, {big:,} done present",
                f"{r[f'done_{big}_before_startup_s']} s",
                f"{r[f'done_{big}_ours_startup_s']} s",
            ),
            (
                f"RSS with {small:,} done",
                f"{r[f'done_{small}_before_rss_mib']} MiB",
                f"{r[f'done_{small}_ours_rss_mib']} MiB",
            ),
            (
                f"RSS with {big:,} done",
                f"{r[f'done_{big}_before_rss_mib']} MiB",
                f"{r[f'done_{big}_ours_rss_mib']} MiB",
            ),
            (
                f"requests for the {big:,} done at start-up",
                str(r[f"done_{big}_before_k8s_requests_for_done"]),
                str(r[f"done_{big}_ours_k8s_requests_for_done"]),
            ),
        ]
    table = "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)
    return f"""## What we changed and what it did

Measured in the same run, on the same control plane and emulator: "before" is the operator of
revision {r["before_revision"]} (`make bench BENCH_ARGS="--before {r["before_revision"]}"`).

| | before | after |
|---|---|---|
{table}

* **kopf's bookkeeping write is gone** (`secretstage.bookkeeping`): kopf's "last handled" state is read
  from our status (a generation whose status is final is handled) instead of a
  `last-handled-configuration` annotation PATCHed after every promotion, and its `kopf-managed` marker
  is no longer written: one write, one watch event to every watcher and about 1 KB per object less.
  A generation this process just finished is not started again from the stale body of its intent
  write (`RecentlyFinished`), which the annotation PATCH used to hide.
* **kopf's diff essence is the generation only**: kopf deep-copied each object four times per watch
  event to build and clean the essences it diffs; about a third of the CPU of a start with 5,000
  done promotions.
* **Every Kubernetes call of a promotion is async on one httpx client** (`secretstage.kubehttp`): the
  credentials read, token requests, the two status writes and afterSuccess's patches no longer take a
  worker thread each nor go through the generated client's validation and model layers; the
  official client's API classes are no longer loaded at all (import 2.2 s -> 1.3 s, 82 -> 70 MiB).
* **httpcore's per-request overheads**: `sniffio` is now a dependency (httpcore imports it on every
  request; missing, as anyio no longer pulls it in, each attempt searched the whole import path, a
  quarter of the operator's CPU), and the check httpcore makes of every idle pooled connection on
  every request is one `poll()` of its socket (`PolledStream`) instead of anyio building its table
  of attributes (up to half the operator's CPU in a burst). The yardsticks use the same HTTP stack.
* **Memory with many done promotions**: kopf lists in chunks of 1,000 and its per-object workers
  (each holding the last body it saw) exit 0.5 s after their last event instead of 5 s (0.1 s since
  version 0.2.0, when they only queue a key).

"""


def _why(r: dict[str, Any]) -> str:
    if "cost_contract_cpu_ms_total" not in r:
        return ""
    contract_cpu = r["cost_contract_cpu_ms_total"] / r["cost_raw_cpu_ms_total"]
    contract_rate = r["throughput_contract_per_s"] / r["throughput_raw_per_s"]
    contract_p50 = r["latency_0ms_p50_contract_s"] / r["latency_0ms_p50_raw_s"]
    small, big = (300, 1000) if r.get("quick") else (1000, 5000)
    lines = [
        f"* **The targets against the raw limit are out of reach of the contract itself.** With no framework "
        f"at all, our protocol's calls cost {contract_cpu:.2f}x the raw limit's CPU, reach "
        f"{contract_rate:.2f}x its throughput and {contract_p50:.2f}x its p50 (3 KMS requests and 4 Kubernetes "
        "requests against 1 + 1, each of them CPU on the same 2 cores). Meeting 2x CPU, 0.5x throughput or "
        "2x p50 would take dropping calls the promises rest on: the intent write (a crash or a lost answer "
        "never repeats a move), the read before (the plan and its precondition), the read back (verify, "
        "ACSPrevious), the fresh credentials read. We kept them.",
        f"* **Over the same-contract limit** the operator spends {r['cost_ours_cpu_ms_controller']} ms of its own "
        f"CPU per promotion against {r['cost_contract_cpu_ms_controller']} ms, and the API server "
        f"{r['cost_ours_cpu_ms_apiserver']} ms against {r['cost_contract_cpu_ms_apiserver']} ms for the same "
        "requests: kopf's per-event work (three watch events per promotion, each queued to a per-object "
        "worker, causes detected, filters run) and a status several times the yardstick's (four conditions "
        "for kstatus, Argo CD and `kubectl wait`, the history, the journal), which the API server decodes, "
        "merges, validates, stores and sends to every watcher twice. The burst plateau is that CPU: on "
        f"{r['machine_cores']} shared cores the operator, kube-apiserver, etcd and the emulator compete. It "
        "is not kopf's batching window (kopf 1.45 has none) nor a worker limit (there is none).",
    ]
    if f"done_{big}_ours_startup_s" in r:
        lines.append(
            f"* **Start-up**: {r.get(f'done_{big}_ours_healthy_s', '?')} s pass before `/healthz` answers, "
            "nearly all of it importing Python modules (kopf and its aiohttp, the kubernetes package that "
            "kopf and the kubeconfig loader import, httpx; 1.3 s on an idle machine, 2.2 s before this work), "
            f"so 0.5 s from process start is out of reach for a Python operator on kopf. The rest, to "
            f"{r[f'done_{big}_ours_startup_s']} s, is listing the {big:,} done promotions and passing each "
            "through kopf once (no request, no handler); the new one is listed after them."
        )
        growth = (r[f"done_{big}_ours_rss_mib"] - r[f"done_{small}_ours_rss_mib"]) / (big - small) * 1024
        lines.append(
            f"* **Memory with done promotions**: {growth:.1f} KiB more per done promotion, kopf's memory of "
            "each object it has seen (kept until the object is deleted), and the allocator's high-water mark "
            f"of the initial list; {small:,} -> {big:,} is {r[f'done_{big}_ours_rss_mib']} / "
            f"{r[f'done_{small}_ours_rss_mib']} MiB. Deleting done promotions (or fewer kept in Git) is what "
            "bounds it; the soak shows it flat when they are deleted."
        )
    return "\n".join(lines)


def write(r: dict[str, Any], samples: dict[str, Any]) -> None:
    sizes = tuple(sorted(int(k.split("_")[1]) for k in r if k.startswith("scale_") and k.endswith("_per_s")))
    _plots(r, samples, sizes)
    kinds = [k for k in ("ours", "contract", "raw", "before") if f"latency_0ms_p50_{k}_s" in r]
    latency = []
    for ms in (0, 50):
        for p in (50, 95, 99):
            cells = " | ".join(f"{r[f'latency_{ms}ms_p{p}_{k}_s'] * 1000:.1f} ms" for k in kinds)
            latency.append(
                f"| {ms} ms | p{p} | {cells} | {r[f'latency_{ms}ms_p{p}_vs_contract']} | "
                f"{r[f'latency_{ms}ms_p{p}_vs_raw']} |"
            )
    cost_kinds = [k for k in ("ours", "contract", "raw", "before") if f"cost_{k}_cpu_ms_total" in r]
    cpu_rows = "\n".join(
        f"| {LABELS[k]} | {r[f'throughput_{k}_per_s']} | {r[f'cost_{k}_cpu_ms_controller']} | "
        f"{r[f'cost_{k}_cpu_ms_apiserver']} | {r[f'cost_{k}_cpu_ms_etcd']} | {r[f'cost_{k}_cpu_ms_total']} | "
        f"{r[f'cost_{k}_cpu_ms_control_plane_net']} | {r[f'cost_{k}_k8s_writes']} |"
        for k in cost_kinds
    )
    header = " | ".join(LABELS[k] for k in cost_kinds)
    scale = "\n".join(
        f"| {n} | {r[f'scale_{n}_per_s']} | {r[f'scale_{n}_rss_idle_mib']} | {r[f'scale_{n}_rss_peak_mib']} | "
        f"{r[f'scale_{n}_rss_after_mib']} |"
        for n in sizes
    )
    small, big = (300, 1000) if r.get("quick") else (1000, 5000)
    done_rows = "\n".join(
        f"| {n:,} | {r.get(f'done_{n}_ours_healthy_s', '-')} s | {r[f'done_{n}_ours_startup_s']} s | "
        f"{r[f'done_{n}_ours_rss_mib']} MiB | {r[f'done_{n}_ours_k8s_requests_for_done']} | "
        f"{r.get(f'done_{n}_ours_k8s_requests', '-')} | {r[f'done_{n}_ours_kms_requests']} |"
        for n in (small, big)
        if f"done_{n}_ours_startup_s" in r
    )
    minutes = round(r.get("bench_duration_s", 0) / 60)
    text = f"""# Benchmarks

Generated by `make bench` (bench/run.py) on this project's CI machine kind ({r["machine_cores"]} cores,
everything on one machine: kube-apiserver + etcd, the KMS emulator, the controllers and the load
generator), in {minutes} minutes. {"A `--quick` run: smaller sizes." if r["quick"] else ""}

**Two yardsticks, timed like ours** (bench/yardstick.py): minimal controllers with no framework, each a
process of its own that watches the promotions of one namespace and handles each new one as a task
(at most {20} at a time, the operator's KMS concurrency cap), on one httpx client:

* **raw limit**: the least any controller must do: one UpdateSecretVersionStage and one status PATCH;
* **same-contract limit**: our protocol's calls in our order, no framework: read the credentials
  Secret, ListSecretVersionIds, the intent PATCH (compare-and-set), UpdateSecretVersionStage,
  ListSecretVersionIds (read back), the final PATCH (compare-and-set), one Event.

Every figure is from the create request to phase Succeeded seen on a watch, on the same control
plane and KMS emulator. Ratio = ours / yardstick (1.0: no overhead over it).

## Targets

| target | measured | |
|---|---|---|
{_targets(r)}

## Latency (one promotion at a time)

| KMS latency | percentile | {" | ".join(LABELS[k] for k in kinds)} | ours / same-contract | ours / raw |
|---|---|{"---|" * len(kinds)}---|---|
{chr(10).join(latency)}

![latency](benchmarks/latency.png)

## What a promotion costs (a burst of {r.get("cost_burst", "?")}, counted, not timed)

Per promotion. CPU from the processes' own counters over the burst (create to the last Succeeded,
and until the controller is idle); "control plane net" is kube-apiserver + etcd minus what creating
the same objects costs with no controller ({r.get("cost_creates-only_cpu_ms_apiserver", "?")} +
{r.get("cost_creates-only_cpu_ms_etcd", "?")} ms). The API server runs with an audit log (Metadata
level), which is how requests are counted; it costs every controller the same per request.

| | promotions/s | controller ms | kube-apiserver ms | etcd ms | total ms | control plane net ms | writes |
|---|---|---|---|---|---|---|---|
{cpu_rows}

Kubernetes requests per promotion, by verb and resource (audit log; list and watch left out: one
each per controller, not per promotion):

| request | {header} | why it exists |
|---|{"---|" * len(cost_kinds)}---|
{_cost_rows(r, cost_kinds, "k8s")}

KMS requests per promotion, by action (the emulator's counters):

| action | {header} | why it exists |
|---|{"---|" * len(cost_kinds)}---|
{_cost_rows(r, cost_kinds, "kms")}

## Start-up and memory with done promotions present

The promotions are already Succeeded when the operator starts, with one new one among them. Time
from process start to `/healthz` answering (Python imports, kopf's start) and to the new one
Succeeded; RSS once the operator is idle; the requests it made about the done ones (expected:
none), all its Kubernetes requests but its one list and watch (the new one's: Secret read, two
status writes, one Event) and its KMS requests (3: the new one's).

| done | start to /healthz | start to Succeeded | RSS | requests for done ones | Kubernetes requests | KMS requests |
|---|---|---|---|---|---|---|
{done_rows}

## Scaling and the soak

| promotions in the burst | promotions/s | RSS idle MiB | RSS peak MiB | RSS after MiB |
|---|---|---|---|---|
{scale}

Soak: {r.get("soak_total", "?")} promotions created and deleted, at most 100 present at once, at
{r.get("soak_per_s", "?")}/s; RSS {r.get("soak_rss_after_warmup_mib", "?")} MiB after warm-up (a tenth
done), {r.get("soak_rss_end_mib", "?")} MiB at the end, {r.get("soak_rss_max_mib", "?")} MiB at most.

![scaling](benchmarks/scaling.png)

## Where the time goes, and why targets are missed

{_why(r)}

{_before(r)}{_backlog(r)}{_gate(r)}{_schedule(r)}{_fairness(r)}
Raw numbers: `bench/results/latest.json`.
"""
    (DOCS / "benchmarks.md").write_text(text)


if __name__ == "__main__":  # regenerate docs from the last run without running it again
    import json

    results = json.loads((ROOT / "bench" / "results" / "latest.json").read_text())
    samples = json.loads((ROOT / "bench" / "results" / "samples.json").read_text())
    write(results, samples)
