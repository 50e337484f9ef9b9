"""The operator as users run it: the image built from the Dockerfile, started by a real kubelet, installed,
tested, upgraded and failed over with helm, on a one-node cluster on this machine.

The emulator runs on the host, on the node's address, over https (plain http is only allowed to
loopback, and a pod's loopback is its own); the chart trusts its certificate authority through
kmsCABundle. The steps follow docs/install.md ("On a cluster without a registry") and run in
order: install, promote, metrics, helm test, upgrade with a promotion in flight, failover, uninstall.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from tests.cluster import Cluster
from tests.harness import CHART, CRD_FILE, E2E_KEY_ID, E2E_KEY_SECRET, E2E_TOKEN, EmulatorProcess, Promotions
from tests.node.conftest import Image, import_image, retag
from tests.support import LOG_FILES, wait_for

RELEASE, RELEASE_NS, TENANT_NS = "secretstage-operator", "secretstage-system", "payments"
FULLNAME = "secretstage-operator"  # the chart's fullname when the release is named like the chart
RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted"}


class LogFollower:
    """A command's whole output (stdout and stderr) in a file, scanned for leaks with the other logs."""

    def __init__(self, args: list[str], path: Path) -> None:
        self.path = path
        LOG_FILES.append(path)
        with open(path, "wb") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)

    def log_text(self) -> str:
        return self.path.read_text(errors="replace")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@dataclass
class Release:
    cluster: Cluster
    emulator: EmulatorProcess
    image: Image
    values: Path
    workdir: Path
    promotions: Promotions

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.cluster.kubectl(*args, check=check)

    def pods(self) -> list[dict[str, Any]]:
        out = self.kubectl(
            "-n", RELEASE_NS, "get", "pods", "-l", "app.kubernetes.io/name=secretstage-operator", "-o", "json"
        )
        return [p for p in json.loads(out.stdout)["items"] if not p["metadata"].get("deletionTimestamp")]

    def ready_pods(self) -> list[dict[str, Any]]:
        return [
            p
            for p in self.pods()
            if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
        ]

    def promote(self, name: str, secret: str) -> dict[str, Any]:
        spec = {
            "secretName": secret,
            "versionStage": "ACSCurrent",
            "moveToVersion": "v2",
            "endpoint": self.emulator.url,
            "credentials": {"secretRef": {"name": "kms-credentials"}},
        }
        return self.promotions.create(TENANT_NS, name, spec)

    def follow_logs(self, pod: str) -> LogFollower:
        """``kubectl logs -f`` of one pod into the work directory, from its start on."""
        kubectl = [f"{self.cluster.bin_dir}/kubectl", "--kubeconfig", self.cluster.kubeconfig]
        return LogFollower([*kubectl, "-n", RELEASE_NS, "logs", "-f", "--timestamps", pod], self.workdir / f"{pod}.log")

    def lease_holder(self) -> str:
        lease = k8s.CoordinationV1Api(self.cluster.api).read_namespaced_lease(FULLNAME, RELEASE_NS)
        return str(lease.spec.holder_identity or "")


@pytest.fixture(scope="module")
def release(
    node_cluster: Cluster,
    operator_image: Image,
    tls_emulator: EmulatorProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Release]:
    cluster, workdir = node_cluster, tmp_path_factory.mktemp("release")
    core = k8s.CoreV1Api(cluster.api)
    for ns in (RELEASE_NS, TENANT_NS):
        core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=ns, labels=RESTRICTED)))
        core.create_namespaced_secret(
            ns,
            k8s.V1Secret(
                metadata=k8s.V1ObjectMeta(name="kms-credentials"),
                string_data={"AccessKeyId": E2E_KEY_ID, "AccessKeySecret": E2E_KEY_SECRET, "SecurityToken": E2E_TOKEN},
            ),
        )
    ca_file = tls_emulator.ca_file  # type: ignore[attr-defined]
    cluster.kubectl("-n", RELEASE_NS, "create", "configmap", "kms-ca", f"--from-file=ca.crt={ca_file}")
    helm_test_secret = tls_emulator.seed(f"node/helm-test-{uuid.uuid4().hex[:6]}", "v1", "v2")
    values = workdir / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "image": {"repository": operator_image.repository, "tag": operator_image.tag, "pullPolicy": "Never"},
                # namespaced, as per-team installs run: `helm test` must then go to the watched namespace
                "watch": {"namespaces": [TENANT_NS]},
                "operator": {"endpointAllow": [tls_emulator.url.replace(".", r"\.")], "logFormat": "text"},
                "kmsCABundle": {"configMapName": "kms-ca"},
                "tests": {
                    "secretName": helm_test_secret,
                    "moveToVersion": "v2",
                    "endpoint": tls_emulator.url,
                    "credentialsSecret": "kms-credentials",
                },
            }
        )
    )
    # docs/install.md: helm install ... -n secretstage-system -f values.yaml (the namespace exists: restricted)
    cluster.helm("install", RELEASE, CHART, "-n", RELEASE_NS, "-f", str(values), "--wait", "--timeout", "3m")
    rel = Release(cluster, tls_emulator, operator_image, values, workdir, Promotions(cluster))
    yield rel
    cluster.helm("uninstall", RELEASE, "-n", RELEASE_NS, check=False)


