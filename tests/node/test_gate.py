"""Gated promotions on the real node (issue 23): consumers run as pods, read their credential from the
emulator (GetSecretValue by stage, signed) and log in to a stand-in database that accepts a chosen set
of passwords; the operator runs from its image, installed by the chart with ``gate.enabled``.

Each case has its own namespace, secret, database and consumers, and asserts only on them. The
consumer app, the smoke check and the database are tests/node/consumer/app.py, built from its
Dockerfile with hack/image.sh on the operator image. The timings printed (move -> verdict, verdict ->
rollback) are what the test saw, polling the promotion every 0.2 s.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from tests.cluster import Cluster
from tests.harness import (
    CHART,
    E2E_KEY_ID,
    E2E_KEY_SECRET,
    E2E_SECRET_VALUE,
    E2E_TOKEN,
    EmulatorProcess,
    Promotions,
    start_analysis_controller,
)
from tests.node.conftest import Image, import_image
from tests.support import ROOT, wait_for

RELEASE = RELEASE_NS = "secretstage-gated"
CASES = ("verified", "crashloop", "smoke", "hold", "analysis", "canary")
NAMESPACES = {case: f"gate-{case}" for case in CASES}
V1, V2 = E2E_SECRET_VALUE + "v1", E2E_SECRET_VALUE + "v2"  # what harness seed() writes after the first version
APP = "localhost/secretstage/consumer"
PROGRESS_DEADLINE = 60  # the consumers' own; the gate's timeout must not be shorter
CONSUMERS = 2
HEALTHZ = {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1}
SECURE = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass
class Gated:
    cluster: Cluster
    emulator: EmulatorProcess
    app_image: str
    promotions: Promotions
    timings: dict[str, str] = field(default_factory=dict)

    def kms_env(self, secret: str) -> list[dict[str, Any]]:
        def from_secret(key: str) -> dict[str, Any]:
            return {"secretKeyRef": {"name": "kms-credentials", "key": key}}

        return [
            {"name": "KMS_ENDPOINT", "value": self.emulator.url},
            {"name": "KMS_CA_FILE", "value": "/etc/kms-ca/ca.crt"},
            {"name": "SECRET_NAME", "value": secret},
            {"name": "ALIBABA_CLOUD_ACCESS_KEY_ID", "valueFrom": from_secret("AccessKeyId")},
            {"name": "ALIBABA_CLOUD_ACCESS_KEY_SECRET", "valueFrom": from_secret("AccessKeySecret")},
            {"name": "ALIBABA_CLOUD_SECURITY_TOKEN", "valueFrom": from_secret("SecurityToken")},
        ]

    def container(self, mode: str, secret: str, database: str) -> dict[str, Any]:
        return {
            "name": mode,
            "image": self.app_image,
            "imagePullPolicy": "Never",
            "args": [mode],
            "env": [*self.kms_env(secret), {"name": "DATABASE_URL", "value": database}],
            "volumeMounts": [{"name": "kms-ca", "mountPath": "/etc/kms-ca", "readOnly": True}],
            "securityContext": SECURE,
        }

    def deploy(self, ns: str, accepts: tuple[str, ...], secret: str) -> str:
        """The database (accepting ``accepts``) and CONSUMERS consumers of ``secret``, all ready on v1."""
        apps, core = k8s.AppsV1Api(self.cluster.api), k8s.CoreV1Api(self.cluster.api)
        db_labels = {"app": "database"}
        apps.create_namespaced_deployment(
            ns,
            {
                "metadata": {"name": "database"},
                "spec": {
                    "selector": {"matchLabels": db_labels},
                    "template": {
                        "metadata": {"labels": db_labels},
                        "spec": {
                            "containers": [
                                {
                                    "name": "database",
                                    "image": self.app_image,
                                    "imagePullPolicy": "Never",
                                    "args": ["database"],
                                    "env": [{"name": "ACCEPT_SHA256", "value": ",".join(map(sha256, accepts))}],
                                    "readinessProbe": {"tcpSocket": {"port": 8000}, "periodSeconds": 1},
                                    "securityContext": SECURE,
                                }
                            ]
                        },
                    },
                },
            },
        )
        service = core.create_namespaced_service(
            ns,
            {"metadata": {"name": "database"}, "spec": {"selector": db_labels, "ports": [{"port": 8000}]}},
        )
        database = f"http://{service.spec.cluster_ip}:8000"  # no cluster DNS on this node
        self.wait_available(ns, "database", 1)
        self.consumers(ns, "consumer", secret, database)
        return database

    def consumers(self, ns: str, name: str, secret: str, database: str, stage: str = "ACSCurrent") -> None:
        """CONSUMERS pods that read ``secret`` at ``stage`` at start and log in with it; ready when they did."""
        labels = {"app": name}
        container = self.container("consumer", secret, database)
        container["env"].append({"name": "VERSION_STAGE", "value": stage})
        k8s.AppsV1Api(self.cluster.api).create_namespaced_deployment(
            ns,
            {
                "metadata": {"name": name},
                "spec": {
                    "replicas": CONSUMERS,
                    "progressDeadlineSeconds": PROGRESS_DEADLINE,
                    # a new pod must be ready before an old one goes: a bad value never takes the service down
                    "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "terminationGracePeriodSeconds": 1,
                            "containers": [{**container, "readinessProbe": HEALTHZ}],
                            "volumes": [{"name": "kms-ca", "configMap": {"name": "kms-ca"}}],
                        },
                    },
                },
            },
        )
        self.wait_available(ns, name, CONSUMERS)

    def deployment(self, ns: str, name: str) -> dict[str, Any]:
        obj = k8s.AppsV1Api(self.cluster.api).read_namespaced_deployment(name, ns)
        return dict(self.cluster.api.sanitize_for_serialization(obj))

    def wait_available(self, ns: str, name: str, replicas: int, version: str | None = None) -> dict[str, Any]:
        def done(d: dict[str, Any]) -> bool:
            status, meta = d.get("status") or {}, d["metadata"]
            stamp = ((d["spec"]["template"].get("metadata") or {}).get("annotations") or {}).get(
                "secretstage.io/version"
            )
            return (
                status.get("observedGeneration") == meta["generation"]
                and status.get("updatedReplicas") == replicas
                and status.get("availableReplicas") == replicas
                and status.get("replicas") == replicas
                and (version is None or stamp == version)
            )

        return wait_for(
            lambda: self.deployment(ns, name),
            done,
            timeout=120,
            interval=0.5,
            what=f"{ns}/{name}: {replicas} available" + (f" on {version}" if version else ""),
        )

    def pod_logs(self, ns: str, selector: str) -> str:
        out = self.cluster.kubectl("-n", ns, "logs", "-l", selector, "--prefix", "--tail", "20", check=False)
        return out.stdout + out.stderr

    def follow(self, ns: str, name: str, timeout: float) -> tuple[dict[str, Any], float | None]:
        """Poll the promotion (every 0.1 s) until it ends: the object, and when (time.monotonic) its
        gate's verdict was first seen in status.gate (None if never)."""
        started, verdict_seen = time.monotonic(), None
        last: dict[str, Any] = {}
        while time.monotonic() - started < timeout:
            last = self.promotions.get(ns, name)
            status = last.get("status") or {}
            if verdict_seen is None and (status.get("gate") or {}).get("verdict") in ("Passed", "Failed"):
                verdict_seen = time.monotonic()
            if (
                status.get("phase") in ("Succeeded", "Failed")
                and status.get("observedGeneration") == last["metadata"]["generation"]
            ):
                return last, verdict_seen
            time.sleep(0.1)
        raise AssertionError(f"{ns}/{name} did not end in {timeout:.0f}s; last status: {last.get('status')}")

    def moves_at(self, secret: str, stage: str = "ACSCurrent") -> list[tuple[str, float]]:
        """Applied moves of ``stage`` of ``secret``: (to version, arrival on this machine's monotonic clock)."""
        return [
            (str(h.get("MoveToVersion")), float(h["at"]))
            for h in self.emulator.calls()["history"]
            if h["action"] == "UpdateSecretVersionStage"
            and h.get("SecretName") == secret
            and h.get("VersionStage") == stage
            and h.get("code") == "Success"
        ]

    def report(self, case: str, secret: str, verdict_seen: float | None, healthy_again: float | None = None) -> str:
        """Move -> verdict (the forward move's arrival at KMS to the verdict seen in status) and verdict ->
        rollback (to the move back's arrival at KMS), and -> consumers available on v1 again."""
        moves = self.moves_at(secret)
        forward = next(at for version, at in reversed(moves) if version == "v2")
        assert verdict_seen is not None, "the gate's verdict was never seen in status"
        parts = [f"move->verdict {verdict_seen - forward:.1f}s"]
        back = [at for version, at in moves if version == "v1" and at > forward]
        if back:
            # The verdict is journaled with the rollback's intent right before the move back is sent:
            # the two are closer than the 0.1 s poll can tell apart.
            delta = back[0] - verdict_seen
            parts.append(f"verdict->rollback {delta:.1f}s" if delta >= 0.1 else "verdict->rollback <0.1s")
        if healthy_again is not None and back:
            parts.append(f"rollback->consumers healthy on v1 {healthy_again - back[0]:.1f}s")
        self.timings[case] = ", ".join(parts)
        return self.timings[case]


