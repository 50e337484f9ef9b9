"""kopf handlers: read the object, run one reconcile attempt, write status and events. Nothing else."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from typing import Any

import kopf

from secretstage import reconcile as reconciling
from secretstage.bookkeeping import PREFIX, StatusDerivedDiffBase, UnmarkedAnnotationsProgress
from secretstage.domain.outcome import Kind
from secretstage.domain.status import is_done
from secretstage.kube import StatusWriteFailed
from secretstage.protocol import Abort, AttemptAborted

GROUP, VERSION, PLURAL = "secretstage.io", "v1alpha1", "secretstagepromotions"
registry = kopf.OperatorRegistry()


def _not_done(status: kopf.Status, meta: kopf.Meta, uid: str | None, memo: Any, **_: Any) -> bool:
    """This generation is not final: neither in the body kopf has, nor just now by this process."""
    generation, finished = meta.get("generation"), memo.runtime.finished
    if is_done(status, generation):
        finished.forget(uid or "")  # kopf has caught up with our final write
        return False
    return not finished.covers(uid or "", generation, meta.get("resourceVersion"))


@kopf.on.startup(registry=registry)
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # kopf's bookkeeping costs no write of its own (bookkeeping.py): "handled" is read from our status,
    # retry progress goes to annotations under our group (a structural CRD schema prunes anything
    # kopf would write into .status, and handlers would then loop).
    settings.persistence.progress_storage = UnmarkedAnnotationsProgress(prefix=PREFIX)
    settings.persistence.diffbase_storage = StatusDerivedDiffBase()
    settings.persistence.finalizer = "secretstage.io/finalizer"
    settings.scanning.disabled = True  # RBAC then needs no cluster-wide CRD or namespace listing
    settings.posting.level = logging.INFO
    # Memory does not grow with promotions that are done: the initial list comes in chunks (not one
    # response of every object), and kopf's per-object worker, which holds the last body it saw,
    # exits half a second after its last event instead of five (docs/benchmarks.md).
    settings.watching.chunk_size = 1000
    settings.queueing.idle_timeout = 0.5
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # No limit on kopf's workers: one that sleeps out a retry delay would hold its slot, so promotions
    # that retry for ever (a credentials Secret that does not exist) could block every other
    # namespace. What is limited, fairly by namespace, is KMS traffic (kms.ratelimit).
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


# One handler for every generation not yet done: with the status-derived diff-base kopf sees each
# such generation as a creation (at start-up too), and a done one as unchanged.
@kopf.on.create(GROUP, VERSION, PLURAL, registry=registry, when=_not_done)
async def promote(
    body: kopf.Body,
    spec: kopf.Spec,
    meta: kopf.Meta,
    status: kopf.Status,
    namespace: str | None,
    name: str | None,
    uid: str | None,
    memo: Any,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    **_: Any,
) -> None:
    generation = int(meta.get("generation") or 0)
    try:
        attempt = await reconciling.run_attempt(
            memo.runtime,
            spec=spec,
            status=status,
            namespace=namespace or "",
            name=name or "",
            generation=generation,
            resource_version=str(meta.get("resourceVersion") or ""),
            uid=uid or "",
        )
    except StatusWriteFailed as exc:
        raise kopf.TemporaryError(f"{exc}; nothing more was sent to KMS", delay=5) from None
    except AttemptAborted as aborted:
        if aborted.why in (Abort.DELETED, Abort.REPLACED):
            # This object is gone; a re-created one is another object, with a handler of its own.
            logger.info("stopped: %s; nothing more is sent for this object", aborted.why.value)
            return
        # kopf handed us an older copy of the object than the API server has: another attempt
        # journaled this generation meanwhile, or a newer generation came. Done there: nothing to
        # do; else look again soon, from the newest copy.
        if is_done(aborted.status, generation):
            logger.debug("a newer status already finished this generation; nothing to do")
            return
        raise kopf.TemporaryError(f"stopped: {aborted.why.value}; looking again", delay=1) from None
    for event_type, reason, message in attempt.events:
        kopf.event(body, type=event_type, reason=reason, message=message)
    result, outcome = attempt.result, attempt.result.outcome
    if outcome.kind in (Kind.SUCCEEDED, Kind.FAILED):
        memo.runtime.finished.add(uid or "", generation, attempt.resource_versions)
    logger.info("%s: %s (RequestId %s)", outcome.reason, outcome.message, result.request_id or "-")
    if outcome.kind is Kind.FAILED:
        raise kopf.PermanentError(f"{outcome.reason}: {outcome.message}")
    if outcome.kind in (Kind.RETRY, Kind.PENDING):
        raise kopf.TemporaryError(f"{outcome.reason}: {outcome.message}", delay=outcome.delay)
