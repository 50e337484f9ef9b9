"""The gate: after a stage moved, prove that its consumers work on the new version, or undo it. Pure.

``spec.gate`` names the checks: ``consumers`` (every workload ``afterSuccess.restart`` restarted
finishes its rollout healthy on the new version) and ``jobs`` (smoke-test Jobs that must succeed),
within ``timeout``; on a failed check ``onFailure`` says what happens: ``Rollback`` (default) moves
the stage back where ``stagesBefore`` had it, ``Hold`` leaves it and fails the promotion.

What the gate has done is journaled (``domain.journal``: ``GateState``, ``RollbackState``) like the
move itself.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

ROLLBACK, HOLD = "Rollback", "Hold"
DEFAULT_TIMEOUT_SECONDS = 600
MIN_TIMEOUT_SECONDS, MAX_TIMEOUT_SECONDS = 30, 6 * 3600
DEFAULT_MAX_RESTARTS = 3
POLL_SECONDS = 5.0  # how often a running gate looks at its checks (nothing is sent to KMS meanwhile)
VERSION_ANNOTATION = "secretstage.io/version"  # stamped on a restarted pod template: the version it reads
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"  # what `kubectl rollout restart` (and afterSuccess) set
JOB_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?")
_DURATION = re.compile(r"(?:(?P<h>[0-9]+)h)?(?:(?P<m>[0-9]+)m)?(?:(?P<s>[0-9]+)s)?")


class Verdict(enum.Enum):
    PENDING = "Pending"
    PASSED = "Passed"
    FAILED = "Failed"
    # An analysis that could not decide (Argo Rollouts' Inconclusive): the gate fails and holds,
    # whatever onFailure says: a person decides, nothing is rolled back on a guess.
    INCONCLUSIVE = "Inconclusive"


@dataclass(frozen=True)
class GateJob:
    name: str
    template: Mapping[str, Any]  # a batch/v1 JobSpec


@dataclass(frozen=True)
class AnalysisTemplateRef:
    name: str
    cluster_scope: bool = False  # a ClusterAnalysisTemplate

    @property
    def kind(self) -> str:
        return "ClusterAnalysisTemplate" if self.cluster_scope else "AnalysisTemplate"


@dataclass(frozen=True)
class Analysis:
    """``spec.gate.analysis``: an Argo Rollouts AnalysisRun made from these templates with these args."""

    templates: tuple[AnalysisTemplateRef, ...]
    args: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Gate:
    consumers: bool = False
    jobs: tuple[GateJob, ...] = ()
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS
    on_failure: str = ROLLBACK
    max_restarts: int = DEFAULT_MAX_RESTARTS
    analysis: Analysis | None = None


def parse_duration(text: str) -> int | None:
    """Seconds of a Go-style duration (``90s``, ``10m``, ``1h30m``); None when it is not one."""
    match = _DURATION.fullmatch(text)
    if match is None or not any(match.groupdict().values()):
        return None
    return sum(int(match.group(unit) or 0) * factor for unit, factor in (("h", 3600), ("m", 60), ("s", 1)))


def parse_gate(raw: Any, *, restart: Sequence[tuple[str, str]], problems: list[tuple[str, str]]) -> Gate | None:
    """``spec.gate``, or None; each problem is (field, message with the fix)."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        problems.append(("spec.gate", "must be an object with consumers and/or jobs"))
        return None
    known = {"consumers", "jobs", "analysis", "timeout", "onFailure", "maxRestarts"}
    for key in sorted(set(raw) - known):
        problems.append((f"spec.gate.{key}", f"is not a gate field; the fields are {', '.join(sorted(known))}"))
    consumers = raw.get("consumers", False)
    if not isinstance(consumers, bool):
        problems.append(("spec.gate.consumers", "must be true or false"))
        consumers = False
    if consumers and not restart:
        problems.append(
            (
                "spec.gate.consumers",
                "checks the workloads spec.afterSuccess.restart restarts, and it names none; list them there",
            )
        )
    jobs = _jobs(raw.get("jobs"), problems)
    analysis = _analysis(raw.get("analysis"), problems)
    if not consumers and not jobs and analysis is None:
        problems.append(("spec.gate", "checks nothing: set consumers: true, list jobs, and/or name analysis templates"))
    timeout = DEFAULT_TIMEOUT_SECONDS
    if raw.get("timeout") is not None:
        parsed = parse_duration(str(raw["timeout"])) if isinstance(raw["timeout"], str) else None
        if parsed is None or not MIN_TIMEOUT_SECONDS <= parsed <= MAX_TIMEOUT_SECONDS:
            problems.append(
                (
                    "spec.gate.timeout",
                    f"{raw['timeout']!r} is not a duration between {MIN_TIMEOUT_SECONDS}s and "
                    f"{MAX_TIMEOUT_SECONDS // 3600}h; write it as 10m, 90s or 1h30m",
                )
            )
        else:
            timeout = parsed
    on_failure = raw.get("onFailure", ROLLBACK)
    if on_failure not in (ROLLBACK, HOLD):
        problems.append(("spec.gate.onFailure", f"{on_failure!r} is neither {ROLLBACK} nor {HOLD}"))
        on_failure = ROLLBACK
    max_restarts = raw.get("maxRestarts", DEFAULT_MAX_RESTARTS)
    if not isinstance(max_restarts, int) or isinstance(max_restarts, bool) or not 0 <= max_restarts <= 100:
        problems.append(("spec.gate.maxRestarts", "must be a whole number from 0 to 100"))
        max_restarts = DEFAULT_MAX_RESTARTS
    return Gate(consumers, tuple(jobs), timeout, str(on_failure), max_restarts, analysis)


