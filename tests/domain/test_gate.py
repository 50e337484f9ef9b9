"""The gate's spec and verdicts (pure): what a consumer's rollout and a smoke Job's status mean."""

from __future__ import annotations

from typing import Any

import pytest

from secretstage.domain.gate import (
    RESTARTED_AT,
    VERSION_ANNOTATION,
    Analysis,
    AnalysisTemplateRef,
    Check,
    Gate,
    Verdict,
    analysis_check,
    analysis_run,
    canary_check,
    cannot_run,
    consumer_check,
    job_check,
    job_name,
    missing_args,
    parse_duration,
    verdict_of,
)
from secretstage.domain.journal import GateState, Journal, RollbackState
from secretstage.domain.planning import rollback_call, rollback_previous
from secretstage.domain.promotion import InvalidPromotion, canary_name, canary_spec, parse_spec

BASE: dict[str, Any] = {
    "secretName": "payments/db",
    "versionStage": "ACSCurrent",
    "moveToVersion": "v2",
    "credentials": {"secretRef": {"name": "kms"}},
    "afterSuccess": {"restart": [{"kind": "Deployment", "name": "api"}]},
}
JOB = {"name": "login-check", "template": {"template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}}


@pytest.mark.parametrize(("text", "seconds"), [("10m", 600), ("90s", 90), ("1h30m", 5400), ("2h", 7200)])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10", "ten minutes", "1d", "-5m", "5m\n"])
def test_not_durations(text: str) -> None:
    assert parse_duration(text) is None


def test_a_gate_parses_with_its_defaults() -> None:
    gate = parse_spec({**BASE, "gate": {"consumers": True, "jobs": [JOB]}}).gate
    assert gate is not None
    assert (gate.consumers, [j.name for j in gate.jobs], gate.timeout_seconds, gate.on_failure, gate.max_restarts) == (
        True,
        ["login-check"],
        600,
        "Rollback",
        3,
    )


@pytest.mark.parametrize(
    ("change", "field", "needle"),
    [
        ({"gate": {}}, "spec.gate", "checks nothing"),
        ({"gate": {"consumers": False}}, "spec.gate", "checks nothing"),
        ({"gate": {"consumers": True}, "afterSuccess": None}, "spec.gate.consumers", "names none"),
        ({"gate": {"consumers": True, "timeout": "10"}}, "spec.gate.timeout", "10m, 90s or 1h30m"),
        ({"gate": {"consumers": True, "timeout": "5s"}}, "spec.gate.timeout", "between 30s"),
        ({"gate": {"consumers": True, "onFailure": "Retry"}}, "spec.gate.onFailure", "neither Rollback nor Hold"),
        ({"gate": {"consumers": True, "canary": {}}}, "spec.gate.canary", "is not a gate field"),
        ({"gate": {"jobs": [{"name": "Bad_Name", "template": {}}]}}, "spec.gate.jobs[0].name", "DNS label"),
        ({"gate": {"jobs": [{"name": "a", "template": {"spec": {}}}]}}, "spec.gate.jobs[0].template", "JobSpec"),
        ({"gate": {"jobs": [JOB, JOB]}}, "spec.gate.jobs[1].name", "listed twice"),
        (
            {"gate": {"consumers": True}, "moveToVersion": None, "removeFromVersion": "v1", "versionStage": "Canary"},
            "spec.gate",
            "needs spec.moveToVersion",
        ),
    ],
)
def test_bad_gates_name_the_field_and_the_fix(change: dict[str, Any], field: str, needle: str) -> None:
    spec = {k: v for k, v in {**BASE, **change}.items() if v is not None}
    with pytest.raises(InvalidPromotion) as err:
        parse_spec(spec)
    assert any(p.field == field and needle in p.message for p in err.value.problems), err.value.problems


def deployment(wanted: int = 4, **status: Any) -> dict[str, Any]:
    return {
        "kind": "Deployment",
        "metadata": {"name": "api", "generation": 7},
        "spec": {
            "replicas": wanted,
            "template": {"metadata": {"annotations": {VERSION_ANNOTATION: "v2"}}},
        },
        "status": {"observedGeneration": 7, **status},
    }


def pod(
    name: str, version: str, *, ready: bool = True, restarts: int = 0, waiting: str | None = None
) -> dict[str, Any]:
    state = {"waiting": {"reason": waiting}} if waiting else {"running": {}}
    return {
        "metadata": {"name": name, "annotations": {VERSION_ANNOTATION: version}},
        "status": {
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [{"name": "api", "restartCount": restarts, "state": state}],
        },
    }


def test_a_finished_rollout_on_the_version_passes() -> None:
    done = deployment(updatedReplicas=4, availableReplicas=4, replicas=4)
    check = consumer_check(done, [pod(f"p{i}", "v2") for i in range(4)], "v2", 3)
    assert (check.verdict, check.ready, check.version) == (Verdict.PASSED, "4/4", "v2")


def test_a_rollout_with_old_pods_left_is_pending() -> None:
    rolling = deployment(updatedReplicas=4, availableReplicas=4, replicas=6)  # 2 old pods still there
    pods = [pod("p0", "v2"), pod("p1", "v2", ready=False), pod("o0", "v1"), pod("o1", "v1")]
    check = consumer_check(rolling, pods, "v2", 3)
    assert (check.verdict, check.ready) == (Verdict.PENDING, "1/4")
    assert "2 old left" in check.message


def test_a_crash_loop_on_the_new_version_fails_before_any_deadline() -> None:
    rolling = deployment(updatedReplicas=1, availableReplicas=3, replicas=4)
    pods = [pod("new", "v2", ready=False, restarts=4, waiting="CrashLoopBackOff"), pod("old", "v1", restarts=9)]
    check = consumer_check(rolling, pods, "v2", 3)
    assert check.verdict is Verdict.FAILED
    assert "restarted 4 times on v2 (more than 3), now CrashLoopBackOff" in check.message


def test_pods_of_an_earlier_restart_onto_the_same_version_do_not_count() -> None:
    """A held gate re-run: the first restart's pods crash-looped on v2; only the new restart's count."""
    done = deployment(2, updatedReplicas=2, availableReplicas=2, replicas=2)
    done["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT] = "2026-12-07T10:05:00Z"
    fresh = [pod(f"new{i}", "v2") for i in range(2)]
    for p in fresh:
        p["metadata"]["annotations"][RESTARTED_AT] = "2026-12-07T10:05:00Z"
    crashed = pod("first", "v2", ready=False, restarts=9, waiting="CrashLoopBackOff")
    crashed["metadata"]["annotations"][RESTARTED_AT] = "2026-12-07T10:00:00Z"
    check = consumer_check(done, [*fresh, crashed], "v2", 3)
    assert (check.verdict, check.ready) == (Verdict.PASSED, "2/2")
    crashed["metadata"]["annotations"][RESTARTED_AT] = "2026-12-07T10:05:00Z"  # of this restart: counts
    assert consumer_check(done, [*fresh, crashed], "v2", 3).verdict is Verdict.FAILED


def test_restarts_of_old_pods_do_not_count() -> None:
    done = deployment(1, updatedReplicas=1, availableReplicas=1, replicas=1)
    check = consumer_check(done, [pod("new", "v2"), pod("old", "v1", restarts=50)], "v2", 3)
    assert check.verdict is Verdict.PASSED


def test_the_progress_deadline_fails_it() -> None:
    stuck = deployment(
        updatedReplicas=1,
        conditions=[{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "x"}],
    )
    assert consumer_check(stuck, [], "v2", 3).verdict is Verdict.FAILED


def test_a_restart_the_controller_has_not_seen_is_pending() -> None:
    unseen = deployment(updatedReplicas=4, availableReplicas=4, replicas=4)
    unseen["status"]["observedGeneration"] = 6
    assert consumer_check(unseen, [], "v2", 3).verdict is Verdict.PENDING
    unstamped = deployment(updatedReplicas=4, availableReplicas=4, replicas=4)
    unstamped["spec"]["template"]["metadata"]["annotations"][VERSION_ANNOTATION] = "v1"
    assert "not stamped v2" in consumer_check(unstamped, [], "v2", 3).message


def test_statefulsets_and_daemonsets() -> None:
    sts = {
        "kind": "StatefulSet",
        "metadata": {"name": "db", "generation": 2},
        "spec": {"replicas": 2, "template": {"metadata": {"annotations": {VERSION_ANNOTATION: "v2"}}}},
        "status": {"observedGeneration": 2, "updatedReplicas": 2, "readyReplicas": 2, "currentRevision": "a"},
    }
    assert consumer_check(sts, [], "v2", 3).verdict is Verdict.PENDING  # currentRevision != updateRevision
    sts["status"]["updateRevision"] = "a"
    assert consumer_check(sts, [], "v2", 3).verdict is Verdict.PASSED
    ds = {
        "kind": "DaemonSet",
        "metadata": {"name": "agent", "generation": 3},
        "spec": {"template": {"metadata": {"annotations": {VERSION_ANNOTATION: "v2"}}}},
        "status": {
            "observedGeneration": 3,
            "desiredNumberScheduled": 3,
            "updatedNumberScheduled": 3,
            "numberAvailable": 2,
        },
    }
    assert consumer_check(ds, [], "v2", 3).verdict is Verdict.PENDING
    ds["status"]["numberAvailable"] = 3
    assert consumer_check(ds, [], "v2", 3).verdict is Verdict.PASSED


def test_jobs() -> None:
    assert job_check("j", None).verdict is Verdict.PENDING
    assert job_check("j", {"status": {"active": 1}}).verdict is Verdict.PENDING
    assert (
        job_check("j", {"status": {"conditions": [{"type": "Complete", "status": "True"}]}}).verdict is Verdict.PASSED
    )
    failed = {"status": {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}}
    check = job_check("j", failed, "login refused for user app")
    assert check.verdict is Verdict.FAILED
    assert "BackoffLimitExceeded" in check.message
    assert "login refused for user app" in check.message


def test_job_names_fit_and_differ_by_generation() -> None:
    name = job_name("a" * 70, "login-check", 12)
    assert len(name) <= 63
    assert name.endswith("-login-check-g12")
    assert job_name("p", "c", 1) != job_name("p", "c", 2)


def test_the_verdict() -> None:
    passed = Check("Deployment", "a", Verdict.PASSED, "ok")
    pending = Check("Job", "b", Verdict.PENDING, "Job b: running")
    failed = Check("Job", "c", Verdict.FAILED, "Job c: failed")
    assert verdict_of([passed], timed_out=False) == (Verdict.PASSED, None)
    assert verdict_of([passed, pending], timed_out=False) == (Verdict.PENDING, None)
    assert verdict_of([pending, failed], timed_out=False) == (Verdict.FAILED, "Job c: failed")
    verdict, why = verdict_of([passed, pending], timed_out=True)
    assert verdict is Verdict.FAILED
    assert "timed out" in str(why)
    assert "Job b: running" in str(why)


def test_the_journal_round_trips() -> None:
    gate = GateState("v2", "2026-12-06T10:00:00Z", "2026-12-06T10:10:00Z").with_checks(
        [Check("Deployment", "api", Verdict.PENDING, "rolling", "1/4", "v2")], Verdict.PENDING, None
    )
    rollback = RollbackState("Job c: failed", "v1")
    status = {"observedGeneration": 3, "gate": gate.to_status(), "rollback": rollback.to_status()}
    journal = Journal.of(status, 3)
    assert journal.gate == gate
    assert journal.rollback == rollback
    assert Journal.of(status, 4).gate is None  # another generation's


def test_rollback_calls() -> None:
    before = {"ACSCurrent": "v1", "ACSPrevious": "v0"}
    call = rollback_call("ACSCurrent", "v2", before)
    assert (call.version_stage, call.move_to_version, call.remove_from_version) == ("ACSCurrent", "v1", "v2")
    # KMS put ACSPrevious on v2 when ACSCurrent left it: back to v0
    fix = rollback_previous("ACSCurrent", "v2", before, {"ACSCurrent": "v1", "ACSPrevious": "v2"})
    assert fix is not None
    assert (fix.move_to_version, fix.remove_from_version) == ("v0", "v2")
    assert rollback_previous("ACSCurrent", "v2", before, {"ACSCurrent": "v1", "ACSPrevious": "v0"}) is None
    assert rollback_previous("ACSCurrent", "v2", before, {"ACSCurrent": "v3", "ACSPrevious": "v2"}) is None
    # there was none before: KMS cannot remove ACSPrevious; it goes on the version ACSCurrent left, in any mode
    first = {"ACSCurrent": "v1"}
    assert rollback_previous("ACSCurrent", "v2", first, {"ACSCurrent": "v1", "ACSPrevious": "v2"}) is None
    manual = rollback_previous("ACSCurrent", "v2", first, {"ACSCurrent": "v1", "ACSPrevious": "v1"})
    assert manual is not None
    assert (manual.move_to_version, manual.remove_from_version) == ("v2", "v1")
    custom = rollback_call("Canary", "v2", {})
    assert (custom.move_to_version, custom.remove_from_version) == (None, "v2")  # it was on no version


def test_a_gate_that_could_not_give_a_fair_verdict_is_refused_before_the_move() -> None:
    gate = Gate(consumers=True, timeout_seconds=120)
    restart = (("Deployment", "api"), ("Deployment", "worker"), ("StatefulSet", "db"), ("Deployment", "gone"))
    workloads = [
        {"spec": {"progressDeadlineSeconds": 60}},  # shorter than the gate: fine
        {"spec": {}},  # Kubernetes' default, 600s: the gate would give up first
        {"spec": {}},  # no progress deadline at all
        None,
    ]
    problems = cannot_run(gate, restart, workloads)
    assert problems == [
        (
            "spec.gate.timeout",
            "120s is shorter than Deployment worker's progressDeadlineSeconds (600s): the gate would give up on a "
            "rollout Kubernetes still calls progressing; set spec.gate.timeout to at least 600s, or lower the "
            "Deployment's deadline",
        ),
        (
            "spec.afterSuccess.restart[3]",
            "Deployment gone does not exist in this namespace: create it, or take it off the list",
        ),
    ]
    assert cannot_run(Gate(consumers=True, timeout_seconds=600), restart[:3], workloads[:3]) == []
    assert cannot_run(Gate(jobs=(), consumers=False), restart, workloads) == []  # jobs only: not its business


def test_analysis_parses_and_bad_analysis_names_the_field() -> None:
    spec = {
        "secretName": "s",
        "versionStage": "ACSCurrent",
        "moveToVersion": "v2",
        "regionId": "cn-hangzhou",
        "credentials": {"secretRef": {"name": "k"}},
        "gate": {
            "analysis": {
                "templates": [{"templateName": "error-rate"}, {"templateName": "slo", "clusterScope": True}],
                "args": [{"name": "service", "value": "api"}],
            }
        },
    }
    gate = parse_spec(spec).gate
    assert gate is not None
    assert gate.analysis == Analysis(
        (AnalysisTemplateRef("error-rate"), AnalysisTemplateRef("slo", cluster_scope=True)), (("service", "api"),)
    )
    for bad, field in (
        ({"templates": []}, "spec.gate.analysis.templates"),
        ({"templates": [{"templateName": "Bad Name"}]}, "spec.gate.analysis.templates[0].templateName"),
        ({"templates": [{"templateName": "a"}], "args": [{"name": "x", "value": 3}]}, "spec.gate.analysis.args[0]"),
        ({"templates": [{"templateName": "a"}], "extra": 1}, "spec.gate.analysis"),
    ):
        with pytest.raises(InvalidPromotion) as err:
            parse_spec({**spec, "gate": {"analysis": bad}})
        assert field in [p.field for p in err.value.problems], (bad, err.value.problems)


def test_an_analysis_run_is_resolved_from_its_templates() -> None:
    error_rate = {
        "spec": {
            "args": [{"name": "service"}, {"name": "window", "value": "5m"}],
            "metrics": [{"name": "errors", "provider": {"web": {"url": "http://{{args.service}}/metrics"}}}],
            "dryRun": [{"metricName": "errors"}],
        }
    }
    latency = {"spec": {"args": [{"name": "service"}], "metrics": [{"name": "p99"}]}}
    owner = {"apiVersion": "secretstage.io/v1alpha1", "kind": "SecretStagePromotion", "name": "p", "uid": "u"}
    analysis = Analysis((AnalysisTemplateRef("error-rate"), AnalysisTemplateRef("latency")), (("service", "api"),))
    run = analysis_run(analysis, [error_rate, latency], "p-analysis-g1", owner)
    assert run["metadata"]["ownerReferences"] == [owner]
    assert [m["name"] for m in run["spec"]["metrics"]] == ["errors", "p99"]
    assert run["spec"]["args"] == [{"name": "service", "value": "api"}, {"name": "window", "value": "5m"}]
    assert run["spec"]["dryRun"] == [{"metricName": "errors"}]
    assert missing_args([error_rate, latency], ()) == ["service", "service"]
    assert missing_args([error_rate, latency], (("service", "api"),)) == []


@pytest.mark.parametrize(
    ("phase", "verdict"),
    [
        (None, Verdict.PENDING),
        ("Running", Verdict.PENDING),
        ("Successful", Verdict.PASSED),
        ("Failed", Verdict.FAILED),
        ("Error", Verdict.FAILED),
        ("Inconclusive", Verdict.INCONCLUSIVE),
    ],
)
def test_an_analysis_run_by_its_phase(phase: str | None, verdict: Verdict) -> None:
    run = {"status": {"phase": phase, "message": 'Metric "ok" assessed Failed'}} if phase else {}
    assert analysis_check("p-analysis-g1", run).verdict is verdict


def test_an_inconclusive_analysis_holds_unless_a_check_failed() -> None:
    inconclusive = Check("AnalysisRun", "a", Verdict.INCONCLUSIVE, "AnalysisRun a: Inconclusive")
    failed = Check("Job", "j", Verdict.FAILED, "Job j: failed")
    assert verdict_of([inconclusive], timed_out=False) == (Verdict.INCONCLUSIVE, "AnalysisRun a: Inconclusive")
    assert verdict_of([inconclusive, failed], timed_out=False) == (Verdict.FAILED, "Job j: failed")


CANARY_SPEC = {
    "secretName": "payments/db",
    "versionStage": "ACSCurrent",
    "moveToVersion": "v2",
    "regionId": "cn-hangzhou",
    "precondition": {"currentVersion": "v1"},
    "credentials": {"secretRef": {"name": "k"}},
    "afterSuccess": {"restart": [{"kind": "Deployment", "name": "api"}]},
    "gate": {"consumers": True},
    "canary": {
        "versionStage": "ACSCanary",
        "restart": [{"kind": "Deployment", "name": "api-canary"}],
        "gate": {"consumers": True, "timeout": "5m"},
    },
}


def test_a_canary_parses_and_its_promotion_keeps_only_what_it_needs() -> None:
    request = parse_spec(CANARY_SPEC)
    assert request.canary is not None
    assert (request.canary.version_stage, request.canary.restart) == ("ACSCanary", (("Deployment", "api-canary"),))
    assert request.canary.gate.timeout_seconds == 300
    child = canary_spec(CANARY_SPEC)
    assert child == {
        "secretName": "payments/db",
        "regionId": "cn-hangzhou",
        "credentials": {"secretRef": {"name": "k"}},
        "moveToVersion": "v2",
        "versionStage": "ACSCanary",
        "afterSuccess": {"restart": [{"kind": "Deployment", "name": "api-canary"}]},
        "gate": {"consumers": True, "timeout": "5m"},
    }
    assert parse_spec(child).gate is not None  # the canary promotion is a valid gated promotion itself
    assert canary_name("db-password-v2", 3) == "db-password-v2-canary-g3"
    assert len(canary_name("x" * 80, 12)) == 63


@pytest.mark.parametrize(
    ("canary", "field"),
    [
        ({"versionStage": "ACSCurrent", "gate": {"jobs": []}}, "spec.canary.versionStage"),
        ({"versionStage": "ACSCanary"}, "spec.canary.gate"),
        ({"versionStage": "ACSCanary", "gate": {"consumers": True}}, "spec.canary.gate.consumers"),
        (
            {"versionStage": "ACSCanary", "restart": [{"kind": "Pod", "name": "x"}], "gate": {}},
            "spec.canary.restart[0]",
        ),
        ({"versionStage": "ACSCanary", "gate": {}, "extra": 1}, "spec.canary"),
    ],
)
def test_bad_canaries_name_the_field(canary: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidPromotion) as err:
        parse_spec({**CANARY_SPEC, "canary": canary})
    assert field in [p.field for p in err.value.problems], err.value.problems


def test_a_canary_promotion_by_its_status() -> None:
    def child(phase: str | None, observed: int = 1, reason: str = "RolledBack") -> dict[str, Any]:
        conditions = [{"type": "Succeeded", "reason": reason, "message": "the gate failed"}]
        return {
            "metadata": {"generation": 1},
            "status": {"phase": phase, "observedGeneration": observed, "conditions": conditions},
        }

    assert canary_check("c", child("Succeeded", reason="Verified")).verdict is Verdict.PASSED
    failed = canary_check("c", child("Failed"))
    assert failed.verdict is Verdict.FAILED
    assert "RolledBack: the gate failed" in failed.message
    assert canary_check("c", child("Verifying")).verdict is Verdict.PENDING
    assert canary_check("c", child("Failed", observed=0)).verdict is Verdict.PENDING  # an older generation's
