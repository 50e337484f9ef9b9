"""The gate's checks, read from the API server (domain.gate decides what they mean).

Consumers: each workload afterSuccess restarted, and its pods (by the workload's selector) that
carry the version stamp. Jobs: created once per promotion, check and generation (by name, so a
second attempt finds the first's), owned by the promotion (deleted with it); a failed Job's last log
lines go into the check's message.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from secretstage.aftersuccess import WORKLOAD_RESOURCES
from secretstage.domain.gate import (
    Analysis,
    Check,
    Gate,
    GateJob,
    Verdict,
    analysis_check,
    analysis_run,
    analysis_run_name,
    canary_check,
    consumer_check,
    has_condition,
    job_check,
    job_name,
    missing_args,
)
from secretstage.domain.gate import cannot_run as gate_cannot_run
from secretstage.domain.promotion import canary_name, canary_spec
from secretstage.kube import GROUP, VERSION
from secretstage.kubehttp import KubeCallFailed, KubeHttp, path

KIND = "SecretStagePromotion"
ROLLOUTS_GROUP, ROLLOUTS_VERSION = "argoproj.io", "v1alpha1"
LOG_LINES = 5
LOG_CHARS = 400


@dataclass(frozen=True)
class Owner:
    """The promotion a gate belongs to (its Jobs are owned by it, and named after it)."""

    namespace: str
    name: str
    uid: str
    generation: int


async def checks(
    kube: KubeHttp, owner: Owner, gate: Gate, version: str, *, restart: Sequence[tuple[str, str]]
) -> list[Check]:
    # coroutines are made only for checks that run: one made and dropped would warn "never awaited"
    work = (
        [consumer(kube, owner.namespace, kind, name, version, gate.max_restarts) for kind, name in restart]
        if gate.consumers
        else []
    )
    work += [smoke_job(kube, owner, job) for job in gate.jobs]
    if gate.analysis is not None:
        work.append(analysis(kube, owner, gate.analysis))
    return list(await asyncio.gather(*work))


async def cannot_run(
    kube: KubeHttp, namespace: str, gate: Gate, restart: Sequence[tuple[str, str]]
) -> list[tuple[str, str]]:
    """The gate's refusals from what the API server has now: consumers (domain.gate.cannot_run), and
    for analysis Argo Rollouts' CRDs, the templates and their args. A read that fails for another
    reason raises: the attempt is retried, nothing moved."""
    problems: list[tuple[str, str]] = []
    if gate.consumers:

        async def read(kind: str, name: str) -> dict[str, Any] | None:
            url = path("apis", "apps", "v1", "namespaces", namespace, WORKLOAD_RESOURCES[kind], name)
            return await _get_or_none(kube, namespace, url)

        workloads = await asyncio.gather(*(read(kind, name) for kind, name in restart))
        problems += gate_cannot_run(gate, restart, workloads)
    if gate.analysis is not None:
        problems += await _analysis_cannot_run(kube, namespace, gate.analysis)
    return problems


async def _get_or_none(kube: KubeHttp, namespace: str, url: str) -> dict[str, Any] | None:
    try:
        return dict(await kube.request(namespace, "GET", url))
    except KubeCallFailed as exc:
        if exc.status == 404:
            return None
        raise


async def _analysis_cannot_run(kube: KubeHttp, namespace: str, analysis: Analysis) -> list[tuple[str, str]]:
    group = await _get_or_none(kube, namespace, path("apis", ROLLOUTS_GROUP, ROLLOUTS_VERSION))
    served = {r.get("name") for r in (group or {}).get("resources") or [] if isinstance(r, Mapping)}
    if "analysisruns" not in served:
        return [
            (
                "spec.gate.analysis",
                f"Argo Rollouts is not installed: the API server serves no AnalysisRun ({ROLLOUTS_GROUP}/"
                f"{ROLLOUTS_VERSION}); install Argo Rollouts (its CRDs and analysis controller), or remove "
                "spec.gate.analysis",
            )
        ]
    templates, problems = await _templates(kube, namespace, analysis)
    if problems:
        return problems
    return [
        (
            "spec.gate.analysis.args",
            f"the templates need {name!r}, which has no default: add {{name: {name}, value: ...}} to "
            "spec.gate.analysis.args",
        )
        for name in missing_args(templates, analysis.args)
    ]


async def _templates(
    kube: KubeHttp, namespace: str, analysis: Analysis
) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """The (Cluster)AnalysisTemplates ``analysis`` names, and a problem for each one that does not exist."""
    found, problems = [], []
    for i, ref in enumerate(analysis.templates):
        if ref.cluster_scope:
            url = path("apis", ROLLOUTS_GROUP, ROLLOUTS_VERSION, "clusteranalysistemplates", ref.name)
            where = "in the cluster"
        else:
            url = path("apis", ROLLOUTS_GROUP, ROLLOUTS_VERSION, "namespaces", namespace, "analysistemplates", ref.name)
            where = f"in namespace {namespace}"
        template = await _get_or_none(kube, namespace, url)
        if template is None:
            problems.append(
                (
                    f"spec.gate.analysis.templates[{i}]",
                    f"{ref.kind} {ref.name} not found {where}: create it, or correct templateName"
                    + ("" if ref.cluster_scope else " (clusterScope: true for a ClusterAnalysisTemplate)"),
                )
            )
        else:
            found.append(template)
    return found, problems


async def analysis(kube: KubeHttp, owner: Owner, spec: Analysis) -> Check:
    """The gate's AnalysisRun: created once per promotion and generation from the templates as they are
    then (owned by the promotion: deleted with it), then followed by its phase."""
    name = analysis_run_name(owner.name, owner.generation)
    runs = path("apis", ROLLOUTS_GROUP, ROLLOUTS_VERSION, "namespaces", owner.namespace, "analysisruns")
    try:
        run = await _get_or_none(kube, owner.namespace, f"{runs}/{name}")
        if run is not None:
            return analysis_check(name, run)
        templates, problems = await _templates(kube, owner.namespace, spec)
        if problems:
            return Check("AnalysisRun", name, Verdict.FAILED, "; ".join(f"{f}: {m}" for f, m in problems))
        manifest = analysis_run(spec, templates, name, _owner_reference(owner))
        try:
            await kube.request(owner.namespace, "POST", runs, json=manifest)
        except KubeCallFailed as exc:
            if exc.status == 409:  # another attempt created it a moment ago
                return analysis_check(name, None)
            if exc.status in (400, 422):  # the templates' metrics do not make a valid run
                return Check(
                    "AnalysisRun", name, Verdict.FAILED, f"AnalysisRun {name}: the API server refused it: {exc.message}"
                )
            raise
        return analysis_check(name, None)
    except KubeCallFailed as exc:
        return Check("AnalysisRun", name, Verdict.PENDING, f"AnalysisRun {name}: HTTP {exc.status} {exc.message}")
    except Exception as exc:
        return Check("AnalysisRun", name, Verdict.PENDING, f"AnalysisRun {name}: {type(exc).__name__}")


async def canary(kube: KubeHttp, owner: Owner, parent_spec: Mapping[str, Any]) -> Check:
    """The canary promotion of this generation: created once (owned by the parent: deleted with it),
    then followed until it is final. Its own protocol moves the canary label, gates it and, when its
    gate fails, moves it back."""
    name = canary_name(owner.name, owner.generation)
    promotions = path("apis", GROUP, VERSION, "namespaces", owner.namespace, "secretstagepromotions")
    try:
        child = await _get_or_none(kube, owner.namespace, f"{promotions}/{name}")
        if child is None:
            manifest = {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
                "metadata": {
                    "name": name,
                    "labels": {"secretstage.io/canary-of": owner.name},
                    "ownerReferences": [_owner_reference(owner)],
                },
                "spec": canary_spec(parent_spec),
            }
            try:
                await kube.request(owner.namespace, "POST", promotions, json=manifest)
            except KubeCallFailed as exc:
                if exc.status == 409:
                    return Check(KIND, name, Verdict.PENDING, f"canary {name}: created")
                if exc.status in (400, 422):
                    return Check(KIND, name, Verdict.FAILED, f"canary {name}: the API server refused it: {exc.message}")
                raise
            return Check(KIND, name, Verdict.PENDING, f"canary {name}: created")
        return canary_check(name, child)
    except KubeCallFailed as exc:
        return Check(KIND, name, Verdict.PENDING, f"canary {name}: HTTP {exc.status} {exc.message}")
    except Exception as exc:
        return Check(KIND, name, Verdict.PENDING, f"canary {name}: {type(exc).__name__}")


def _owner_reference(owner: Owner) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": owner.name, "uid": owner.uid}


def selector(workload: Mapping[str, Any]) -> str:
    """The workload's label selector as a query string (matchLabels and matchExpressions)."""
    spec = (workload.get("spec") or {}).get("selector") or {}
    terms = [f"{k}={v}" for k, v in sorted((spec.get("matchLabels") or {}).items())]
    for expression in spec.get("matchExpressions") or []:
        key, operator, values = expression.get("key"), expression.get("operator"), expression.get("values") or []
        if operator == "In":
            terms.append(f"{key} in ({','.join(values)})")
        elif operator == "NotIn":
            terms.append(f"{key} notin ({','.join(values)})")
        elif operator == "Exists":
            terms.append(str(key))
        elif operator == "DoesNotExist":
            terms.append(f"!{key}")
    return ",".join(terms)


