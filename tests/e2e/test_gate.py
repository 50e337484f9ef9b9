"""spec.gate on the real API server with the emulator, both KMS modes: the gate starts, creates its Job
(owned by the promotion), and when a check does not pass by the deadline the stage goes back.

There is no node here, so the smoke Job never runs and the gate can only time out: that is the path
these tests take on purpose. Checks that pass (consumers healthy on the new version, a Job that
succeeds) need pods: tests/node.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.harness import EmulatorProcess, OperatorProcess, Promotions, condition, spec_for
from tests.support import wait_for

SMOKE = {
    "name": "login-check",
    "template": {
        "template": {
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "check", "image": "registry.example/login-check:1", "command": ["/check"]}],
            }
        }
    },
}


def gated(emulator: EmulatorProcess, secret: str, on_failure: str) -> dict[str, Any]:
    return spec_for(
        emulator,
        secret,
        moveToVersion="v2",
        precondition={"currentVersion": "v1"},
        gate={"jobs": [SMOKE], "timeout": "30s", "onFailure": on_failure},
    )


def test_a_gate_that_does_not_pass_in_time_rolls_back(
    operator: OperatorProcess, emulator: EmulatorProcess, promotions: Promotions, ns: str
) -> None:
    rolled, held = f"gate-{uuid.uuid4().hex[:6]}", f"hold-{uuid.uuid4().hex[:6]}"
    for secret in (rolled, held):
        emulator.seed(secret, "v0", "v1", "v2")  # v1 current, v0 previous
    for secret in (rolled, held):
        emulator.move(secret, "ACSCurrent", "v1", "v0")
        if emulator.holder(secret, "ACSPrevious") != "v0":  # a KMS that does not move ACSPrevious itself
            emulator.move(secret, "ACSPrevious", "v0", "")
    set_up = emulator.moves_for(rolled)
    created = time.monotonic()
    promotions.create(ns, "rollback", gated(emulator, rolled, "Rollback"))
    promotions.create(ns, "hold", gated(emulator, held, "Hold"))

    verifying = promotions.wait_phase(ns, "rollback", "Verifying", timeout=30)
    assert emulator.holder(rolled, "ACSCurrent") == "v2"  # moved; now proving it
    assert condition(verifying, "Verified")["status"] == "Unknown"
    job = wait_for(
        lambda: _job(promotions, ns, "rollback-login-check-g1"), lambda j: j is not None, timeout=30, what="the Job"
    )
    assert job is not None
    owner = job.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.uid) == ("SecretStagePromotion", "rollback", verifying["metadata"]["uid"])
    assert job.spec.backoff_limit == 0

    done = promotions.wait_phase(ns, "rollback", "Succeeded", "Failed", timeout=90)
    took = time.monotonic() - created
    assert (done["status"]["phase"], condition(done, "Succeeded")["reason"]) == ("Failed", "RolledBack"), done["status"]
    assert 30 <= took < 90, took
    assert (
        "the gate timed out with checks still pending: Job rollback-login-check-g1"
        in condition(done, "Succeeded")["message"]
    )
    assert condition(done, "Verified")["status"] == "False"
    assert emulator.holder(rolled, "ACSCurrent") == "v1"
    assert emulator.holder(rolled, "ACSPrevious") == "v0"  # as stagesBefore had it
    assert emulator.moves_for(rolled) == set_up + 2  # the move, and the one move back
    back = [
        h
        for h in emulator.calls()["history"]
        if h["action"] == "UpdateSecretVersionStage"
        and h.get("SecretName") == rolled
        and h.get("MoveToVersion") == "v1"
    ]
    assert done["status"]["rollback"]["requestId"] == back[-1]["request_id"]
    assert done["status"]["requestId"] != done["status"]["rollback"]["requestId"]
    events = promotions.wait_events(ns, "rollback", lambda es: any(e.reason == "PromotionFailed" for e in es))
    assert any("RolledBack" in (e.message or "") or "gate failed" in (e.message or "") for e in events)

    kept = promotions.wait_phase(ns, "hold", "Succeeded", "Failed", timeout=60)
    assert (kept["status"]["phase"], condition(kept, "Succeeded")["reason"]) == ("Failed", "GateFailed")
    assert emulator.holder(held, "ACSCurrent") == "v2"  # Hold: left for a person
    assert emulator.moves_for(held) == set_up + 1

    # Re-run the held gate (spec.retry, what the Argo CD action rerun-gate does): generation 2 gates
    # what generation 1 moved (status.inherited survives the API server's schema), with a Job of its
    # own; it times out again, and nothing is moved.
    promotions.patch_spec(ns, "hold", {"retry": 1})
    rerun = promotions.wait_phase(ns, "hold", "Verifying", timeout=30, generation=2)
    assert rerun["status"]["inherited"] == {
        "generation": 1,
        "versionStage": "ACSCurrent",
        "version": "v2",
        "stagesBefore": {"ACSCurrent": "v1", "ACSPrevious": "v0"},
        "freshConsumers": True,
    }, rerun["status"]
    wait_for(lambda: _job(promotions, ns, "hold-login-check-g2"), lambda j: j is not None, timeout=30, what="Job g2")
    again = promotions.wait_phase(ns, "hold", "Failed", "Succeeded", timeout=60, generation=2)
    assert condition(again, "Succeeded")["reason"] == "GateFailed", again["status"]
    assert "hold-login-check-g2" in condition(again, "Succeeded")["message"]
    assert again["status"]["stagesBefore"] == {"ACSCurrent": "v1", "ACSPrevious": "v0"}
    assert emulator.moves_for(held) == set_up + 1


def _job(promotions: Promotions, namespace: str, name: str) -> k8s.V1Job | None:
    try:
        return k8s.BatchV1Api(promotions.api.api_client).read_namespaced_job(name, namespace)
    except k8s.ApiException as exc:
        if exc.status == 404:
            return None
        raise


@pytest.mark.parametrize(
    ("gate", "extra", "needle"),
    [
        ({}, {}, "spec.gate checks nothing"),
        ({"consumers": True}, {}, "spec.gate.consumers checks the workloads spec.afterSuccess.restart restarts"),
        ({"jobs": [SMOKE], "onFailure": "Retry"}, {}, "Unsupported value"),
        ({"jobs": [SMOKE], "timeout": "ten minutes"}, {}, "spec.gate.timeout"),
    ],
)
def test_bad_gates_are_refused_at_admission(
    emulator: EmulatorProcess, promotions: Promotions, ns: str, gate: dict[str, Any], extra: dict[str, Any], needle: str
) -> None:
    spec = {**spec_for(emulator, "never-moved", moveToVersion="v2", gate=gate), **extra}
    with pytest.raises(k8s.ApiException) as err:
        promotions.create(ns, f"bad-{uuid.uuid4().hex[:6]}", spec)
    assert err.value.status == 422
    assert needle in str(err.value.body)


def _deployment(name: str, **spec: Any) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "app", "image": "app:1"}]}},
            **spec,
        },
    }


def test_a_gate_that_cannot_give_a_fair_verdict_moves_nothing(
    operator: OperatorProcess, emulator: EmulatorProcess, promotions: Promotions, ns: str
) -> None:
    """A gate shorter than a consumer's progress deadline, and a consumer that does not exist: Failed,
    GateCannotRun, each naming its field and the fix, before any move (KMS untouched)."""
    apps = k8s.AppsV1Api(promotions.api.api_client)
    apps.create_namespaced_deployment(ns, _deployment("api"))  # progressDeadlineSeconds: Kubernetes' 600
    short, missing = f"short-{uuid.uuid4().hex[:6]}", f"missing-{uuid.uuid4().hex[:6]}"
    for secret in (short, missing):
        emulator.seed(secret, "v1", "v2")
    restart_api = {"restart": [{"kind": "Deployment", "name": "api"}]}
    restart_gone = {"restart": [{"kind": "Deployment", "name": "gone"}]}
    gate = {"consumers": True, "timeout": "2m"}
    promotions.create(ns, "short", spec_for(emulator, short, moveToVersion="v2", afterSuccess=restart_api, gate=gate))
    promotions.create(
        ns,
        "missing",
        spec_for(emulator, missing, moveToVersion="v2", afterSuccess=restart_gone, gate={**gate, "timeout": "10m"}),
    )
    for name, needle in (
        ("short", "spec.gate.timeout: 120s is shorter than Deployment api's progressDeadlineSeconds (600s)"),
        ("missing", "spec.afterSuccess.restart[0]: Deployment gone does not exist in this namespace"),
    ):
        obj = promotions.wait_phase(ns, name, "Failed", "Succeeded", timeout=30)
        succeeded = condition(obj, "Succeeded")
        assert (obj["status"]["phase"], succeeded["reason"]) == ("Failed", "GateCannotRun"), obj["status"]
        assert needle in succeeded["message"], succeeded["message"]
        assert "nothing was moved" in succeeded["message"]
    assert emulator.moves_for(short) == emulator.moves_for(missing) == 0
    assert emulator.holder(short, "ACSCurrent") == emulator.holder(missing, "ACSCurrent") == "v1"


def test_an_analysis_without_argo_rollouts_moves_nothing(
    operator: OperatorProcess, emulator: EmulatorProcess, promotions: Promotions, ns: str
) -> None:
    """No AnalysisRun CRD on this cluster (test_gate_analysis.py, which installs it, runs after this
    module): GateCannotRun naming spec.gate.analysis and the fix, before any move."""
    secret = emulator.seed(f"no-rollouts-{uuid.uuid4().hex[:6]}", "v1", "v2")
    analysis = {"templates": [{"templateName": "error-rate"}]}
    promotions.create(ns, "analysis", spec_for(emulator, secret, moveToVersion="v2", gate={"analysis": analysis}))
    done = promotions.wait_phase(ns, "analysis", "Failed", "Succeeded", timeout=30)
    succeeded = condition(done, "Succeeded")
    assert succeeded["reason"] == "GateCannotRun", done["status"]
    assert "spec.gate.analysis: Argo Rollouts is not installed" in succeeded["message"]
    assert emulator.moves_for(secret) == 0


def test_a_failing_canary_leaves_the_stage_untouched(
    operator: OperatorProcess, emulator: EmulatorProcess, promotions: Promotions, ns: str
) -> None:
    """spec.canary: the operator creates the canary promotion (owned by this one), which moves ACSCanary
    to v2 and gates it; its smoke Job never runs here, so its gate times out and it moves the label
    back; this promotion fails CanaryFailed and ACSCurrent is never moved."""
    secret = emulator.seed(f"canary-{uuid.uuid4().hex[:6]}", "v1", "v2")
    spec = spec_for(
        emulator,
        secret,
        moveToVersion="v2",
        precondition={"currentVersion": "v1"},
        gate={"jobs": [SMOKE]},
        canary={"versionStage": "ACSCanary", "gate": {"jobs": [SMOKE], "timeout": "30s"}},
    )
    parent = promotions.create(ns, "rotate", spec)
    waiting = promotions.wait_phase(ns, "rotate", "Verifying", timeout=30)
    assert condition(waiting, "Succeeded")["reason"] == "CanaryVerifying", waiting["status"]
    child = wait_for(
        lambda: promotions.get(ns, "rotate-canary-g1"), lambda c: bool(c.get("status")), timeout=30, what="canary"
    )
    assert child["metadata"]["ownerReferences"][0]["uid"] == parent["metadata"]["uid"]
    assert child["spec"]["versionStage"] == "ACSCanary"
    wait_for(lambda: emulator.holder(secret, "ACSCanary"), lambda v: v == "v2", timeout=30, what="ACSCanary on v2")
    assert emulator.holder(secret, "ACSCurrent") == "v1"
    done = promotions.wait_phase(ns, "rotate", "Failed", "Succeeded", timeout=90)
    succeeded = condition(done, "Succeeded")
    assert succeeded["reason"] == "CanaryFailed", done["status"]
    assert "canary rotate-canary-g1 failed: RolledBack" in succeeded["message"]
    assert "ACSCurrent was not moved" in succeeded["message"]
    assert emulator.holder(secret, "ACSCanary") is None  # moved back: it was on no version before
    assert emulator.holder(secret, "ACSCurrent") == "v1"
    assert emulator.moves_for(secret) == 0  # ACSCurrent never moved
    assert emulator.moves_for(secret, "ACSCanary") == 2  # there and back