def test_the_pod_runs_as_the_chart_says(release: Release) -> None:
    (pod,) = release.ready_pods()
    name = pod["metadata"]["name"]
    container = pod["spec"]["containers"][0]
    assert container["image"] == f"{release.image.repository}:{release.image.tag}"
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 0
    # the kubelet ran the probes: Ready needs readiness, and liveness has had its first period
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    uid = release.kubectl(
        "-n", RELEASE_NS, "exec", name, "--", "python3", "-c", "import os; print(os.getuid(), os.getgid())"
    )
    assert uid.stdout.split() == ["65532", "65532"]
    write = release.kubectl(
        *("-n", RELEASE_NS, "exec", name, "--", "python3", "-c", "open('/probe', 'w')"), check=False
    )
    assert write.returncode != 0
    assert "Read-only file system" in write.stderr
    # logged in with its ServiceAccount (in-cluster), through the kubernetes Service
    logs = release.kubectl("-n", RELEASE_NS, "logs", name).stdout
    assert "starting:" in logs


def test_a_promotion_from_the_pod(release: Release) -> None:
    secret = release.emulator.seed(f"node/db-{uuid.uuid4().hex[:6]}", "v1", "v2")
    release.promote("first", secret)
    obj = release.promotions.wait_phase(TENANT_NS, "first", "Succeeded", "Failed", timeout=60)
    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    move = next(
        h
        for h in release.emulator.calls()["history"]
        if h["action"] == "UpdateSecretVersionStage" and h.get("SecretName") == secret
    )
    assert obj["status"]["requestId"] == move["request_id"]
    (pod,) = release.ready_pods()
    assert pod["metadata"]["name"] in move["user_agent"]  # the call came from the pod


def test_metrics_through_the_service(release: Release) -> None:
    service = f"{FULLNAME}-metrics"
    text = release.kubectl(
        "get", "--raw", f"/api/v1/namespaces/{RELEASE_NS}/services/{service}:metrics/proxy/metrics"
    ).stdout
    assert 'secretstage_promotions_total{outcome="Succeeded",reason="Promoted"}' in text


def test_helm_test_passes(release: Release) -> None:
    result = release.cluster.helm("test", RELEASE, "-n", RELEASE_NS, "--timeout", "3m", "--logs")
    assert "Phase:          Succeeded" in result.stdout
    assert "ok: move ACSCurrent from v1 to v2" in result.stdout


def test_upgrade_rolls_the_pod_without_losing_a_promotion_in_flight(release: Release) -> None:
    (old,) = release.ready_pods()
    new_image = retag(release.image, release.image.tag + "-b", release.workdir)
    import_image(release.cluster, new_image.archive)
    secret = release.emulator.seed(f"node/upgrade-{uuid.uuid4().hex[:6]}", "v1", "v2")
    release.emulator.set_faults({"UpdateSecretVersionStage": {"latency_ms": 4000}})
    try:
        release.promote("in-flight", secret)
        wait_for(
            lambda: release.promotions.get(TENANT_NS, "in-flight").get("status", {}),
            lambda s: s.get("reason") == "Promoting" or (s.get("move") or {}).get("answer") == "Pending",
            timeout=60,
            what="the move in flight",
        )
        release.cluster.helm(
            *("upgrade", RELEASE, CHART, "-n", RELEASE_NS, "-f", str(release.values)),
            *("--set", f"image.tag={new_image.tag}", "--wait", "--timeout", "3m"),
        )
    finally:
        release.emulator.set_faults({})
    obj = release.promotions.wait_phase(TENANT_NS, "in-flight", "Succeeded", "Failed", timeout=90)
    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    assert release.emulator.moves(secret) == 1
    (new,) = release.ready_pods()
    assert new["metadata"]["name"] != old["metadata"]["name"]
    assert new["spec"]["containers"][0]["image"].endswith(":" + new_image.tag)
    release.image = new_image


