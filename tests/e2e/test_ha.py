"""Two operator replicas with the chart's HA RBAC: exactly one is active, and the other takes over."""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client as k8s

from tests.cluster import Cluster
from tests.harness import EmulatorProcess, OperatorProcess, Promotions, install_chart, spec_for
from tests.support import wait_for

LEASE = {"duration": 6, "deadline": 4, "retry": 1}


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[EmulatorProcess]:
    emu = EmulatorProcess(tmp_path)
    yield emu
    emu.stop()


def test_one_active_replica_and_failover(
    cluster: Cluster, crd: None, namespace: str, emulator: EmulatorProcess, tmp_path: Path
) -> None:
    watched = namespace
    release_ns = "t-" + uuid.uuid4().hex[:10]
    core = k8s.CoreV1Api(cluster.api)
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=release_ns)))
    release = install_chart(
        cluster,
        "ha",
        release_ns,
        "replicaCount=2",
        f"watch.namespaces={{{watched}}}",
        "rbac.aggregateToDefaultRoles=false",
    )
    name = f"{release}-secretstage-operator"
    kubeconfig = cluster.token_kubeconfig(release_ns, name, tmp_path / "sa.kubeconfig")
    args = [
        "--namespace",
        watched,
        "--leader-election",
        "--lease-namespace",
        release_ns,
        "--lease-name",
        name,
        "--lease-duration",
        str(LEASE["duration"]),
        "--renew-deadline",
        str(LEASE["deadline"]),
        "--retry-period",
        str(LEASE["retry"]),
    ]
    coordination = k8s.CoordinationV1Api(cluster.api)

    def holder() -> str | None:
        return coordination.read_namespaced_lease(name, release_ns).spec.holder_identity

    promotions = Promotions(cluster)
    promotions.credentials_secret(watched)
    first = OperatorProcess(tmp_path, kubeconfig, emulator.url, *args, name="replica-a", env={"POD_NAME": "replica-a"})
    wait_for(holder, lambda h: h == "replica-a", timeout=30, what="replica-a to take the Lease")
    second = OperatorProcess(tmp_path, kubeconfig, emulator.url, *args, name="replica-b", env={"POD_NAME": "replica-b"})
    results: dict[str, float] = {}
    try:
        secrets = [emulator.seed(f"ha/{uuid.uuid4().hex[:8]}", "v1", "v2") for _ in range(10)]
        for i, secret in enumerate(secrets):
            promotions.create(watched, f"p{i}", spec_for(emulator, secret, moveToVersion="v2"))
        for i in range(10):
            promotions.wait_phase(watched, f"p{i}", "Succeeded")
        assert [emulator.applied_for(s) for s in secrets] == [1] * 10  # each promotion sent to KMS exactly once
        assert "Promoted" not in second.log_text()
        assert holder() == "replica-a"

        # unclean: the active replica dies without releasing the Lease
        first.stop(signal.SIGKILL)
        started = time.monotonic()
        promotions.create(
            watched, "after-kill", spec_for(emulator, emulator.seed("ha/kill", "v1", "v2"), moveToVersion="v2")
        )
        promotions.wait_phase(watched, "after-kill", "Succeeded", timeout=60)
        results["failover_after_sigkill_s"] = time.monotonic() - started
        assert holder() == "replica-b"

        # clean: SIGTERM releases the Lease, so the standby takes over within a retry period or two
        first.start()
        wait_for(lambda: first.log_text(), lambda t: "standing by" in t, timeout=30, what="replica-a standby")
        second.stop(signal.SIGTERM)
        started = time.monotonic()
        promotions.create(
            watched, "after-term", spec_for(emulator, emulator.seed("ha/term", "v1", "v2"), moveToVersion="v2")
        )
        promotions.wait_phase(watched, "after-term", "Succeeded", timeout=60)
        results["failover_after_sigterm_s"] = time.monotonic() - started
        assert holder() == "replica-a"
        assert (emulator.applied_for("ha/kill"), emulator.applied_for("ha/term")) == (1, 1)
    finally:
        first.stop()
        second.stop()
        cluster.helm("uninstall", release, "-n", release_ns, check=False)
        core.delete_namespace(release_ns)
    # The bound is the wait_phase timeout above; the measured times are reported, not asserted.
    print("HA failover:", json.dumps({k: round(v, 2) for k, v in results.items()}))