async def consumer(kube: KubeHttp, namespace: str, kind: str, name: str, version: str, max_restarts: int) -> Check:
    url = path("apis", "apps", "v1", "namespaces", namespace, WORKLOAD_RESOURCES[kind], name)
    try:
        workload = await kube.request(namespace, "GET", url)
        query = urlencode({"labelSelector": selector(workload)})
        pods = await kube.request(namespace, "GET", f"{path('api', 'v1', 'namespaces', namespace, 'pods')}?{query}")
    except KubeCallFailed as exc:
        if exc.status == 404:
            return Check(kind, name, Verdict.FAILED, f"{kind} {namespace}/{name} not found")
        return Check(kind, name, Verdict.PENDING, f"{kind} {name}: cannot read it: HTTP {exc.status} {exc.message}")
    except Exception as exc:  # the API server unreachable: look again
        return Check(kind, name, Verdict.PENDING, f"{kind} {name}: cannot read it: {type(exc).__name__}")
    workload.setdefault("kind", kind)
    return consumer_check(workload, pods.get("items") or [], version, max_restarts)


async def smoke_job(kube: KubeHttp, owner: Owner, job: GateJob) -> Check:
    name = job_name(owner.name, job.name, owner.generation)
    jobs = path("apis", "batch", "v1", "namespaces", owner.namespace, "jobs")
    try:
        try:
            found: dict[str, Any] | None = await kube.request(owner.namespace, "GET", f"{jobs}/{name}")
        except KubeCallFailed as exc:
            if exc.status != 404:
                raise
            found = None
        if found is None:
            try:
                await kube.request(owner.namespace, "POST", jobs, json=job_manifest(owner, job, name))
            except KubeCallFailed as exc:
                if exc.status == 409:  # another attempt created it a moment ago
                    return job_check(name, None)
                if exc.status in (400, 422):  # the template is not a valid JobSpec: it can never pass
                    return Check("Job", name, Verdict.FAILED, f"Job {name}: the API server refused it: {exc.message}")
                raise
            return job_check(name, None)
        failed = has_condition(found, "Failed")
        return job_check(name, found, await _log_tail(kube, owner.namespace, name) if failed else "")
    except KubeCallFailed as exc:
        return Check("Job", name, Verdict.PENDING, f"Job {name}: HTTP {exc.status} {exc.message}")
    except Exception as exc:
        return Check("Job", name, Verdict.PENDING, f"Job {name}: {type(exc).__name__}")


