"""The operator's workers: a fixed number of tasks take promotions from the fair queue, read each one
fresh, run one attempt, post its Events and decide when it runs again.

kopf is the event source: its handler (``handlers.offer``) hands each watch event's key to ``offer``
and returns, so kopf holds no body and no task for a promotion that waits. What waits is its key in
the ``FairQueue``; memory grows with ``--workers``, not with the backlog (docs/operator.md, "Queue").

A promotion that waits for its turn with an empty status is shown as such: phase Pending, reason
Queued, with its place in the queue and the wait the configured KMS rate gives it. That write is made
by two announcer tasks, never by a worker, and is compare-and-set on the resourceVersion the event
carried: it lands only on a status nobody has written yet.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Mapping
from typing import Any

import httpx

from secretstage import kube
from secretstage import reconcile as reconciling
from secretstage.domain.approval import approval_decisions
from secretstage.domain.status import is_done, queued_status
from secretstage.kube import StatusWriteFailed
from secretstage.kubehttp import MERGE_PATCH, KubeCallFailed, path
from secretstage.protocol import Abort, AttemptAborted
from secretstage.reconcile import Runtime
from secretstage.workqueue import FairQueue, Key, Token

log = logging.getLogger("secretstage.workers")

API_VERSION, KIND = f"{kube.GROUP}/{kube.VERSION}", "SecretStagePromotion"
#: KMS requests of a promotion that moves a stage: a read, the move, the read that confirms it (and,
#: where KMS does not move ACSPrevious itself, one more pair). What the expected wait is reckoned with.
KMS_REQUESTS_PER_PROMOTION = 3
ANNOUNCERS = 2
#: A promotion still waiting this long after it was queued is announced as Queued. One that a free
#: worker takes at once (no backlog) costs no write for it.
ANNOUNCE_AFTER_SECONDS = 0.5
READ_AGAIN_SECONDS = 5.0  # the object could not be read (API server unavailable)
UNEXPECTED_AGAIN_SECONDS = 30.0  # a bug or an unforeseen failure: logged, and tried again later


def _object_path(key: Key) -> str:
    return path("apis", kube.GROUP, kube.VERSION, "namespaces", key[0], kube.PLURAL, key[1])


class Workers:
    def __init__(self, runtime: Runtime, queue: FairQueue | None = None, *, instance: str = "") -> None:
        self.runtime = runtime
        self.queue = queue or FairQueue()
        self.instance = instance
        # when it came (loop time), key, generation, resourceVersion, and its place in the queue then
        self._announcements: deque[tuple[float, Key, int, str, int]] = deque()
        self._announce = asyncio.Event()
        self.busy = 0

    # --- events (kopf's handler) --------------------------------------------------------------------

    def offer(
        self,
        event_type: str | None,
        namespace: str,
        name: str,
        uid: str,
        generation: int,
        resource_version: str,
        status: Mapping[str, Any],
        decisions: int = 0,
    ) -> None:
        """A watch event of a promotion: queue its key if its generation has work left. Cheap, no I/O."""
        key = (namespace, name)
        if event_type == "DELETED":
            self.queue.forget(key, (uid, generation, decisions))
            self.runtime.finished.forget(uid)
            self.runtime.metrics.waiting_for(uid, None)
            return
        if is_done(status, generation):
            self.runtime.finished.forget(uid)  # the final status has come back: nothing more to skip
            return
        if self.runtime.finished.covers(uid, generation, resource_version):
            return  # the echo of a status this process wrote for a generation it has finished since
        queued = self.queue.offer(key, (uid, generation, decisions))
        if queued and not status.get("phase") and status.get("observedGeneration") is None:
            position = self.queue.position(key)  # just queued, so last of its namespace: no scan
            if position is not None:
                now = asyncio.get_running_loop().time()
                self._announcements.append((now, key, generation, resource_version, position))
            self._announce.set()

    # --- the tasks -----------------------------------------------------------------------------------

    async def run(self, count: int) -> None:
        """``count`` workers and the announcers, until cancelled."""
        async with asyncio.TaskGroup() as group:
            for _ in range(count):
                group.create_task(self._work())
            for _ in range(ANNOUNCERS):
                group.create_task(self._announcer())

    async def _work(self) -> None:
        while True:
            key = await self.queue.get()
            again_in: float | None = None
            token: Token | None = None
            self.busy += 1
            try:
                again_in, token = await self.process(key)
            except Exception:
                log.exception("[%s/%s] unexpected error; trying again in %.0fs", *key, UNEXPECTED_AGAIN_SECONDS)
                again_in = UNEXPECTED_AGAIN_SECONDS
            finally:
                self.busy -= 1
                self.queue.done(key, again_in=again_in, token=token)

    async def process(self, key: Key) -> tuple[float | None, Token | None]:
        """One turn of a promotion: read it, run an attempt. Returns when to run it again (None: not
        unless it changes) and the (uid, generation) it was about."""
        namespace, name = key
        runtime = self.runtime
        try:
            obj = await runtime.kube.request(namespace, "GET", _object_path(key))
        except KubeCallFailed as exc:
            if exc.status == 404:
                return None, None  # deleted while it waited
            log.warning("[%s/%s] reading the promotion failed: %s; again in %.0fs", *key, exc, READ_AGAIN_SECONDS)
            return READ_AGAIN_SECONDS, None
        except httpx.HTTPError as exc:
            log.warning("[%s/%s] reading the promotion failed: %s", *key, type(exc).__name__)
            return READ_AGAIN_SECONDS, None
        meta, status = obj.get("metadata") or {}, obj.get("status") or {}
        uid, generation = str(meta.get("uid") or ""), int(meta.get("generation") or 0)
        token = (uid, generation, approval_decisions(meta.get("annotations") or {}))
        if is_done(status, generation):
            return None, token
        self.queue.working_on(key, token)
        try:
            attempt = await reconciling.run_attempt(
                runtime,
                spec=obj.get("spec") or {},
                status=status,
                namespace=namespace,
                name=name,
                generation=generation,
                resource_version=str(meta.get("resourceVersion") or ""),
                uid=uid,
                annotations=meta.get("annotations") or {},
                created=str(meta.get("creationTimestamp") or ""),
            )
        except StatusWriteFailed as exc:
            log.warning("[%s/%s] %s; nothing more was sent to KMS; again in %.0fs", *key, exc, READ_AGAIN_SECONDS)
            return READ_AGAIN_SECONDS, token
        except AttemptAborted as aborted:
            if aborted.why in (Abort.DELETED, Abort.REPLACED):
                # This object is gone; a re-created one is another object, queued by its own events.
                log.info("[%s/%s] stopped: %s; nothing more is sent for this object", *key, aborted.why.value)
                return None, None
            if is_done(aborted.status, generation):
                return None, token  # another attempt (another replica) finished this generation
            # The object changed under the attempt (a newer generation, another writer): read it again.
            log.debug("[%s/%s] stopped: %s; looking again", *key, aborted.why.value)
            return 1.0, None
        involved = {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "namespace": namespace,
            "name": name,
            "uid": uid,
            "resourceVersion": attempt.resource_versions[-1] if attempt.resource_versions else "",
        }
        for event_type, reason, message in attempt.events:
            try:
                await kube.post_event(runtime.kube, involved, event_type, reason, message, instance=self.instance)
            except (KubeCallFailed, httpx.HTTPError) as exc:
                log.warning("[%s/%s] could not post the %s Event: %s", *key, reason, type(exc).__name__)
        result, outcome = attempt.result, attempt.result.outcome
        log.info("[%s/%s] %s: %s (RequestId %s)", *key, outcome.reason, outcome.message, result.request_id or "-")
        if outcome.terminal:
            runtime.finished.add(uid, generation, attempt.resource_versions)
            return None, token
        return outcome.delay, token

    async def _announcer(self) -> None:
        """Write Pending/Queued, with the place and expected wait, on promotions that wait with an empty status."""
        while True:
            await self._announce.wait()
            self._announce.clear()
            while self._announcements:
                came, key, generation, resource_version, position = self._announcements.popleft()
                wait = came + ANNOUNCE_AFTER_SECONDS - asyncio.get_running_loop().time()
                if wait > 0:
                    await asyncio.sleep(wait)  # oldest first: those after it are due later
                if not self.queue.is_ready(key):
                    continue  # a worker has it already (or it is gone): nothing to announce
                await self._write_queued(key, generation, resource_version, position)

    async def _write_queued(self, key: Key, generation: int, resource_version: str, position: int) -> None:
        rate = self.runtime.settings.kms_rate_limit
        wait = math.ceil((position + 1) * KMS_REQUESTS_PER_PROMOTION / rate)
        message = (
            f"waiting for its turn: {position} promotion(s) ahead in the operator's queue; about {wait}s at the "
            f"configured KMS rate ({rate:g} requests/s, about {KMS_REQUESTS_PER_PROMOTION} per promotion). "
            "Nothing has been sent to KMS"
        )
        now = reconciling.utcnow()
        status = queued_status(
            generation, now, message, {"position": position, "estimatedWaitSeconds": wait, "queuedTime": now}
        )
        body = {"metadata": {"resourceVersion": resource_version}, "status": status}
        try:
            await self.runtime.kube.request(
                key[0], "PATCH", _object_path(key) + "/status", json=body, content_type=MERGE_PATCH
            )
        except (KubeCallFailed, httpx.HTTPError) as exc:
            # 409: the status changed since (a worker got to it first); 404: gone. Either way not queued now.
            log.debug("[%s/%s] Queued status not written: %s", *key, type(exc).__name__)

    def lengths(self) -> dict[str, tuple[int, int]]:
        return self.queue.lengths()