ARG_NAME = re.compile(r"[A-Za-z0-9_.-]{1,253}")


def _analysis(raw: Any, problems: list[tuple[str, str]]) -> Analysis | None:
    if raw is None:
        return None
    where = "spec.gate.analysis"
    if not isinstance(raw, Mapping) or set(raw) - {"templates", "args"}:
        problems.append(
            (where, "takes templates ([{templateName}], clusterScope: true for a ClusterAnalysisTemplate) and args")
        )
        return None
    templates: list[AnalysisTemplateRef] = []
    for i, item in enumerate(raw.get("templates") or []):
        name = item.get("templateName") if isinstance(item, Mapping) else None
        if not isinstance(item, Mapping) or set(item) - {"templateName", "clusterScope"}:
            problems.append((f"{where}.templates[{i}]", "takes templateName and clusterScope"))
        elif not (isinstance(name, str) and _DNS_NAME.fullmatch(name)):
            problems.append((f"{where}.templates[{i}].templateName", "must name an AnalysisTemplate (a DNS name)"))
        else:
            templates.append(AnalysisTemplateRef(name, bool(item.get("clusterScope", False))))
    if not templates:
        problems.append((f"{where}.templates", "must name at least one AnalysisTemplate"))
        return None
    args: list[tuple[str, str]] = []
    for i, item in enumerate(raw.get("args") or []):
        ok = isinstance(item, Mapping) and not set(item) - {"name", "value"}
        name, value = (item.get("name"), item.get("value")) if isinstance(item, Mapping) else (None, None)
        if not ok or not (isinstance(name, str) and ARG_NAME.fullmatch(name)) or not isinstance(value, str):
            problems.append((f"{where}.args[{i}]", "takes name and value (a string)"))
            continue
        if name in {a for a, _ in args}:
            problems.append((f"{where}.args[{i}].name", f"{name!r} is given twice"))
            continue
        args.append((name, value))
    return Analysis(tuple(templates), tuple(args))


_DNS_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


def analysis_run_name(promotion: str, generation: int) -> str:
    """The AnalysisRun a gate creates: one per promotion and generation."""
    return job_name(promotion, "analysis", generation)


def analysis_run(
    analysis: Analysis, templates: Sequence[Mapping[str, Any]], name: str, owner: Mapping[str, Any]
) -> dict[str, Any]:
    """The AnalysisRun for ``analysis``, resolved from its templates as Argo Rollouts' own controller
    does for a Rollout (the analysis controller runs a run's metrics; it does not read templates):
    their metrics in order, their args with the spec's values over the templates' defaults, dryRun and
    measurementRetention. ``{{args.NAME}}`` in the metrics is left for the analysis controller."""
    metrics: list[Any] = []
    args: dict[str, dict[str, Any]] = {}
    dry_run: list[Any] = []
    retention: list[Any] = []
    for template in templates:
        spec = template.get("spec") or {}
        metrics += list(spec.get("metrics") or [])
        for arg in spec.get("args") or []:
            if isinstance(arg, Mapping) and arg.get("name") and arg["name"] not in args:
                args[str(arg["name"])] = dict(arg)
        dry_run += list(spec.get("dryRun") or [])
        retention += list(spec.get("measurementRetention") or [])
    for arg_name, value in analysis.args:
        args[arg_name] = {"name": arg_name, "value": value}
    run_spec: dict[str, Any] = {"metrics": metrics, "args": list(args.values())}
    if dry_run:
        run_spec["dryRun"] = dry_run
    if retention:
        run_spec["measurementRetention"] = retention
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisRun",
        "metadata": {
            "name": name,
            "ownerReferences": [dict(owner)],
            "labels": {"app.kubernetes.io/managed-by": "secretstage-operator"},
        },
        "spec": run_spec,
    }


