"""Restarting the operator never sends a finished generation to KMS again, nor writes to it.

Its own module: the clusterwide operator of test_operator.py must not be running alongside.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.cluster import Cluster
from tests.harness import EmulatorProcess, OperatorProcess, Promotions, spec_for


def unique() -> str:
    return f"restart/db-{uuid.uuid4().hex[:8]}"


def test_restart_does_not_call_kms_again(
    cluster: Cluster, crd: None, emulator: EmulatorProcess, promotions: Promotions, ns: str, workdir: Path
) -> None:
    op = OperatorProcess(workdir, cluster.kubeconfig, emulator.url, "--namespace", ns, name="restart-op")
    try:
        secrets = [emulator.seed(unique(), "v1", "v2") for _ in range(3)]
        for i, secret in enumerate(secrets):
            promotions.create(ns, f"p{i}", spec_for(emulator, secret, moveToVersion="v2"))
        for i in range(3):
            promotions.wait_phase(ns, f"p{i}", "Succeeded")
        before = {secret: emulator.calls_for(secret) for secret in secrets}
        versions = {f"p{i}": promotions.get(ns, f"p{i}")["metadata"]["resourceVersion"] for i in range(3)}
        # kopf posts Events after the handler: wait for each one's before counting
        events = {
            f"p{i}": len(promotions.wait_events(ns, f"p{i}", lambda seen: any(e.reason == "Promoted" for e in seen)))
            for i in range(3)
        }
        op.restart()
        # a new object after the restart proves the restarted operator is handling events
        after = emulator.seed(unique(), "v1", "v2")
        promotions.create(ns, "after", spec_for(emulator, after, moveToVersion="v2"))
        promotions.wait_phase(ns, "after", "Succeeded")
        # nothing done is sent again, not even a read; the new one: its reads and its move
        assert {secret: emulator.calls_for(secret) for secret in secrets} == before
        fixup = 0 if emulator.switches["auto_previous"] else 1  # a read after the ACSPrevious fix-up
        assert emulator.calls_for(after).get("ListSecretVersionIds", 0) == 2 + fixup
        assert emulator.moves(after) == 1
        assert "Promoted" in op.log_text()
        # nor any Kubernetes write for the done ones: no bookkeeping PATCH, no status, no Event
        assert {f"p{i}": promotions.get(ns, f"p{i}")["metadata"]["resourceVersion"] for i in range(3)} == versions
        assert {f"p{i}": len(promotions.events(ns, f"p{i}")) for i in range(3)} == events
    finally:
        op.stop()
