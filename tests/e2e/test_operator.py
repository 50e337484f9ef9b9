"""The operator end to end: real kube-apiserver + etcd, the real operator process, the KMS emulator."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from kubernetes import watch as k8s_watch

from tests.cluster import Cluster
from tests.harness import (
    GROUP,
    PLURAL,
    VERSION,
    EmulatorProcess,
    OperatorProcess,
    Promotions,
    condition,
    run_check,
    spec_for,
)
from tests.support import wait_for


def unique(prefix: str = "app") -> str:
    return f"{prefix}/db-{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize("auto_previous", [True, False], ids=["kms-moves-previous", "kms-leaves-previous"])
def test_move_acscurrent_same_end_state_in_both_kms_behaviours(
    operator: OperatorProcess, emulator: EmulatorProcess, promotions: Promotions, ns: str, auto_previous: bool
) -> None:
    emulator.set_auto_previous(auto_previous)
    secret = emulator.seed(unique(), "v1", "v2", pending="ACSPending")
    try:
        promotions.create(ns, "rotate", spec_for(emulator, secret, moveToVersion="v2"))
        obj = promotions.wait_phase(ns, "rotate", "Succeeded", "Failed")
    finally:
        emulator.reset_switches()
    status = obj["status"]
    assert status["phase"] == "Succeeded", status
    assert emulator.placement(secret) in ({"v1": ["ACSPrevious"], "v2": ["ACSPending", "ACSCurrent"]},)
    assert status["stagesBefore"] == {"ACSCurrent": "v1", "ACSPending": "v2"}
    assert status["stagesAfter"] == {"ACSCurrent": "v2", "ACSPending": "v2", "ACSPrevious": "v1"}
    updates = [h for h in status["history"] if h["action"].startswith("UpdateSecretVersionStage")]
    # when KMS does not move ACSPrevious itself the operator does, and both RequestIds are recorded
    assert len(updates) == (1 if auto_previous else 2)
    assert status["requestId"] == updates[0]["requestId"]
    assert all(u["requestId"] in status["requestIds"] for u in updates)
    for type_ in ("Ready", "Succeeded"):
        c = condition(obj, type_)
        assert (c["status"], c["reason"], c["observedGeneration"]) == ("True", "Promoted", 1)
    promotions.wait_events(
        ns, "rotate", lambda events: any(e.reason == "Promoted" and status["requestId"] in e.message for e in events)
    )


@pytest.mark.parametrize(
    ("stage", "spec_fields", "expected"),
    [
        pytest.param("Canary", {"moveToVersion": "v2"}, {"v1": ["ACSCurrent"], "v2": ["Canary"]}, id="add-custom"),
        pytest.param(
            "Canary",
            {"moveToVersion": "v1", "removeFromVersion": "v2"},
            {"v1": ["ACSCurrent", "Canary"], "v2": []},
            id="move-custom",
        ),
        pytest.param("Canary", {"removeFromVersion": "v2"}, {"v1": ["ACSCurrent"], "v2": []}, id="remove-custom"),
    ],
)
def test_custom_stage_scenarios(
    operator: OperatorProcess,
    emulator: EmulatorProcess,
    promotions: Promotions,
    ns: str,
    stage: str,
    spec_fields: dict[str, Any],
    expected: dict[str, list[str]],
) -> None:
    secret = emulator.seed(unique(), "v1", "v2", pending="Canary")
    if spec_fields == {"moveToVersion": "v2"}:  # add: start with the label nowhere
        emulator.seed(secret + "-x", "v1")  # (unrelated secret: the label limit is per secret)
        secret = emulator.seed(unique(), "v1", "v2")
    promotions.create(ns, "p", spec_for(emulator, secret, versionStage=stage, **spec_fields))
    obj = promotions.wait_phase(ns, "p", "Succeeded", "Failed")
    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    assert emulator.placement(secret) == expected


def test_spec_update_starts_a_new_promotion(
    operator: OperatorProcess, emulator: EmulatorProcess, promotions: Promotions, ns: str
) -> None:
    secret = emulator.seed(unique(), "v1", "v2", "v3")
    promotions.create(ns, "p", spec_for(emulator, secret, moveToVersion="v2"))
    first = promotions.wait_phase(ns, "p", "Succeeded")
    promotions.patch_spec(ns, "p", {"moveToVersion": "v3"})
    second = promotions.wait_phase(ns, "p", "Succeeded", generation=2)
    assert second["status"]["requestId"] != first["status"]["requestId"]
    assert second["status"]["attempts"] == 1
    assert condition(second, "Succeeded")["observedGeneration"] == 2
    assert second["status"]["stagesBefore"]["ACSCurrent"] == "v2"
    assert emulator.holder(secret, "ACSCurrent") == "v3"


def test_permanent_kms_error_fails_with_code_and_request_id(
    operator: OperatorProcess, emulator: EmulatorProcess, promotions: Promotions, ns: str
) -> None:
    promotions.create(ns, "p", spec_for(emulator, "no/such-secret", moveToVersion="v2"))
    obj = promotions.wait_phase(ns, "p", "Failed")
    status = obj["status"]
    assert status["lastError"]["code"] == "Forbidden.ResourceNotFound"
    assert status["lastError"]["retryable"] is False
    assert len(status["lastError"]["requestId"]) == 36
    cond = condition(obj, "Succeeded")
    assert (cond["status"], cond["reason"]) == ("False", "Forbidden_ResourceNotFound")
    assert condition(obj, "Stalled")["status"] == "True"
    promotions.wait_events(
        ns, "p", lambda events: any(e.reason == "PromotionFailed" and e.type == "Warning" for e in events)
    )


def test_transient_faults_are_retried_and_visible(
    operator: OperatorProcess, emulator: EmulatorProcess, promotions: Promotions, ns: str
) -> None:
    secret = emulator.seed(unique(), "v1", "v2")
    emulator.set_faults({"UpdateSecretVersionStage": {"throttle_first": 4}})
    try:
        promotions.create(ns, "p", spec_for(emulator, secret, moveToVersion="v2"))
        obj = promotions.wait_phase(ns, "p", "Succeeded", timeout=90)
    finally:
        emulator.set_faults({})
    status = obj["status"]
    assert status["attempts"] >= 2
    assert "Rejected.Throttling" in [h["outcome"] for h in status["history"]]
    assert "lastError" not in status  # cleared by the success (merge patch with null)
    assert emulator.moves(secret) == 1


def test_missing_credentials_secret_waits_then_proceeds(
    operator: OperatorProcess, emulator: EmulatorProcess, promotions: Promotions, ns: str
) -> None:
    secret = emulator.seed(unique(), "v1", "v2")
    promotions.create(
        ns, "p", spec_for(emulator, secret, moveToVersion="v2", credentials={"secretRef": {"name": "later"}})
    )
    obj = promotions.wait_phase(ns, "p", "Pending")
    assert condition(obj, "Succeeded")["reason"] == "CredentialsNotFound"
    assert condition(obj, "Succeeded")["status"] == "Unknown"
    promotions.credentials_secret(ns, "later")
    obj = promotions.wait_phase(ns, "p", "Succeeded", timeout=90)
    assert emulator.holder(secret, "ACSCurrent") == "v2"


def test_precondition_failure(
    operator: OperatorProcess, emulator: EmulatorProcess, promotions: Promotions, ns: str
) -> None:
    secret = emulator.seed(unique(), "v1", "v2")
    promotions.create(ns, "p", spec_for(emulator, secret, moveToVersion="v2", precondition={"currentVersion": "v0"}))
    obj = promotions.wait_phase(ns, "p", "Failed")
    assert condition(obj, "Succeeded")["reason"] == "PreconditionFailed"
    assert "ACSCurrent is on version v1" in condition(obj, "Succeeded")["message"]
    assert emulator.applied_for(secret) == 0


def test_dry_run_changes_nothing(
    operator: OperatorProcess, emulator: EmulatorProcess, promotions: Promotions, ns: str
) -> None:
    secret = emulator.seed(unique(), "v1", "v2")
    promotions.create(ns, "p", spec_for(emulator, secret, moveToVersion="v2", dryRun=True))
    obj = promotions.wait_phase(ns, "p", "Succeeded")
    assert obj["status"]["plan"] == "move ACSCurrent from v1 to v2"
    assert condition(obj, "Succeeded")["reason"] == "DryRun"
    assert "requestId" not in obj["status"]  # nothing moved: the read's RequestId is in requestIds only
    assert obj["status"]["requestIds"]
    assert emulator.applied_for(secret) == 0
    assert emulator.holder(secret, "ACSCurrent") == "v1"


def test_endpoint_not_allowed_sends_nothing(
    operator: OperatorProcess, emulator: EmulatorProcess, promotions: Promotions, ns: str
) -> None:
    secret = unique()
    promotions.create(ns, "p", spec_for(emulator, secret, moveToVersion="v2", endpoint="http://127.0.0.2:9"))
    obj = promotions.wait_phase(ns, "p", "Failed")
    assert condition(obj, "Succeeded")["reason"] == "EndpointNotAllowed"
    assert emulator.calls_for(secret) == {}


def test_already_in_place_sends_no_update(
    operator: OperatorProcess, emulator: EmulatorProcess, promotions: Promotions, ns: str
) -> None:
    secret = emulator.seed(unique(), "v1", "v2")
    promotions.create(ns, "p", spec_for(emulator, secret, moveToVersion="v1"))
    obj = promotions.wait_phase(ns, "p", "Succeeded")
    assert condition(obj, "Succeeded")["reason"] == "AlreadyInPlace"
    assert emulator.applied_for(secret) == 0


def test_kubectl_wait_for_succeeded(
    cluster: Cluster, operator: OperatorProcess, emulator: EmulatorProcess, promotions: Promotions, ns: str
) -> None:
    secret = emulator.seed(unique(), "v1", "v2")
    promotions.create(ns, "p", spec_for(emulator, secret, moveToVersion="v2"))
    result = cluster.kubectl("wait", "-n", ns, "--for=condition=Succeeded", "ssp/p", "--timeout=60s")
    assert "condition met" in result.stdout
    promotions.create(ns, "bad", spec_for(emulator, "no/such", moveToVersion="v2"))
    promotions.wait_phase(ns, "bad", "Failed")
    failed = cluster.kubectl("wait", "-n", ns, "--for=condition=Succeeded", "ssp/bad", "--timeout=3s", check=False)
    assert failed.returncode != 0
    described = cluster.kubectl(
        "get", "-n", ns, "ssp/bad", "-o", "jsonpath={.status.conditions[?(@.type=='Succeeded')].reason}"
    )
    assert described.stdout == "Forbidden_ResourceNotFound"
    wide = cluster.kubectl("get", "-n", ns, "ssp/bad", "-o", "wide").stdout.splitlines()
    assert "REASON" in wide[0].split()
    assert "Forbidden_ResourceNotFound" in wide[1]
    assert "REASON" not in cluster.kubectl("get", "-n", ns, "ssp/bad").stdout  # priority 1: -o wide only


def metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        metric_name, _, rest = key.partition("{")
        if metric_name == name and ",".join(sorted(rest.rstrip("}").split(","))) == wanted:
            return float(value)
    return 0.0


def test_metrics_move(operator: OperatorProcess, emulator: EmulatorProcess, promotions: Promotions, ns: str) -> None:
    before = operator.metrics()
    secret = emulator.seed(unique(), "v1", "v2")
    promotions.create(ns, "m", spec_for(emulator, secret, moveToVersion="v2"))
    promotions.wait_phase(ns, "m", "Succeeded")
    promotions.create(ns, "m-bad", spec_for(emulator, "no/such", moveToVersion="v2"))
    promotions.wait_phase(ns, "m-bad", "Failed")
    after = operator.metrics()

    def delta(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert delta("secretstage_promotions_total", outcome="Succeeded", reason="Promoted") == 1
    assert delta("secretstage_promotions_total", outcome="Failed", reason="Forbidden_ResourceNotFound") == 1
    # A KMS that leaves ACSPrevious alone costs one more update (the fix-up) and one more read.
    fixup = 0 if emulator.switches["auto_previous"] else 1
    assert delta("secretstage_kms_requests_total", action="UpdateSecretVersionStage", code="Success") == 1 + fixup
    assert delta("secretstage_kms_requests_total", action="ListSecretVersionIds", code="Success") == 2 + fixup
    assert (
        delta("secretstage_kms_requests_total", action="ListSecretVersionIds", code="Forbidden.ResourceNotFound") == 1
    )
    assert delta("secretstage_kms_request_duration_seconds_count", action="UpdateSecretVersionStage") == 1 + fixup
    assert metric(after, "secretstage_promotions_in_flight") == 0


def test_operator_identity_refused_unless_allowed(
    operator: OperatorProcess, emulator: EmulatorProcess, promotions: Promotions, ns: str
) -> None:
    promotions.create(ns, "p", spec_for(emulator, "x", moveToVersion="v2", credentials={"operatorIdentity": True}))
    obj = promotions.wait_phase(ns, "p", "Failed")
    assert condition(obj, "Succeeded")["reason"] == "OperatorIdentityNotAllowed"


def test_check_command_plans_and_changes_nothing(
    cluster: Cluster, operator: OperatorProcess, emulator: EmulatorProcess, promotions: Promotions, ns: str
) -> None:
    """`secretstage check` (what the chart's `helm test` runs): a dry run through the operator, then cleaned up."""
    secret = emulator.seed(f"check/{uuid.uuid4().hex[:6]}", "v1", "v2")
    common = ["-n", ns, "--secret-name", secret, "--endpoint", emulator.url, "--credentials-secret"]
    ok = run_check(cluster, *common, "kms-credentials", "--move-to-version", "v2", "--timeout", "60")
    assert ok.returncode == 0, ok.stderr
    assert "ok: move ACSCurrent from v1 to v2" in ok.stdout, ok.stdout
    assert emulator.holder(secret, "ACSCurrent") == "v1"  # planned, not done
    assert promotions.api.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"] == []
    bad = run_check(cluster, *common, "kms-credentials", "--move-to-version", "v9", "--timeout", "60")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "the dry run failed: VersionNotFound" in bad.stderr
    # no such Secret: the operator keeps it Pending, the command says so at its timeout
    waiting = run_check(cluster, *common, "absent", "--move-to-version", "v2", "--timeout", "3", timeout=60)
    assert waiting.returncode == 1
    assert "not planned within 3s" in waiting.stderr


def test_a_promotion_deleted_while_its_move_is_in_flight(
    operator: OperatorProcess, emulator: EmulatorProcess, promotions: Promotions, ns: str
) -> None:
    """No finalizer: the object goes at once; the move already sent stays applied, and since no status
    or event can say so, the operator's log does, with the move's RequestId (docs/operator.md)."""
    secret = emulator.seed(unique(), "v1", "v2")
    emulator.set_faults({"UpdateSecretVersionStage": {"latency_ms": 3000}})
    try:
        promotions.create(ns, "p", spec_for(emulator, secret, moveToVersion="v2"))
        wait_for(
            lambda: (promotions.get(ns, "p").get("status") or {}).get("move") or {},
            lambda move: move.get("answer") == "Pending",
            timeout=30,
            what="the move journaled (and about to be sent)",
        )
        promotions.api.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "p")
        move = wait_for(
            lambda: [
                h
                for h in emulator.calls()["history"]
                if h["action"] == "UpdateSecretVersionStage" and h.get("SecretName") == secret
            ],
            lambda moves: len(moves) == 1,
            timeout=30,
            what="the move to reach KMS",
        )[0]
    finally:
        emulator.set_faults({})
    assert emulator.holder(secret, "ACSCurrent") == "v2"
    line = wait_for(
        lambda: [x for x in operator.log_text().splitlines() if f"{ns}/p generation 1: the promotion was deleted" in x],
        bool,
        timeout=30,
        what="the operator's log line about the deleted promotion",
    )[0]
    assert f"move ACSCurrent from v1 to v2, RequestId {move['request_id']}, sent at" in line
    # the ACSPrevious fix-up and afterSuccess come after a status write: nothing more was sent
    updates = [h for h in emulator.calls()["history"] if h.get("SecretName") == secret]
    assert [h["action"] for h in updates].count("UpdateSecretVersionStage") == 1