def build_app(operator_image: Image, workdir: Path) -> tuple[str, Path]:
    """tests/node/consumer's Dockerfile on the operator image, with hack/image.sh: (tag, tarball)."""
    tag = "test-" + uuid.uuid4().hex[:8]
    build = subprocess.run(
        [
            *("bash", str(ROOT / "hack" / "image.sh"), "app"),
            *(str(ROOT / "tests" / "node" / "consumer"), tag, operator_image.tag),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "IMAGE_DIR": str(workdir)},
        timeout=900,
        check=False,
    )
    assert build.returncode == 0, build.stderr[-4000:]
    return tag, Path(build.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def gated(
    node_cluster: Cluster,
    operator_image: Image,
    tls_emulator: EmulatorProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Gated]:
    cluster, workdir = node_cluster, tmp_path_factory.mktemp("gated")
    tag, archive = build_app(operator_image, workdir)
    import_image(cluster, archive)
    core = k8s.CoreV1Api(cluster.api)
    ca_file = tls_emulator.ca_file  # type: ignore[attr-defined]
    for ns in (RELEASE_NS, *NAMESPACES.values()):
        core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=ns)))
        core.create_namespaced_secret(
            ns,
            k8s.V1Secret(
                metadata=k8s.V1ObjectMeta(name="kms-credentials"),
                string_data={"AccessKeyId": E2E_KEY_ID, "AccessKeySecret": E2E_KEY_SECRET, "SecurityToken": E2E_TOKEN},
            ),
        )
        cluster.kubectl("-n", ns, "create", "configmap", "kms-ca", f"--from-file=ca.crt={ca_file}")
    values = workdir / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "image": {"repository": operator_image.repository, "tag": operator_image.tag, "pullPolicy": "Never"},
                "watch": {"namespaces": list(NAMESPACES.values())},
                "operator": {"endpointAllow": [tls_emulator.url.replace(".", r"\.")], "logFormat": "text"},
                "kmsCABundle": {"configMapName": "kms-ca"},
                "afterSuccess": {"restartWorkloads": True},
                "gate": {"enabled": True},
            }
        )
    )
    cluster.helm("install", RELEASE, CHART, "-n", RELEASE_NS, "-f", str(values), "--wait", "--timeout", "3m")
    state = Gated(cluster, tls_emulator, f"{APP}:{tag}", Promotions(cluster))
    analysis_controller = start_analysis_controller(cluster, workdir)
    try:
        yield state
    finally:
        analysis_controller.stop()
        cluster.helm("uninstall", RELEASE, "-n", RELEASE_NS, "--wait", "--timeout", "2m", check=False)
        for ns in NAMESPACES.values():
            core.delete_namespace(ns)
        subprocess.run(
            ["bash", str(ROOT / "hack" / "image.sh"), "rm-app", "consumer", tag], capture_output=True, check=False
        )


