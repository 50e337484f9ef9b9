"""SIGKILL the operator while KMS calls are in flight; the restarted operator finishes every promotion.

Delivery is at-least-once: a move that KMS applied after the operator died is seen by the next
attempt (from the intent record in status and a fresh read) and not sent again blindly.
"""

from __future__ import annotations

import signal
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.cluster import Cluster
from tests.harness import EmulatorProcess, OperatorProcess, Promotions, condition, spec_for
from tests.reliability.helpers import list_all, seed_many, unique, wait_all_terminal
from tests.support import wait_for

COUNT = 20


@pytest.mark.parametrize("auto_previous", [True, False], ids=["kms-moves-previous", "kms-leaves-previous"])
def test_sigkill_mid_call(
    cluster: Cluster,
    crd: None,
    emulator: EmulatorProcess,
    promotions: Promotions,
    ns: str,
    tmp_path: Path,
    figures: dict[str, Any],
    auto_previous: bool,
) -> None:
    names = [unique("crash") for _ in range(COUNT)]
    seed_many(emulator.url, names)
    emulator.set_auto_previous(auto_previous)
    op = OperatorProcess(
        tmp_path, cluster.kubeconfig, emulator.url, "--namespace", ns, "--kms-rate-limit", "100", name="crash-op"
    )
    try:
        emulator.set_faults({"UpdateSecretVersionStage": {"latency_ms": 3000}})
        for i, name in enumerate(names):
            promotions.create(ns, f"p{i}", spec_for(emulator, name, moveToVersion="v2"))
        # Kill while the update calls are inside the emulator (it applies them after the delay).
        wait_for(
            lambda: sum(
                1
                for i in range(COUNT)
                if (promotions.get(ns, f"p{i}").get("status") or {}).get("phase") == "InProgress"
            ),
            lambda n: n >= COUNT // 2,
            timeout=60,
            what="intent records before the kill",
        )
        op.stop(signal.SIGKILL)
        emulator.set_faults({})
        op.start()
        objs = wait_all_terminal(promotions, [ns], COUNT, timeout=180)
    finally:
        emulator.set_faults({})
        emulator.reset_switches()
        op.stop()
        emulator.wait_idle()  # the killed operator's moves held by the latency land now, not in the next test
    assert [o["status"]["phase"] for o in objs] == ["Succeeded"] * COUNT
    state = emulator.http.get("/_emulator/state").json()["secrets"]
    assert all(state[n] == {"v1": ["ACSPrevious"], "v2": ["ACSCurrent"]} for n in names), [state[n] for n in names][:3]
    for o in objs:
        assert o["status"]["stagesBefore"]["ACSCurrent"] == "v1"  # the intent record survived the crash
    reasons = {condition(o, "Succeeded")["reason"] for o in objs}
    update_calls = sum(emulator.calls_for(n).get("UpdateSecretVersionStage", 0) for n in names)
    figures[f"crash.{'auto' if auto_previous else 'manual'}_previous.update_calls_for_{COUNT}"] = update_calls
    figures[f"crash.{'auto' if auto_previous else 'manual'}_previous.reasons"] = sorted(reasons)


def test_applied_but_answer_lost(
    cluster: Cluster, crd: None, emulator: EmulatorProcess, promotions: Promotions, ns: str, tmp_path: Path
) -> None:
    """KMS applies the move, the answer is lost: the operator does not send it again; a read confirms it."""
    name = unique("lost")
    seed_many(emulator.url, [name])
    op = OperatorProcess(tmp_path, cluster.kubeconfig, emulator.url, "--namespace", ns, name="lost-op")
    try:
        emulator.set_faults({"UpdateSecretVersionStage": {"drop_after": 1.0}})
        promotions.create(ns, "p", spec_for(emulator, name, moveToVersion="v2"))
        obj = promotions.wait_phase(ns, "p", "Succeeded", "Failed", timeout=60)
    finally:
        emulator.set_faults({})
        op.stop()
    status = obj["status"]
    assert (status["phase"], condition(obj, "Succeeded")["reason"]) == ("Succeeded", "PromotedAnswerLost"), status
    fixup = 0 if emulator.switches["auto_previous"] else 1  # the ACSPrevious fix-up, a separate call
    assert emulator.calls_for(name)["UpdateSecretVersionStage"] == 1 + fixup  # never sent twice
    assert emulator.moves(name) == 1
    moves = [
        h["outcome"] for h in status["history"] if h["action"].startswith("UpdateSecretVersionStage move ACSCurrent")
    ]
    assert moves == ["SDK.ConnectionLost"]
    assert "requestId" not in status  # unknown, and the message says so; never a read's RequestId
    assert status["move"]["answer"] == "Lost"
    assert emulator.holder(name, "ACSCurrent") == "v2"


