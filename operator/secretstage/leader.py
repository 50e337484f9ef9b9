"""Leader election on a coordination.k8s.io/v1 Lease, the way client-go's leaderelection does it.

Why not kopf peering: peering pauses operators by priority, and replicas of one Deployment share
one priority, in which case kopf pauses all of them. A Lease gives exactly one active replica.

Expiry is judged by this process's own clock since it last saw the record change (not by the
renewTime written by another node), so clock skew between nodes does not matter.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from secretstage.config import KUBE_REQUEST_TIMEOUT

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaseConfig:
    name: str
    namespace: str
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


def _now() -> datetime:
    return datetime.now(UTC)


class LeaderElector:
    def __init__(
        self, api: k8s.CoordinationV1Api, config: LeaseConfig, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.api = api
        self.config = config
        self._monotonic = monotonic
        self._observed: tuple[str | None, object] | None = None
        self._observed_at = 0.0
        self._renew_started: float | None = None  # when the last successful renewal was sent
        # Renewals get a thread of their own: a default executor busy with promotions' Kubernetes
        # calls must not delay them.
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="lease")

    async def _call(self, fn: Callable[..., object], *args: object) -> object:
        timeout = (KUBE_REQUEST_TIMEOUT[0], min(KUBE_REQUEST_TIMEOUT[1], self.config.retry_period * 2))
        call = functools.partial(fn, *args, _request_timeout=timeout)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def try_acquire_or_renew(self) -> bool:
        c = self.config
        now = _now()
        try:
            lease = await self._call(self.api.read_namespaced_lease, c.name, c.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            body = k8s.V1Lease(
                metadata=k8s.V1ObjectMeta(name=c.name, namespace=c.namespace),
                spec=k8s.V1LeaseSpec(
                    holder_identity=c.identity,
                    lease_duration_seconds=int(c.lease_duration),
                    acquire_time=now,
                    renew_time=now,
                    lease_transitions=0,
                ),
            )
            try:
                await self._call(self.api.create_namespaced_lease, c.namespace, body)
            except ApiException as create_exc:
                if create_exc.status == 409:
                    return False
                raise
            return True
        assert isinstance(lease, k8s.V1Lease)
        assert lease.spec is not None
        spec = lease.spec
        record = (spec.holder_identity, spec.renew_time)
        if record != self._observed:
            self._observed, self._observed_at = record, self._monotonic()
        holder = spec.holder_identity
        expired = self._monotonic() - self._observed_at > float(spec.lease_duration_seconds or c.lease_duration)
        if holder and holder != c.identity and not expired:
            return False
        if holder != c.identity:
            spec.acquire_time = now
            spec.lease_transitions = (spec.lease_transitions or 0) + 1
            spec.holder_identity = c.identity
        spec.renew_time = now
        spec.lease_duration_seconds = int(c.lease_duration)
        try:
            await self._call(self.api.replace_namespaced_lease, c.name, c.namespace, lease)  # resourceVersion: CAS
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        self._observed, self._observed_at = (spec.holder_identity, spec.renew_time), self._monotonic()
        return True

    async def acquire(self) -> None:
        """Wait until this process holds the Lease."""
        announced = False
        while True:
            try:
                if await self._renew():
                    log.info(
                        "became leader (Lease %s/%s, identity %s)",
                        self.config.namespace,
                        self.config.name,
                        self.config.identity,
                    )
                    return
            except Exception as exc:
                log.warning("leader election: %s", exc)
            if not announced:
                log.info("standing by: Lease %s/%s is held by another replica", self.config.namespace, self.config.name)
                announced = True
            await asyncio.sleep(self.config.retry_period)

    def fence_problem(self) -> str | None:
        """Why this replica may not start a KMS call now, or None.

        A standby takes the Lease no sooner than lease_duration after it saw our last renewal, and
        it saw it after we sent it; so from renew_deadline after sending that renewal we stop, a
        margin of lease_duration - renew_deadline before anyone else can start (docs/operator.md).
        """
        started = self._renew_started
        if started is None:
            return "this replica does not hold the Lease"
        if self._monotonic() - started > self.config.renew_deadline:
            return f"the Lease was not renewed within {self.config.renew_deadline:.0f}s; this replica stops acting"
        return None

    async def _renew(self) -> bool:
        started = self._monotonic()
        if await self.try_acquire_or_renew():
            self._renew_started = started
            return True
        self._renew_started = None
        return False

    async def hold(self) -> None:
        """Renew every retry_period; return when the Lease could not be renewed within renew_deadline."""
        while True:
            await asyncio.sleep(self.config.retry_period)
            try:
                if await asyncio.wait_for(self._renew(), self.config.renew_deadline):
                    continue
                log.error("leadership lost: another replica holds the Lease")
                return
            except Exception as exc:
                log.warning("could not renew the Lease: %s", exc)
            if self.fence_problem() is not None:
                log.error("leadership lost: no renewal for %.0fs", self.config.renew_deadline)
                return

    async def release(self) -> None:
        """Give the Lease up on a clean stop, so a standby takes over at once."""
        c = self.config
        try:
            lease = await self._call(self.api.read_namespaced_lease, c.name, c.namespace)
            assert isinstance(lease, k8s.V1Lease)
            assert lease.spec is not None
            if lease.spec.holder_identity == c.identity:
                lease.spec.holder_identity = None
                lease.spec.lease_duration_seconds = 1
                await self._call(self.api.replace_namespaced_lease, c.name, c.namespace, lease)
                log.info("released the Lease %s/%s", c.namespace, c.name)
        except Exception as exc:
            log.warning("could not release the Lease: %s", exc)