def promotion(state: Gated, secret: str, gate: dict[str, Any], *, restart: bool = True) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "secretName": secret,
        "versionStage": "ACSCurrent",
        "moveToVersion": "v2",
        "precondition": {"currentVersion": "v1"},
        "endpoint": state.emulator.url,
        "credentials": {"secretRef": {"name": "kms-credentials"}},
        "gate": {"timeout": "3m", **gate},
    }
    if restart:
        spec["afterSuccess"] = {"restart": [{"kind": "Deployment", "name": "consumer"}]}
    return spec


def login_check(state: Gated, secret: str, database: str) -> dict[str, Any]:
    """The smoke Job of the gate: one read of ACSCurrent and one login, as a new pod would make them."""
    return {
        "name": "login-check",
        "template": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [state.container("smoke", secret, database)],
                    "volumes": [{"name": "kms-ca", "configMap": {"name": "kms-ca"}}],
                }
            }
        },
    }


def previous_on_v0(state: Gated, name: str) -> str:
    """A secret with ACSCurrent on v1, ACSPrevious on v0 and v2 unstaged: a rollback must restore both."""
    state.emulator.seed(name, "v0", "v1", "v2")
    state.emulator.move(name, "ACSCurrent", "v1", "v0")
    if state.emulator.holder(name, "ACSPrevious") != "v0":  # a KMS that does not move ACSPrevious itself
        state.emulator.move(name, "ACSPrevious", "v0", "")
    return name


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == kind)


