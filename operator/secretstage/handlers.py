"""kopf handlers: the operator's settings for kopf, login, and the watch events that feed the work queue."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from typing import Any

import kopf

from secretstage.domain.approval import approval_decisions

GROUP, VERSION, PLURAL = "secretstage.io", "v1alpha1", "secretstagepromotions"
registry = kopf.OperatorRegistry()


@kopf.on.startup(registry=registry)
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # An event handler costs kopf no bookkeeping: no progress or diff-base annotations, no finalizer
    # (kopf releases its finalizer, should an object carry one from an older release).
    settings.persistence.finalizer = "secretstage.io/finalizer"
    settings.scanning.disabled = True  # RBAC then needs no cluster-wide CRD or namespace listing
    settings.posting.enabled = False  # our Events are posted by the workers (kube.post_event)
    # Memory does not grow with the promotions kopf has seen: the initial list comes in chunks (not
    # one response of every object), and kopf's per-object worker, which holds the last body it saw,
    # exits soon after its last event (docs/development/benchmarks.md).
    settings.watching.chunk_size = 1000
    settings.queueing.idle_timeout = 0.1
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # kopf's per-object workers only queue a key and end: no limit needed. What is limited is our own
    # workers (--workers), handed out fairly by namespace (workqueue.py), and KMS traffic (kms.ratelimit).
    settings.queueing.worker_limit = None


@kopf.on.cleanup(registry=registry)
async def stopping(memo: kopf.Memo, **_: Any) -> None:
    """kopf is stopping (SIGTERM, or our stop flag): raise the stop flag too.

    kopf 1.45 waits on a stop flag in a task of its own, and when a signal (not the flag) stops it,
    that task is left waiting and kopf gives it 5 s before cancelling it: 5 s more before the Lease is
    released and a standby takes over. Set here, the flag ends that task at once.
    """
    stop = getattr(memo, "stop", None)
    if isinstance(stop, asyncio.Event):
        stop.set()


@kopf.on.login(registry=registry)
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In-cluster ServiceAccount first, else KUBECONFIG (kopf's own readers; re-read on 401).

    In a pod, the API server is the address the kubelet puts in KUBERNETES_SERVICE_HOST/PORT, as
    client-go's InClusterConfig (and our own client) use it; kopf's reader names
    https://kubernetes.default.svc, which needs cluster DNS to work at all.
    """
    info = kopf.login_with_service_account(**kwargs)
    if info is None:
        return kopf.login_with_kubeconfig(**kwargs)
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
    if host and port:
        info = dataclasses.replace(info, server=f"https://{f'[{host}]' if ':' in host else host}:{port}")
    return info


# kopf is the event source, nothing more: every watch event of a promotion (the initial listing at
# start-up included) hands its key to the fair queue and returns. The workers read the object again
# when its turn comes (workers.py); kopf keeps no handler, retry state or body for a promotion that
# waits, so memory follows --workers, not the backlog.
# Async, though it awaits nothing: kopf runs a plain function in a thread, and the queue is the loop's.
@kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
async def offer(
    type: str | None,  # kopf passes the watch event's type under this name
    meta: kopf.Meta,
    status: kopf.Status,
    namespace: str | None,
    name: str | None,
    uid: str | None,
    memo: Any,
    **_: Any,
) -> None:
    memo.workers.offer(
        type,
        namespace or "",
        name or "",
        uid or "",
        int(meta.get("generation") or 0),
        str(meta.get("resourceVersion") or ""),
        status,
        approval_decisions(meta.get("annotations") or {}),
    )