def test_a_promotion_costs_two_status_writes_and_one_event(
    cluster: Cluster, operator: OperatorProcess, emulator: EmulatorProcess, promotions: Promotions, ns: str
) -> None:
    """No write for kopf's bookkeeping (kopf only feeds the work queue) and no Queued status when a
    worker is free: the intent and the final status are the object's only changes (with a KMS that
    moves ACSPrevious itself), and one Event says what happened. Seen on a watch of the namespace,
    until a later promotion is done too (a bookkeeping PATCH would come right after the attempt, so
    by then it would have been seen)."""
    first, sentinel = emulator.seed(unique(), "v1", "v2"), emulator.seed(unique(), "v1", "v2")
    created = promotions.create(ns, "counted", spec_for(emulator, first, moveToVersion="v2"))
    changes: list[dict[str, Any]] = []
    sentinel_created = False
    stream = k8s_watch.Watch()
    try:
        for event in stream.stream(
            promotions.api.list_namespaced_custom_object,
            GROUP,
            VERSION,
            ns,
            PLURAL,
            resource_version=created["metadata"]["resourceVersion"],
            timeout_seconds=60,
        ):
            obj = event["object"]
            name, phase = obj["metadata"]["name"], (obj.get("status") or {}).get("phase")
            if name == "counted":
                changes.append(obj)
                if phase == "Succeeded" and not sentinel_created:
                    promotions.create(ns, "sentinel", spec_for(emulator, sentinel, moveToVersion="v2"))
                    sentinel_created = True
            elif phase in ("Succeeded", "Failed"):
                break
    finally:
        stream.stop()
    phases = [(o.get("status") or {}).get("phase") for o in changes]
    assert phases[-1:] == ["Succeeded"], phases
    # a KMS that leaves ACSPrevious alone costs one more journaled write: the fix-up's intent
    writes = 2 if emulator.switches["auto_previous"] else 3
    assert len(changes) == writes, f"the object changed {len(changes)} times: {phases}"
    last = changes[-1]
    assert not any(k.startswith("secretstage.io/") for k in last["metadata"].get("annotations") or {}), last["metadata"]
    # the only writer of the object itself (not its status) is whoever created it
    spec_writers = [m for m in last["metadata"]["managedFields"] if m.get("subresource") != "status"]
    assert len(spec_writers) == 1, last["metadata"]["managedFields"]
    events = promotions.wait_events(ns, "counted", lambda events: any(e.reason == "Promoted" for e in events))
    assert [e.reason for e in events] == ["Promoted"]