def rollback_move(state: Gated, secret: str) -> dict[str, Any]:
    """The emulator's record of the move back to v1 (the last applied move of ACSCurrent, after v2)."""
    moves = [
        h
        for h in state.emulator.calls()["history"]
        if h["action"] == "UpdateSecretVersionStage"
        and h.get("SecretName") == secret
        and h.get("VersionStage") == "ACSCurrent"
        and h.get("code") == "Success"
    ]
    assert [m.get("MoveToVersion") for m in moves][-2:] == ["v2", "v1"], moves
    return moves[-1]


def from_example(state: Gated, secret: str, database: str) -> dict[str, Any]:
    """examples/gated/promotion.yaml's spec, with this test's endpoint, secret, and login-check container."""
    spec = yaml.safe_load((ROOT / "examples" / "gated" / "promotion.yaml").read_text())["spec"]
    assert spec["gate"]["consumers"] is True
    assert spec["afterSuccess"]["restart"] == [{"kind": "Deployment", "name": "consumer"}]
    spec.pop("regionId")
    spec.update(secretName=secret, endpoint=state.emulator.url)
    (job,) = spec["gate"]["jobs"]
    job["template"] = login_check(state, secret, database)["template"]
    return dict(spec)


def test_consumers_that_work_on_the_new_version_verify_it(gated: Gated, capsys: pytest.CaptureFixture[str]) -> None:
    """examples/gated/promotion.yaml, with both passwords accepted: Verified."""
    ns = NAMESPACES["verified"]
    secret = previous_on_v0(gated, f"node/gate-verified-{uuid.uuid4().hex[:6]}")
    set_up = gated.emulator.moves_for(secret)
    database = gated.deploy(ns, (V1, V2), secret)  # the dual-password window: both accepted
    gated.promotions.create(ns, "rotate", from_example(gated, secret, database))
    obj, verdict_seen = gated.follow(ns, "rotate", timeout=240)
    status = obj["status"]
    assert (status["phase"], condition(obj, "Succeeded")["reason"]) == ("Succeeded", "Verified"), status
    assert condition(obj, "Verified")["status"] == "True"
    assert status["gate"]["verdict"] == "Passed"
    stages = gated.emulator.placement(secret)
    assert "ACSCurrent" in stages["v2"], stages
    assert "ACSPrevious" in stages["v1"], stages
    (consumers,) = status["consumers"]
    assert (consumers["name"], consumers["version"], consumers["ready"]) == (
        "consumer",
        "v2",
        f"{CONSUMERS}/{CONSUMERS}",
    )
    gated.wait_available(ns, "consumer", CONSUMERS, version="v2")
    assert gated.emulator.moves_for(secret) == set_up + 1
    timing = gated.report("verified", secret, verdict_seen)
    with capsys.disabled():
        print(f"\ngate verified: {timing}")


