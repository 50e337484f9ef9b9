"""The leader's fence against the real API server's Lease, with this process's clock under test control."""

from __future__ import annotations

import uuid

from kubernetes import client as k8s

from secretstage.leader import LeaderElector, LeaseConfig
from tests.cluster import Cluster


async def test_fence_closes_renew_deadline_after_the_last_renewal_was_sent(cluster: Cluster, namespace: str) -> None:
    now = [1000.0]
    config = LeaseConfig(f"fence-{uuid.uuid4().hex[:6]}", namespace, "a", lease_duration=15, renew_deadline=10)
    leader = LeaderElector(k8s.CoordinationV1Api(cluster.api), config, monotonic=lambda: now[0])
    assert leader.fence_problem() == "this replica does not hold the Lease"
    await leader.acquire()
    assert leader.fence_problem() is None
    now[0] += 9.9
    assert leader.fence_problem() is None
    now[0] += 0.2  # renew_deadline after the renewal was sent: no call may start any more
    assert "not renewed within 10s" in str(leader.fence_problem())
    # A standby needs lease_duration without a change it saw, measured on its own clock from then.
    standby = LeaderElector(
        k8s.CoordinationV1Api(cluster.api), LeaseConfig(config.name, namespace, "b", 15, 10), monotonic=lambda: now[0]
    )
    assert not await standby.try_acquire_or_renew()  # sees the record now: 15 s from here
    now[0] += 14.9
    assert not await standby.try_acquire_or_renew()
    now[0] += 0.2
    assert await standby.try_acquire_or_renew()  # 5 s and more after the old leader's fence closed
    await leader._renew()  # the old leader finds it lost the Lease: fenced for good
    assert leader.fence_problem() == "this replica does not hold the Lease"
