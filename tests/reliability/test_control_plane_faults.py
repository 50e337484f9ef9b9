"""kube-apiserver stopped and etcd frozen mid-run: the operator reconnects by itself and finishes everything.

A dedicated control plane (own etcd and kube-apiserver), so the faults touch no other test.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import SCRIPT, Cluster, dedicated_control_plane
from tests.harness import EmulatorProcess, OperatorProcess, Promotions, install_crd, spec_for
from tests.reliability.helpers import seed_many, unique, wait_all_terminal
from tests.support import wait_for

OUTAGE_S = 6.0  # how long each fault lasts (the fault itself, not a wait for something)


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory, cluster: Cluster) -> Iterator[tuple[Cluster, dict[str, str]]]:
    with dedicated_control_plane(tmp_path_factory.mktemp("faulty-plane"), cluster.bin_dir) as (own, env):
        install_crd(own)
        yield own, env


def component(env: dict[str, str], action: str, name: str) -> None:
    subprocess.run(["bash", str(SCRIPT), action, name], env=env, timeout=60, check=True, capture_output=True)


def test_apiserver_restart_and_etcd_freeze(
    plane: tuple[Cluster, dict[str, str]], emulator: EmulatorProcess, tmp_path: Path, figures: dict[str, Any]
) -> None:
    own, env = plane
    promotions = Promotions(own)
    ns = "faults-" + uuid.uuid4().hex[:6]
    own.kubectl("create", "namespace", ns)
    promotions.credentials_secret(ns)
    names = [unique("cpfault") for _ in range(40)]
    seed_many(emulator.url, names)
    op = OperatorProcess(tmp_path, own.kubeconfig, emulator.url, "--namespace", ns, name="cpfault-op")
    try:
        emulator.set_faults({"UpdateSecretVersionStage": {"latency_ms": 1500}})
        for i, name in enumerate(names[:20]):
            promotions.create(ns, f"a{i}", spec_for(emulator, name, moveToVersion="v2"))
        component(env, "stop", "kube-apiserver")  # with updates in flight: their status patches must wait
        time.sleep(OUTAGE_S)
        component(env, "start", "kube-apiserver")
        back = time.monotonic()
        wait_for(
            lambda: own.kubectl("get", "--raw", "/readyz", check=False).stdout,
            lambda out: out == "ok",
            timeout=90,
            what="kube-apiserver ready again",
        )
        wait_all_terminal(promotions, [ns], 20, timeout=180)
        figures["control_plane.apiserver_outage_s"] = OUTAGE_S
        figures["control_plane.recovery_after_apiserver_back_s"] = round(time.monotonic() - back, 1)

        emulator.set_faults({})
        component(env, "pause", "etcd")
        time.sleep(OUTAGE_S / 2)
        component(env, "resume", "etcd")
        resumed = time.monotonic()
        for i, name in enumerate(names[20:]):
            promotions.create(ns, f"b{i}", spec_for(emulator, name, moveToVersion="v2"))
        objs = wait_all_terminal(promotions, [ns], 40, timeout=180)
        figures["control_plane.etcd_freeze_s"] = OUTAGE_S / 2
        figures["control_plane.20_promotions_after_etcd_back_s"] = round(time.monotonic() - resumed, 1)
    finally:
        emulator.set_faults({})
        op.stop()
    assert {o["status"]["phase"] for o in objs} == {"Succeeded"}
    state = emulator.http.get("/_emulator/state").json()["secrets"]
    assert all(state[n]["v2"] == ["ACSCurrent"] for n in names)
    assert op.process is None  # stopped by us, not crashed: it reconnected by itself