def missing_args(templates: Sequence[Mapping[str, Any]], given: Sequence[tuple[str, str]]) -> list[str]:
    """Args a template declares without a value or valueFrom that the spec does not give."""
    names = {n for n, _ in given}
    missing = []
    for template in templates:
        for arg in (template.get("spec") or {}).get("args") or []:
            if (
                isinstance(arg, Mapping)
                and "value" not in arg
                and "valueFrom" not in arg
                and arg.get("name") not in names
            ):
                missing.append(str(arg.get("name")))
    return missing


def canary_check(name: str, child: Mapping[str, Any]) -> Check:
    """A canary promotion's verdict: Succeeded passes; Failed fails (its reason and message say why:
    RolledBack, GateFailed, ...); anything else, or a status of an older generation, is pending."""
    status = child.get("status") or {}
    generation = (child.get("metadata") or {}).get("generation")
    said = next(
        (c for c in status.get("conditions") or [] if isinstance(c, Mapping) and c.get("type") == "Succeeded"), {}
    )
    detail = f"{said.get('reason')}: {said.get('message')}" if said else "not handled yet"
    if status.get("observedGeneration") != generation or status.get("phase") not in ("Succeeded", "Failed"):
        return Check(
            "SecretStagePromotion", name, Verdict.PENDING, f"canary {name}: {status.get('phase') or 'new'}, {detail}"
        )
    if status["phase"] == "Succeeded":
        return Check("SecretStagePromotion", name, Verdict.PASSED, f"canary {name}: {detail}")
    return Check("SecretStagePromotion", name, Verdict.FAILED, f"canary {name} failed: {detail}")


def analysis_check(name: str, run: Mapping[str, Any] | None) -> Check:
    """An AnalysisRun's verdict by its phase: Successful passes; Failed and Error fail; Inconclusive holds."""
    if run is None:
        return Check("AnalysisRun", name, Verdict.PENDING, f"AnalysisRun {name}: created")
    status = run.get("status") or {}
    phase = str(status.get("phase") or "Pending")
    said = status.get("message") or "; ".join(
        str(m.get("message")) for m in status.get("metricResults") or [] if isinstance(m, Mapping) and m.get("message")
    )
    detail = f": {said}" if said else ""
    if phase == "Successful":
        return Check("AnalysisRun", name, Verdict.PASSED, f"AnalysisRun {name}: Successful")
    if phase in ("Failed", "Error"):
        return Check("AnalysisRun", name, Verdict.FAILED, f"AnalysisRun {name}: {phase}{detail}")
    if phase == "Inconclusive":
        return Check("AnalysisRun", name, Verdict.INCONCLUSIVE, f"AnalysisRun {name}: Inconclusive{detail}")
    return Check("AnalysisRun", name, Verdict.PENDING, f"AnalysisRun {name}: {phase}")


def _jobs(raw: Any, problems: list[tuple[str, str]]) -> list[GateJob]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        problems.append(("spec.gate.jobs", "must be a list of {name, template}"))
        return []
    jobs: list[GateJob] = []
    for i, item in enumerate(raw):
        where = f"spec.gate.jobs[{i}]"
        if not isinstance(item, Mapping) or set(item) - {"name", "template"}:
            problems.append((where, "takes name and template (a batch/v1 JobSpec)"))
            continue
        name, template = item.get("name"), item.get("template")
        if not (isinstance(name, str) and JOB_NAME.fullmatch(name)):
            problems.append((f"{where}.name", "must be a DNS label of at most 40 characters"))
            continue
        if name in {j.name for j in jobs}:
            problems.append((f"{where}.name", f"{name!r} is listed twice"))
            continue
        spec_template = template.get("template") if isinstance(template, Mapping) else None
        if not isinstance(spec_template, Mapping) or not isinstance(spec_template.get("spec"), Mapping):
            problems.append((f"{where}.template", "must be a batch/v1 JobSpec, with template.spec (the pod)"))
            continue
        assert isinstance(template, Mapping)
        jobs.append(GateJob(name, template))
    return jobs