def test_fenced_leader_never_overlaps_its_successor(
    cluster: Cluster, crd: None, namespace: str, emulator: EmulatorProcess, tmp_path: Path
) -> None:
    """Leaders paused (SIGSTOP) and killed in turn while promotions keep coming: in the emulator's
    request log, ordered by arrival, the calls of two replicas never interleave."""
    watched = namespace
    lease = f"fence-{uuid.uuid4().hex[:6]}"
    args = [
        "--namespace",
        watched,
        "--leader-election",
        "--lease-namespace",
        watched,
        "--lease-name",
        lease,
        "--lease-duration",
        str(LEASE["duration"]),
        "--renew-deadline",
        str(LEASE["deadline"]),
        "--retry-period",
        str(LEASE["retry"]),
    ]
    coordination = k8s.CoordinationV1Api(cluster.api)

    def holder() -> str | None:
        try:
            return coordination.read_namespaced_lease(lease, watched).spec.holder_identity
        except k8s.ApiException:
            return None

    promotions = Promotions(cluster)
    promotions.credentials_secret(watched)
    replicas = {
        n: OperatorProcess(tmp_path, cluster.kubeconfig, emulator.url, *args, name=n, env={"POD_NAME": n})
        for n in ("replica-a", "replica-b")
    }
    created: list[str] = []
    stop = threading.Event()

    def keep_promoting() -> None:  # one new promotion every 0.2 s, for the whole test
        i = 0
        while not stop.is_set():
            secret = emulator.seed(f"fence/{uuid.uuid4().hex[:8]}", "v1", "v2")
            promotions.create(watched, f"f{i}", spec_for(emulator, secret, moveToVersion="v2"))
            created.append(f"f{i}")
            i += 1
            stop.wait(0.2)

    producer = threading.Thread(target=keep_promoting, daemon=True)
    failovers: list[str] = []
    try:
        wait_for(holder, lambda h: h in replicas, timeout=30, what="a leader")
        producer.start()
        for how in ("pause", "kill", "pause", "kill"):
            leader = holder()
            assert leader is not None
            other = next(n for n in replicas if n != leader)
            wait_at_work(emulator, leader)
            process = replicas[leader].process
            assert process is not None
            if how == "pause":
                process.proc.send_signal(signal.SIGSTOP)
            else:
                replicas[leader].stop(signal.SIGKILL)
            wait_for(holder, lambda h, o=other: h == o, timeout=30, what=f"{other} to take over after {how}")
            wait_at_work(emulator, other)
            if how == "pause":
                process.proc.send_signal(signal.SIGCONT)  # it wakes up, finds itself fenced, exits
                wait_for(process.alive, lambda alive: not alive, timeout=30, what=f"{leader} to step down")
            replicas[leader].stop()
            replicas[leader].start()  # back as a standby, as Kubernetes would restart it
            failovers.append(f"{how} {leader} -> {other}")
        stop.set()
        producer.join(timeout=30)
        for name in created:
            promotions.wait_phase(watched, name, "Succeeded", timeout=60)
    finally:
        stop.set()
        for replica in replicas.values():
            replica.stop()
    calls = sorted((h for h in emulator.calls()["history"] if "replica-" in h["user_agent"]), key=lambda h: h["at"])
    turns = [calls[0]]
    for call in calls[1:]:
        if call["user_agent"] != turns[-1]["user_agent"]:
            turns.append(call)
    shown = [(round(t["at"] - calls[0]["at"], 3), t["user_agent"][-10:-1], t["action"]) for t in turns]
    # one change of hands per failover: any overlap would show as a replica coming back in between
    assert len(turns) == len(failovers) + 1, f"{failovers}; changes of hands (s, replica, action): {shown}"
    print("fenced failovers:", failovers, f"{len(calls)} KMS calls, {len(created)} promotions")


def wait_at_work(emulator: EmulatorProcess, replica: str) -> None:
    wait_for(
        emulator.calls,
        lambda calls: any(replica in h["user_agent"] for h in calls["history"][-50:]),
        timeout=30,
        what=f"{replica} making KMS calls",
    )