def test_consumers_that_crash_on_the_new_version_roll_it_back(gated: Gated, capsys: pytest.CaptureFixture[str]) -> None:
    """The database does not know v2 yet: the restarted consumers crash-loop, the gate fails on their
    restarts, ACSCurrent goes back to v1, and the consumers restarted again run healthy on v1. The
    old pods serve throughout (maxUnavailable 0)."""
    ns = NAMESPACES["crashloop"]
    secret = previous_on_v0(gated, f"node/gate-crash-{uuid.uuid4().hex[:6]}")
    gated.deploy(ns, (V1,), secret)
    before = gated.emulator.placement(secret)
    gated.promotions.create(ns, "rotate", promotion(gated, secret, {"consumers": True, "maxRestarts": 1}))
    obj, verdict_seen = gated.follow(ns, "rotate", timeout=240)
    status = obj["status"]
    assert (status["phase"], condition(obj, "Succeeded")["reason"]) == ("Failed", "RolledBack"), status
    assert condition(obj, "Verified")["status"] == "False"
    assert "Deployment consumer" in status["gate"]["failedCheck"], status["gate"]
    assert "restarted" in status["gate"]["failedCheck"], status["gate"]
    assert "Deployment consumer" in condition(obj, "Succeeded")["message"]
    assert gated.emulator.placement(secret) == before  # ACSCurrent and ACSPrevious where they were
    assert status["rollback"]["requestId"] == rollback_move(gated, secret)["request_id"]
    gated.wait_available(ns, "consumer", CONSUMERS, version="v1")
    healthy_again = time.monotonic()
    assert "logged in with version v1" in gated.pod_logs(ns, "app=consumer")
    timing = gated.report("crashloop", secret, verdict_seen, healthy_again)
    with capsys.disabled():
        print(f"\ngate crash loop -> rolled back: {timing}")


def test_a_failing_smoke_job_rolls_back(gated: Gated, capsys: pytest.CaptureFixture[str]) -> None:
    """No restart (the consumers cache v1 and keep working): only the login-check Job, which reads v2 and
    is refused. Its last log lines are in the Event."""
    ns = NAMESPACES["smoke"]
    secret = previous_on_v0(gated, f"node/gate-smoke-{uuid.uuid4().hex[:6]}")
    database = gated.deploy(ns, (V1,), secret)
    before = gated.emulator.placement(secret)
    gate = {"jobs": [login_check(gated, secret, database)]}
    gated.promotions.create(ns, "rotate", promotion(gated, secret, gate, restart=False))
    obj, verdict_seen = gated.follow(ns, "rotate", timeout=240)
    status = obj["status"]
    assert (status["phase"], condition(obj, "Succeeded")["reason"]) == ("Failed", "RolledBack"), status
    assert "Job rotate-login-check-g1" in status["gate"]["failedCheck"], status["gate"]
    assert gated.emulator.placement(secret) == before
    assert status["rollback"]["requestId"] == rollback_move(gated, secret)["request_id"]
    gated.promotions.wait_events(
        ns, "rotate", lambda events: any("login-check with version v2: refused" in (e.message or "") for e in events)
    )
    job = k8s.BatchV1Api(gated.cluster.api).read_namespaced_job("rotate-login-check-g1", ns)
    owners = gated.cluster.api.sanitize_for_serialization(job)["metadata"]["ownerReferences"]
    assert [o["uid"] for o in owners] == [obj["metadata"]["uid"]]
    timing = gated.report("smoke", secret, verdict_seen)
    with capsys.disabled():
        print(f"\ngate smoke Job failed -> rolled back: {timing}")