def job_manifest(owner: Owner, job: GateJob, name: str) -> dict[str, Any]:
    spec = copy.deepcopy(dict(job.template))
    spec.setdefault("backoffLimit", 0)  # a smoke test either passes or fails; retries are the test's business
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": owner.namespace,
            "labels": {"secretstage.io/promotion": owner.name, "secretstage.io/gate-check": job.name},
            "ownerReferences": [_owner_reference(owner)],
        },
        "spec": spec,
    }


async def _log_tail(kube: KubeHttp, namespace: str, job: str) -> str:
    """The last lines the Job's newest pod printed (best effort: none when they cannot be read)."""
    try:
        query = urlencode({"labelSelector": f"job-name={job}"})
        pods = (await kube.request(namespace, "GET", f"{path('api', 'v1', 'namespaces', namespace, 'pods')}?{query}"))[
            "items"
        ]
        if not pods:
            return ""
        newest = max(pods, key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "")
        pod = (newest.get("metadata") or {}).get("name")
        url = path("api", "v1", "namespaces", namespace, "pods", str(pod), "log")
        text = await kube.request_text(namespace, f"{url}?{urlencode({'tailLines': LOG_LINES})}")
    except Exception:
        return ""
    return " | ".join(line.strip() for line in text.strip().splitlines()[-LOG_LINES:])[-LOG_CHARS:]