def job_name(promotion: str, job: str, generation: int) -> str:
    """The Job a gate creates: one per promotion, check and generation (a new generation gates anew)."""
    suffix = f"-{job}-g{generation}"
    return promotion[: 63 - len(suffix)].rstrip("-.") + suffix


# --- what a check found ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    kind: str  # Deployment, StatefulSet, DaemonSet (a consumer) or Job
    name: str
    verdict: Verdict
    message: str
    ready: str | None = None  # consumers: "3/4" pods ready on the version
    version: str | None = None  # consumers: the version their pod template carries

    def to_status(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "kind": self.kind,
            "name": self.name,
            "verdict": self.verdict.value,
            "message": self.message,
        }
        if self.ready is not None:
            entry["ready"] = self.ready
        if self.version is not None:
            entry["version"] = self.version
        return entry


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def consumer_check(
    workload: Mapping[str, Any], pods: Sequence[Mapping[str, Any]], version: str, max_restarts: int
) -> Check:
    """Whether one restarted workload finished its rollout healthy on ``version``.

    Healthy: the controller observed the restart and every replica is updated and available (no old
    pod left). Failed: the Deployment's progress deadline passed, or a container of a pod on the new
    version restarted more than ``max_restarts`` times (a crash loop on the new value shows here
    long before any deadline).
    """
    kind = str(workload.get("kind") or "")
    meta, spec, status = (workload.get(k) or {} for k in ("metadata", "spec", "status"))
    name = str(meta.get("name") or "")
    template = _annotations(spec.get("template") or {})
    template_version = template.get(VERSION_ANNOTATION)
    # Pods of this restart only: an earlier restart onto the same version (a held gate re-run) left
    # pods whose restarts would otherwise count against the new ones.
    restarted_at = template.get(RESTARTED_AT)
    on_version = [
        p
        for p in pods
        if _annotations(p).get(VERSION_ANNOTATION) == version
        and (restarted_at is None or _annotations(p).get(RESTARTED_AT) == restarted_at)
    ]
    ready_pods = [p for p in on_version if _pod_ready(p) and not (p.get("metadata") or {}).get("deletionTimestamp")]

    def check(verdict: Verdict, message: str) -> Check:
        return Check(kind, name, verdict, message, f"{len(ready_pods)}/{wanted}", template_version)

    wanted = _wanted(kind, spec, status)
    for pod in on_version:
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            restarts = _int(container.get("restartCount"))
            if restarts > max_restarts:
                waiting = ((container.get("state") or {}).get("waiting") or {}).get("reason")
                return check(
                    Verdict.FAILED,
                    f"{kind} {name}: container {container.get('name')} of pod "
                    f"{(pod.get('metadata') or {}).get('name')} restarted {restarts} times on {version} "
                    f"(more than {max_restarts})" + (f", now {waiting}" if waiting else ""),
                )
    if template_version != version:
        return check(Verdict.PENDING, f"{kind} {name}: its pod template is not stamped {version} yet")
    if _int(status.get("observedGeneration")) < _int(meta.get("generation")):
        return check(Verdict.PENDING, f"{kind} {name}: the controller has not seen the restart yet")
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            return check(
                Verdict.FAILED, f"{kind} {name}: the rollout exceeded its progress deadline: {condition.get('message')}"
            )
    done, progress = _rolled_out(kind, spec, status)
    if not done:
        return check(Verdict.PENDING, f"{kind} {name}: rolling out, {progress}")
    return check(Verdict.PASSED, f"{kind} {name}: {len(ready_pods)}/{wanted} pods ready on {version}")


DEPLOYMENT_PROGRESS_DEADLINE = 600  # Kubernetes' default progressDeadlineSeconds


