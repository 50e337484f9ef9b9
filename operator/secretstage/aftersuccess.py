"""After a stage moved: restart workloads and re-sync ExternalSecrets so consumers read the new value.

Best effort by design: a missing target, a denied patch or any other error is reported (status +
Warning event), never turned into a failed promotion or raised: the credential is already live in
KMS. At most once per generation: the protocol journals that it started before calling ``run_all``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s
from kubernetes.client import AppsV1Api, CustomObjectsApi  # resolved at start-up (see reconcile.py)
from kubernetes.client.exceptions import ApiException

from secretstage.config import KUBE_REQUEST_TIMEOUT
from secretstage.kubecalls import call

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"  # what `kubectl rollout restart` sets
FORCE_SYNC = "force-sync"  # the annotation External Secrets Operator re-syncs on
ESO_GROUP, ESO_VERSION, ESO_PLURAL = "external-secrets.io", "v1", "externalsecrets"


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


def _failure(kind: str, name: str, namespace: str, exc: ApiException) -> FollowUp:
    if exc.status == 404:
        return FollowUp(kind, name, "NotFound", f"{kind} {namespace}/{name} not found; nothing restarted or refreshed")
    if exc.status == 403:
        return FollowUp(
            kind,
            name,
            "Forbidden",
            f"the operator may not patch {kind} {namespace}/{name}; enable it in the chart (afterSuccess.*)",
        )
    return FollowUp(kind, name, "Error", f"patching {kind} {namespace}/{name} failed: HTTP {exc.status}")


async def restart_workload(api: k8s.ApiClient, namespace: str, kind: str, name: str, now: str) -> FollowUp:
    apps = AppsV1Api(api)
    patch = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}}
    method: Any = {
        "Deployment": apps.patch_namespaced_deployment,
        "StatefulSet": apps.patch_namespaced_stateful_set,
        "DaemonSet": apps.patch_namespaced_daemon_set,
    }[kind]
    try:
        await call(namespace, method, name, namespace, patch, _request_timeout=KUBE_REQUEST_TIMEOUT)
    except ApiException as exc:
        return _failure(kind, name, namespace, exc)
    except Exception as exc:  # connection errors and the like: reported, never raised out of the handler
        return FollowUp(kind, name, "Error", f"patching {kind} {namespace}/{name} failed: {type(exc).__name__}")
    return FollowUp(kind, name, "Restarted", f"{kind} {namespace}/{name} restarted ({RESTARTED_AT}={now})")


async def refresh_external_secret(api: k8s.ApiClient, namespace: str, name: str, stamp: str) -> FollowUp:
    custom = CustomObjectsApi(api)
    patch = {"metadata": {"annotations": {FORCE_SYNC: stamp}}}
    try:
        await call(
            namespace,
            custom.patch_namespaced_custom_object,
            ESO_GROUP,
            ESO_VERSION,
            namespace,
            ESO_PLURAL,
            name,
            patch,
            _request_timeout=KUBE_REQUEST_TIMEOUT,
        )
    except ApiException as exc:
        return _failure("ExternalSecret", name, namespace, exc)
    except Exception as exc:
        return FollowUp(
            "ExternalSecret", name, "Error", f"patching ExternalSecret {namespace}/{name} failed: {type(exc).__name__}"
        )
    return FollowUp("ExternalSecret", name, "Refreshed", f"ExternalSecret {namespace}/{name} re-sync requested")


async def run_all(
    api: k8s.ApiClient,
    namespace: str,
    restart: tuple[tuple[str, str], ...],
    refresh: tuple[str, ...],
    now: str,
    stamp: str,
) -> list[FollowUp]:
    jobs = [restart_workload(api, namespace, kind, name, now) for kind, name in restart]
    jobs += [refresh_external_secret(api, namespace, name, stamp) for name in refresh]
    return list(await asyncio.gather(*jobs))