def test_hold_leaves_the_new_version_and_a_rerun_verifies_it_after_the_fix(
    gated: Gated, capsys: pytest.CaptureFixture[str]
) -> None:
    ns = NAMESPACES["hold"]
    secret = previous_on_v0(gated, f"node/gate-hold-{uuid.uuid4().hex[:6]}")
    set_up = gated.emulator.moves_for(secret)
    gated.deploy(ns, (V1,), secret)
    gate = {"consumers": True, "maxRestarts": 1, "onFailure": "Hold"}
    gated.promotions.create(ns, "rotate", promotion(gated, secret, gate))
    obj, verdict_seen = gated.follow(ns, "rotate", timeout=240)
    status = obj["status"]
    assert (status["phase"], condition(obj, "Succeeded")["reason"]) == ("Failed", "GateFailed"), status
    assert status.get("rollback") is None
    assert gated.emulator.holder(secret, "ACSCurrent") == "v2"
    assert gated.emulator.moves_for(secret) == set_up + 1
    # the old pods still serve: the rollout is stuck, not down
    consumer = gated.deployment(ns, "consumer")
    assert consumer["status"]["availableReplicas"] == CONSUMERS, consumer["status"]
    held = gated.report("hold", secret, verdict_seen)

    # The cause fixed (the database now accepts v2 too), the gate re-run (what the Argo CD action
    # rerun-gate does: spec.retry + 1): consumers restarted afresh, gated again, Verified; no move.
    database = k8s.AppsV1Api(gated.cluster.api)
    env = [{"name": "ACCEPT_SHA256", "value": f"{sha256(V1)},{sha256(V2)}"}]
    database.patch_namespaced_deployment(
        "database", ns, {"spec": {"template": {"spec": {"containers": [{"name": "database", "env": env}]}}}}
    )
    gated.wait_available(ns, "database", 1)
    gated.promotions.patch_spec(ns, "rotate", {"retry": 1})
    obj, verdict_seen = gated.follow(ns, "rotate", timeout=240)
    status = obj["status"]
    assert (status["phase"], condition(obj, "Succeeded")["reason"]) == ("Succeeded", "Verified"), status
    assert obj["metadata"]["generation"] == 2
    assert gated.emulator.moves_for(secret) == set_up + 1  # gated again, not moved again
    assert status["stagesBefore"]["ACSCurrent"] == "v1"  # a later rollback would still go back to v1
    gated.wait_available(ns, "consumer", CONSUMERS, version="v2")
    assert "logged in with version v2" in gated.pod_logs(ns, "app=consumer")
    with capsys.disabled():
        print(f"\ngate held: {held}; re-run after the fix: Verified")


