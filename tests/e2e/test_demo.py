"""`make demo` runs hack/demo.py; run it here against the test cluster so the README stays true."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.cluster import Cluster
from tests.harness import free_port
from tests.support import ROOT


def test_demo_runs_to_a_succeeded_promotion(cluster: Cluster) -> None:
    env = {**os.environ, "SECRETSTAGE_KUBECONFIG": cluster.kubeconfig, "SECRETSTAGE_DEMO_PORT": str(free_port())}
    result = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "demo.py")],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "phase: Succeeded" in result.stdout
    after = result.stdout.split("after the promotion:")[1]
    assert "ACSPending,ACSCurrent" in after
    assert "ACSPrevious" in after