def test_two_replicas_fail_over(release: Release, capsys: pytest.CaptureFixture[str]) -> None:
    release.cluster.helm(
        *("upgrade", RELEASE, CHART, "-n", RELEASE_NS, "-f", str(release.values)),
        *("--set", f"image.tag={release.image.tag}", "--set", "replicaCount=2", "--wait", "--timeout", "3m"),
    )
    pods = wait_for(release.ready_pods, lambda p: len(p) == 2, timeout=120, what="two ready replicas")
    names = {p["metadata"]["name"] for p in pods}
    leader = wait_for(release.lease_holder, lambda h: h in names, timeout=60, what="a leader among the replicas")
    # Both replicas' logs, followed from now: a deleted pod's log is gone with it, and a slow
    # takeover is explained by what the leader did after SIGTERM and what the standby saw.
    followers = {name: release.follow_logs(name) for name in names}
    started = time.monotonic()
    release.kubectl("-n", RELEASE_NS, "delete", "pod", leader, "--wait=false")
    try:
        # The standby, or the pod the Deployment starts in the leader's place: whichever asks first
        # after the leader gives the Lease up (both are replicas of this release; checked below).
        successor = wait_for(
            release.lease_holder, lambda h: h not in ("", leader), timeout=60, what="another replica taking the Lease"
        )
    except AssertionError as exc:
        logs = "\n".join(f"--- {name}:\n{proc.log_text()[-6000:]}" for name, proc in followers.items())
        raise AssertionError(f"{exc}\nthe replicas' logs since the deletion:\n{logs}") from None
    finally:
        for proc in followers.values():
            proc.stop()
    took_over = time.monotonic() - started
    assert successor in {p["metadata"]["name"] for p in release.pods()}
    secret = release.emulator.seed(f"node/failover-{uuid.uuid4().hex[:6]}", "v1", "v2")
    release.promote("after-failover", secret)
    obj = release.promotions.wait_phase(TENANT_NS, "after-failover", "Succeeded", "Failed", timeout=60)
    served = time.monotonic() - started
    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    move = next(
        h
        for h in release.emulator.calls()["history"]
        if h.get("SecretName") == secret and h["action"] == "UpdateSecretVersionStage"
    )
    assert successor in move["user_agent"]
    with capsys.disabled():
        print(
            f"\nfailover: leader {leader} deleted; {successor} "
            f"({'the standby' if successor in names else 'its replacement'}) held the Lease after {took_over:.1f}s, "
            f"and a new promotion had Succeeded {served:.1f}s after the deletion"
        )


BACKLOG = 5000
BACKLOG_RATE = 40  # KMS requests/s: the chart's 10 raised to the shared gateway's quota; ~6 min for 5,000