BURST = 1000
LEASE = {"duration": "6", "deadline": "4", "retry": "1"}


def test_sigkill_the_leader_three_times_during_a_burst(
    cluster: Cluster,
    crd: None,
    emulator: EmulatorProcess,
    promotions: Promotions,
    ns: str,
    tmp_path: Path,
    figures: dict[str, Any],
) -> None:
    """Issue 21: a burst of promotions, two replicas, and the leader SIGKILLed three times while the
    queue drains (each killed replica started again, as its pod would be). Every promotion ends
    Succeeded and every secret moved exactly once: what a dead leader had queued is found again from
    the objects, and what it had sent is settled from the journal, never sent twice."""
    lease = f"burst-{uuid.uuid4().hex[:6]}"
    args = [
        *("--namespace", ns, "--leader-election", "--lease-namespace", ns, "--lease-name", lease),
        *("--lease-duration", LEASE["duration"], "--renew-deadline", LEASE["deadline"]),
        *("--retry-period", LEASE["retry"], "--kms-rate-limit", "150", "--kms-burst", "10"),
    ]
    names = [unique("burst") for _ in range(BURST)]
    seed_many(emulator.url, names)
    coordination = k8s.CoordinationV1Api(cluster.api)

    def holder() -> str:
        try:
            return str(coordination.read_namespaced_lease(lease, ns).spec.holder_identity or "")
        except k8s.ApiException:
            return ""

    def succeeded() -> int:
        return sum(1 for o in list_all(promotions, ns) if (o.get("status") or {}).get("phase") == "Succeeded")

    replicas = {
        n: OperatorProcess(tmp_path, cluster.kubeconfig, emulator.url, *args, name=n, env={"POD_NAME": n})
        for n in ("burst-a", "burst-b")
    }
    kills: list[tuple[str, int]] = []
    try:
        with ThreadPoolExecutor(16) as pool:
            list(
                pool.map(
                    lambda i: promotions.create(ns, f"p{i}", spec_for(emulator, names[i], moveToVersion="v2")),
                    range(BURST),
                )
            )
        for round_ in range(1, 4):
            # a quarter more done between kills: each kill lands in the middle of the drain
            done = wait_for(succeeded, lambda n, r=round_: n >= BURST * r // 4, timeout=300, what=f"kill {round_}")
            leader = wait_for(holder, lambda h: h in replicas, timeout=60, what="a leader")
            replicas[leader].stop(signal.SIGKILL)
            kills.append((leader, done))
            replicas[leader].start()
        objs = wait_all_terminal(promotions, [ns], BURST, timeout=600)
    finally:
        for replica in replicas.values():
            replica.stop()
        emulator.wait_idle()
    assert [o["metadata"]["name"] for o in objs if o["status"]["phase"] != "Succeeded"] == []
    moved = {n: emulator.moves_for(n) for n in names}
    assert [n for n, count in moved.items() if count != 1] == [], "a secret moved other than exactly once"
    assert len(kills) == 3
    reasons = Counter(condition(o, "Succeeded")["reason"] for o in objs)
    figures["crash.leader_killed_3x.burst"] = BURST
    figures["crash.leader_killed_3x.kills_at_succeeded"] = [done for _, done in kills]
    figures["crash.leader_killed_3x.reasons"] = dict(reasons)