def cannot_run(
    gate: Gate, restart: Sequence[tuple[str, str]], workloads: Sequence[Mapping[str, Any] | None]
) -> list[tuple[str, str]]:
    """Why this gate could not give a fair verdict, checked before anything is moved: (field, what to do).

    ``workloads``: what the API server holds for each ``restart`` entry, None where it has none. A
    consumer that does not exist can never be healthy; a gate that gives up before a Deployment's own
    progress deadline fails rollouts that Kubernetes would still call progressing.
    """
    if not gate.consumers:
        return []
    problems = []
    for index, ((kind, name), workload) in enumerate(zip(restart, workloads, strict=True)):
        field = f"spec.afterSuccess.restart[{index}]"
        if workload is None:
            problems.append(
                (field, f"{kind} {name} does not exist in this namespace: create it, or take it off the list")
            )
            continue
        if kind != "Deployment":
            continue  # StatefulSets and DaemonSets have no progress deadline
        deadline = _int((workload.get("spec") or {}).get("progressDeadlineSeconds"), DEPLOYMENT_PROGRESS_DEADLINE)
        if gate.timeout_seconds < deadline:
            problems.append(
                (
                    "spec.gate.timeout",
                    f"{gate.timeout_seconds}s is shorter than Deployment {name}'s progressDeadlineSeconds "
                    f"({deadline}s): the gate would give up on a rollout Kubernetes still calls progressing; "
                    f"set spec.gate.timeout to at least {deadline}s, or lower the Deployment's deadline",
                )
            )
    return problems


def _wanted(kind: str, spec: Mapping[str, Any], status: Mapping[str, Any]) -> int:
    if kind == "DaemonSet":
        return _int(status.get("desiredNumberScheduled"))
    return _int(spec.get("replicas"), 1)


def _rolled_out(kind: str, spec: Mapping[str, Any], status: Mapping[str, Any]) -> tuple[bool, str]:
    if kind == "DaemonSet":
        desired = _int(status.get("desiredNumberScheduled"))
        updated, available = _int(status.get("updatedNumberScheduled")), _int(status.get("numberAvailable"))
        return updated == desired and available == desired, f"{updated} of {desired} updated, {available} available"
    replicas = _int(spec.get("replicas"), 1)
    updated = _int(status.get("updatedReplicas"))
    if kind == "StatefulSet":
        ready = _int(status.get("readyReplicas"))
        same = status.get("currentRevision") == status.get("updateRevision")
        return updated == replicas and ready == replicas and same, f"{updated} of {replicas} updated, {ready} ready"
    available, total = _int(status.get("availableReplicas")), _int(status.get("replicas"))
    done = updated == replicas and available == replicas and total == replicas
    return done, f"{updated} of {replicas} updated, {available} available, {total - updated} old left"


def _annotations(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return (obj.get("metadata") or {}).get("annotations") or {}


def has_condition(obj: Mapping[str, Any], type_: str) -> bool:
    """A condition of ``type_`` with status True in ``status.conditions``."""
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == type_ and c.get("status") == "True" for c in conditions)


def _pod_ready(pod: Mapping[str, Any]) -> bool:
    return has_condition(pod, "Ready")


def job_check(name: str, job: Mapping[str, Any] | None, logs_tail: str = "") -> Check:
    """A smoke-test Job's verdict from its conditions (batch/v1: Complete or Failed)."""
    if job is None:
        return Check("Job", name, Verdict.PENDING, f"Job {name}: not created yet")
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") in ("Complete", "SuccessCriteriaMet"):
            return Check("Job", name, Verdict.PASSED, f"Job {name}: succeeded")
        if condition.get("type") in ("Failed", "FailureTarget"):
            tail = f"; its last lines: {logs_tail}" if logs_tail else ""
            return Check(
                "Job",
                name,
                Verdict.FAILED,
                f"Job {name}: failed ({condition.get('reason')}: {condition.get('message')}){tail}",
            )
    return Check("Job", name, Verdict.PENDING, f"Job {name}: running")


def _parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def later(now: str, seconds: int) -> str:
    return (_parse_time(now) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def passed_deadline(now: str, deadline: str) -> bool:
    return _parse_time(now) >= _parse_time(deadline)


def verdict_of(checks: Sequence[Check], *, timed_out: bool) -> tuple[Verdict, str | None]:
    """All passed: PASSED. Any failed: FAILED, naming the first. An analysis that could not decide:
    INCONCLUSIVE (the gate holds). Still pending at the deadline: FAILED."""
    for check in checks:
        if check.verdict is Verdict.FAILED:
            return Verdict.FAILED, check.message
    for check in checks:
        if check.verdict is Verdict.INCONCLUSIVE:
            return Verdict.INCONCLUSIVE, check.message
    pending = [c for c in checks if c.verdict is Verdict.PENDING]
    if not pending:
        return Verdict.PASSED, None
    if timed_out:
        return Verdict.FAILED, f"the gate timed out with checks still pending: {pending[0].message}"
    return Verdict.PENDING, None