def _restarts(pods: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Per pod: every restart of its container, with the reason of the last termination (OOMKilled...)."""
    seen = {}
    for pod in pods:
        for status in pod["status"].get("containerStatuses", []):
            last = (status.get("lastState") or {}).get("terminated") or {}
            seen[pod["metadata"]["name"]] = [last.get("reason", "?")] * int(status.get("restartCount", 0))
    return seen


def test_a_backlog_of_5000_at_the_chart_defaults(release: Release, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 21: 5,000 promotions created at once, two replicas with the chart's default resources
    (memory limit and all), the KMS rate raised to 40/s. All end Succeeded, each with exactly one
    move; no container restarts (an OOM kill is a restart); promotions that wait show Pending/Queued."""
    release.cluster.helm(
        *("upgrade", RELEASE, CHART, "-n", RELEASE_NS, "-f", str(release.values)),
        *("--set", f"image.tag={release.image.tag}", "--set", "replicaCount=2"),
        *("--set", f"operator.kmsRateLimit={BACKLOG_RATE}", "--set", f"operator.kmsBurst={BACKLOG_RATE}"),
        *("--wait", "--timeout", "3m"),
    )
    pods = wait_for(release.ready_pods, lambda p: len(p) == 2, timeout=120, what="two ready replicas")
    names = {p["metadata"]["name"] for p in pods}
    wait_for(release.lease_holder, lambda h: h in names, timeout=60, what="a leader among the replicas")
    before = _restarts(pods)
    limit = pods[0]["spec"]["containers"][0]["resources"]["limits"]["memory"]
    assert limit == yaml.safe_load((Path(CHART) / "values.yaml").read_text())["resources"]["limits"]["memory"]
    tag = uuid.uuid4().hex[:6]
    secrets = [f"node/backlog-{tag}-{i}" for i in range(BACKLOG)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda s: release.emulator.seed(s, "v1", "v2"), secrets))
    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: release.promote(f"backlog-{i}", secrets[i]), range(BACKLOG)))
    created = time.monotonic() - started
    seen: Counter[str] = Counter()
    most_queued = 0

    def phases() -> Counter[str]:
        nonlocal seen, most_queued
        items = release.promotions.api.list_namespaced_custom_object(
            "secretstage.io", "v1alpha1", TENANT_NS, "secretstagepromotions"
        )["items"]
        seen = Counter(
            f"{(o.get('status') or {}).get('phase', 'new')}" + ("/Queued" if "queue" in (o.get("status") or {}) else "")
            for o in items
            if o["metadata"]["name"].startswith("backlog-")
        )
        most_queued = max(most_queued, seen["Pending/Queued"])
        return seen

    try:
        wait_for(phases, lambda c: c["Succeeded"] == BACKLOG, timeout=1200, interval=5, what="all Succeeded")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last seen: {dict(seen)}; restarts: {_restarts(release.pods())}") from None
    elapsed = time.monotonic() - started
    assert most_queued > 0, "no promotion was ever seen waiting as Pending/Queued: the test measured no backlog"
    pods = release.pods()
    assert {p["metadata"]["name"] for p in pods} == names, "a pod was replaced during the backlog"
    assert _restarts(pods) == before == {name: [] for name in names}, f"restarts: {_restarts(pods)}"
    moves = {s: release.emulator.moves_for(s) for s in secrets}
    assert [s for s, n in moves.items() if n != 1] == [], "a secret moved other than exactly once"
    seeding = ("CreateSecret", "PutSecretValue")  # the test's own calls, not the operator's
    requests = sum(n for s in secrets for a, n in release.emulator.calls_for(s).items() if a not in seeding) / BACKLOG
    peaks = {}
    for name in names:
        read = release.kubectl(
            *("-n", RELEASE_NS, "exec", name, "--", "python3", "-c"),
            "print(next(line.split()[1] for line in open('/proc/1/status') if line.startswith('VmHWM')))",
            check=False,
        )  # the operator is the container's process 1: its peak RSS, in kB
        peaks[name] = f"{int(read.stdout) / 1024:.0f} MiB" if read.returncode == 0 else f"n/a ({read.stderr[-200:]})"
    allowed = BACKLOG_RATE / requests
    with capsys.disabled():
        print(
            f"\nbacklog: {BACKLOG} created in {created:.0f}s, all Succeeded after {elapsed:.0f}s: "
            f"{BACKLOG / elapsed:.1f}/s against {allowed:.1f}/s allowed by {BACKLOG_RATE} KMS requests/s at "
            f"{requests:.2f} per promotion ({BACKLOG / elapsed / allowed:.2f}x); at most {most_queued} seen Queued "
            f"at once; memory peak per pod (limit {limit}): {peaks}; no restarts"
        )


def test_uninstall_keeps_the_crd_and_the_promotions(release: Release) -> None:
    release.cluster.helm("uninstall", RELEASE, "-n", RELEASE_NS, "--wait", "--timeout", "2m")
    crd = yaml.safe_load(CRD_FILE.read_text())["metadata"]["name"]
    release.kubectl("get", "crd", crd)
    names = {
        o["metadata"]["name"]
        for o in release.promotions.api.list_namespaced_custom_object(
            "secretstage.io", "v1alpha1", TENANT_NS, "secretstagepromotions"
        )["items"]
    }
    assert {"first", "in-flight", "after-failover"} <= names
    wait_for(release.pods, lambda p: p == [], timeout=60, what="the operator pods gone")
