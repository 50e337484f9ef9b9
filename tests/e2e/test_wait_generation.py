"""kubectl wait / kstatus read conditions per generation: an unhandled edit is not mistaken for done.

Its own module: no other operator may handle the namespace while the edit is left unhandled.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from tests import lua_support
from tests.cluster import Cluster
from tests.harness import EmulatorProcess, OperatorProcess, Promotions


def test_kubectl_wait_ignores_an_older_generation(
    cluster: Cluster, crd: None, emulator: EmulatorProcess, promotions: Promotions, ns: str, workdir: Path
) -> None:
    """Run alone (own operator on this namespace) so the edit stays unhandled while we look."""
    op = OperatorProcess(workdir, cluster.kubeconfig, emulator.url, "--namespace", ns, name="wait-op")
    secret = emulator.seed(f"ex/{uuid.uuid4().hex[:6]}", "v1", "v2", "v3")
    try:
        promotions.create(
            ns,
            "p",
            {
                "secretName": secret,
                "versionStage": "Canary",
                "moveToVersion": "v2",
                "endpoint": emulator.url,
                "credentials": {"secretRef": {"name": "kms-credentials"}},
            },
        )
        cluster.kubectl("wait", "-n", ns, "--for=condition=Succeeded", "ssp/p", "--timeout=60s")
    finally:
        op.stop()
    promotions.patch_spec(ns, "p", {"moveToVersion": "v3"})  # generation 2, nobody handling it
    stale = cluster.kubectl("wait", "-n", ns, "--for=condition=Succeeded", "ssp/p", "--timeout=3s", check=False)
    assert stale.returncode != 0
    assert lua_support.health(promotions.get(ns, "p"))["status"] == "Progressing"
    op.start()
    try:
        cluster.kubectl("wait", "-n", ns, "--for=condition=Succeeded", "ssp/p", "--timeout=60s")
        assert emulator.holder(secret, "Canary") == "v3"
    finally:
        op.stop()
