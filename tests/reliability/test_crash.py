"""SIGKILL the operator while KMS calls are in flight; the restarted operator finishes every promotion.

Delivery is at-least-once: a move that KMS applied after the operator died is seen by the next
attempt (from the intent record in status and a fresh read) and not sent again blindly.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import Cluster
from tests.harness import EmulatorProcess, OperatorProcess, Promotions, condition, spec_for
from tests.reliability.helpers import seed_many, unique, wait_all_terminal
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
