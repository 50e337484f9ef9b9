"""After a stage moved: restart workloads and re-sync ExternalSecrets so consumers read the new value.

Best effort by design: a missing target, a denied patch or any other error is reported (status +
Warning event), never turned into a failed promotion or raised: the credential is already live in
KMS. At most once per generation: the protocol journals that it started before calling ``run_all``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from secretstage.domain.gate import RESTARTED_AT, VERSION_ANNOTATION  # the gate counts the restarted pods by these
from secretstage.kubehttp import MERGE_PATCH, KubeCallFailed, KubeHttp, path

FORCE_SYNC = "force-sync"  # the annotation External Secrets Operator re-syncs on
ESO_GROUP, ESO_PLURAL = "external-secrets.io", "externalsecrets"
# v1 since External Secrets Operator 0.17; older releases serve only v1beta1. The annotation is the
# same in both, so the first version the cluster serves is patched.
ESO_VERSIONS = ("v1", "v1beta1")


@dataclass(frozen=True)
class FollowUp:
    kind: str
    name: str
    result: str  # Restarted | Refreshed | NotFound | Forbidden | Error
    message: str

    @property
    def ok(self) -> bool:
        return self.result in ("Restarted", "Refreshed")

    def to_status(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name, "result": self.result, "message": self.message}


WORKLOAD_RESOURCES = {"Deployment": "deployments", "StatefulSet": "statefulsets", "DaemonSet": "daemonsets"}


def _failure(kind: str, name: str, namespace: str, exc: KubeCallFailed) -> FollowUp:
    if exc.status == 404:
        return FollowUp(kind, name, "NotFound", f"{kind} {namespace}/{name} not found; nothing restarted or refreshed")
    if exc.status == 403 and "ValidatingAdmissionPolicy" in exc.message:  # the chart's: this patch, not RBAC
        return FollowUp(kind, name, "Forbidden", f"patching {kind} {namespace}/{name} was refused: {exc.message}")
    if exc.status == 403:
        return FollowUp(
            kind,
            name,
            "Forbidden",
            f"the operator may not patch {kind} {namespace}/{name}; enable it in the chart (afterSuccess.*; "
            "with rbac.tenantAccess=optIn the namespace must also have opted in)",
        )
    return FollowUp(kind, name, "Error", f"patching {kind} {namespace}/{name} failed: HTTP {exc.status}")


async def _patch(
    kube: KubeHttp, namespace: str, kind: str, name: str, url: str, patch: dict[str, Any]
) -> FollowUp | None:
    """None when patched; else what went wrong, as a result (never raised out of the handler)."""
    try:
        await kube.request(namespace, "PATCH", url, json=patch, content_type=MERGE_PATCH)
    except KubeCallFailed as exc:
        return _failure(kind, name, namespace, exc)
    except Exception as exc:  # connection errors and the like
        return FollowUp(kind, name, "Error", f"patching {kind} {namespace}/{name} failed: {type(exc).__name__}")
    return None


async def restart_workload(
    kube: KubeHttp, namespace: str, kind: str, name: str, now: str, version: str | None = None
) -> FollowUp:
    annotations = {RESTARTED_AT: now, **({VERSION_ANNOTATION: version} if version else {})}
    patch = {"spec": {"template": {"metadata": {"annotations": annotations}}}}
    url = path("apis", "apps", "v1", "namespaces", namespace, WORKLOAD_RESOURCES[kind], name)
    failed = await _patch(kube, namespace, kind, name, url, patch)
    return failed or FollowUp(kind, name, "Restarted", f"{kind} {namespace}/{name} restarted ({RESTARTED_AT}={now})")


async def _served(kube: KubeHttp, namespace: str, version: str) -> bool:
    """Whether the API server serves ExternalSecrets at ``version`` (its discovery document lists them)."""
    try:
        document = await kube.request(namespace, "GET", path("apis", ESO_GROUP, version))
    except KubeCallFailed:
        return False
    except Exception:  # connection errors: let the patch itself report them
        return True
    resources = document.get("resources") if isinstance(document, dict) else None
    return any(isinstance(r, dict) and r.get("name") == ESO_PLURAL for r in resources or [])


async def refresh_external_secret(kube: KubeHttp, namespace: str, name: str, stamp: str) -> FollowUp:
    patch = {"metadata": {"annotations": {FORCE_SYNC: stamp}}}
    for version in ESO_VERSIONS:
        url = path("apis", ESO_GROUP, version, "namespaces", namespace, ESO_PLURAL, name)
        failed = await _patch(kube, namespace, "ExternalSecret", name, url, patch)
        if failed is None:
            return FollowUp("ExternalSecret", name, "Refreshed", f"ExternalSecret {namespace}/{name} re-sync requested")
        if failed.result != "NotFound" or await _served(kube, namespace, version):
            return failed  # the object is missing (or another error), not the API version
    return FollowUp(
        "ExternalSecret",
        name,
        "NotFound",
        f"the cluster serves no ExternalSecret API ({', '.join(f'{ESO_GROUP}/{v}' for v in ESO_VERSIONS)}): "
        "is External Secrets Operator installed? Nothing was refreshed",
    )


async def run_all(
    kube: KubeHttp,
    namespace: str,
    restart: tuple[tuple[str, str], ...],
    refresh: tuple[str, ...],
    now: str,
    stamp: str,
    version: str | None = None,
) -> list[FollowUp]:
    jobs = [restart_workload(kube, namespace, kind, name, now, version) for kind, name in restart]
    jobs += [refresh_external_secret(kube, namespace, name, stamp) for name in refresh]
    return list(await asyncio.gather(*jobs))