def test_an_analysis_with_the_job_provider_rolls_back(gated: Gated, capsys: pytest.CaptureFixture[str]) -> None:
    """spec.gate.analysis on the node: an AnalysisTemplate whose metric is Argo Rollouts' `job` provider
    (the login check, run by the analysis controller as a Job); the database knows only v1, so the
    metric fails, the AnalysisRun is Failed, and the stage goes back."""
    ns = NAMESPACES["analysis"]
    secret = previous_on_v0(gated, f"node/gate-analysis-{uuid.uuid4().hex[:6]}")
    database = gated.deploy(ns, (V1,), secret)
    before = gated.emulator.placement(secret)
    job_spec = login_check(gated, secret, database)["template"]
    template = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": "login"},
        "spec": {"metrics": [{"name": "login", "provider": {"job": {"spec": {**job_spec, "backoffLimit": 0}}}}]},
    }
    custom = k8s.CustomObjectsApi(gated.cluster.api)
    custom.create_namespaced_custom_object("argoproj.io", "v1alpha1", ns, "analysistemplates", template)
    gate = {"analysis": {"templates": [{"templateName": "login"}]}}
    gated.promotions.create(ns, "rotate", promotion(gated, secret, gate, restart=False))
    obj, verdict_seen = gated.follow(ns, "rotate", timeout=240)
    status = obj["status"]
    assert (status["phase"], condition(obj, "Succeeded")["reason"]) == ("Failed", "RolledBack"), status
    assert "AnalysisRun rotate-analysis-g1: Failed" in status["gate"]["failedCheck"], status["gate"]
    assert gated.emulator.placement(secret) == before
    run = custom.get_namespaced_custom_object("argoproj.io", "v1alpha1", ns, "analysisruns", "rotate-analysis-g1")
    assert run["status"]["phase"] == "Failed", run["status"]
    timing = gated.report("analysis", secret, verdict_seen)
    with capsys.disabled():
        print(f"\ngate analysis (job provider) failed -> rolled back: {timing}")


def test_a_canary_that_crashes_leaves_acscurrent_untouched(gated: Gated, capsys: pytest.CaptureFixture[str]) -> None:
    """spec.canary: the canary consumers read ACSCanary (kept on v1 until now); the canary promotion moves
    it to v2 and restarts them; they crash-loop (the database knows only v1), its gate fails, it moves
    ACSCanary back to v1 and restarts them healthy. The promotion fails CanaryFailed: ACSCurrent was
    never moved, its consumers never restarted."""
    ns = NAMESPACES["canary"]
    secret = previous_on_v0(gated, f"node/gate-canary-{uuid.uuid4().hex[:6]}")
    gated.emulator.move(secret, "ACSCanary", "v1", "")
    database = gated.deploy(ns, (V1,), secret)
    gated.consumers(ns, "consumer-canary", secret, database, stage="ACSCanary")
    before = gated.emulator.placement(secret)
    main = gated.deployment(ns, "consumer")["metadata"]["generation"]
    spec = promotion(gated, secret, {"consumers": True})
    spec["canary"] = {
        "versionStage": "ACSCanary",
        "restart": [{"kind": "Deployment", "name": "consumer-canary"}],
        "gate": {"consumers": True, "maxRestarts": 1, "timeout": "3m"},
    }
    gated.promotions.create(ns, "rotate", spec)
    obj, _ = gated.follow(ns, "rotate", timeout=240)
    succeeded = condition(obj, "Succeeded")
    assert (obj["status"]["phase"], succeeded["reason"]) == ("Failed", "CanaryFailed"), obj["status"]
    assert "canary rotate-canary-g1 failed: RolledBack" in succeeded["message"], succeeded["message"]
    assert "Deployment consumer-canary" in succeeded["message"]
    assert gated.emulator.placement(secret) == before  # ACSCanary back on v1, ACSCurrent never moved
    assert gated.emulator.moves_for(secret) == 1  # the set-up's
    assert gated.deployment(ns, "consumer")["metadata"]["generation"] == main  # never restarted
    gated.wait_available(ns, "consumer-canary", CONSUMERS, version="v1")
    child = gated.promotions.get(ns, "rotate-canary-g1")
    canary_moves = [at for version, at in gated.moves_at(secret, "ACSCanary")]
    timing = (
        f"canary moved -> canary rolled back {canary_moves[-1] - canary_moves[-2]:.1f}s "
        f"(canary verdict: {child['status']['gate']['failedCheck'][:80]})"
    )
    with capsys.disabled():
        print(f"\ngate canary failed, ACSCurrent untouched: {timing}")
