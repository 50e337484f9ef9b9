"""A worker's turn at a promotion (workers.py and reconcile), in-process, on the real API server with
the emulator: what it reads, writes and posts, and when it asks to run again. No operator process,
no kopf: the queue hands a worker only a key, and the worker reads the object itself.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from kubernetes import client as k8s

from secretstage import aftersuccess
from secretstage.config import Settings
from secretstage.emulator.app import Faults
from secretstage.kms import FairGate, TokenBucket
from secretstage.kubehttp import KubeHttp
from secretstage.metrics import Metrics
from secretstage.reconcile import Runtime
from secretstage.workers import Workers
from tests.cluster import Cluster
from tests.conftest import ACCESS_KEY_ID, ACCESS_KEY_SECRET, RunningEmulator
from tests.harness import GROUP, PLURAL, VERSION


@pytest.fixture
async def runtime(cluster: Cluster, crd: None, kms: RunningEmulator) -> AsyncIterator[Runtime]:
    runtime = Runtime(
        settings=Settings(endpoint_allow=(re.escape(kms.url),)),
        http=httpx.AsyncClient(timeout=10),
        rate_limiter=TokenBucket(1000, 1000),
        gate=FairGate(20),
        kube=KubeHttp.from_configuration(cluster.api.configuration),
        metrics=Metrics(),
    )
    yield runtime
    await runtime.aclose()


@pytest.fixture
def tenant(cluster: Cluster, namespace: str) -> str:
    core = k8s.CoreV1Api(cluster.api)
    data = {"AccessKeyId": ACCESS_KEY_ID, "AccessKeySecret": ACCESS_KEY_SECRET}
    core.create_namespaced_secret(
        namespace, k8s.V1Secret(metadata=k8s.V1ObjectMeta(name="kms-credentials"), string_data=data)
    )
    return namespace


class Objects:
    def __init__(self, cluster: Cluster, namespace: str, url: str) -> None:
        self.api = k8s.CustomObjectsApi(cluster.api)
        self.namespace, self.url = namespace, url

    def create(self, name: str, secret: str, **spec: Any) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "SecretStagePromotion",
            "metadata": {"name": name},
            "spec": {
                "secretName": secret,
                "versionStage": "ACSCurrent",
                "endpoint": self.url,
                "credentials": {"secretRef": {"name": "kms-credentials"}},
                **spec,
            },
        }
        return dict(self.api.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body))

    def get(self, name: str) -> dict[str, Any]:
        return dict(self.api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name))


@pytest.fixture
def objects(cluster: Cluster, tenant: str, kms: RunningEmulator) -> Objects:
    return Objects(cluster, tenant, kms.url)


def posted(cluster: Cluster, namespace: str, name: str) -> list[tuple[str, str, str]]:
    """The Events about one promotion, oldest first, as (type, reason, message)."""
    listed = k8s.CoreV1Api(cluster.api).list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}")
    return [(e.type, e.reason, e.message) for e in sorted(listed.items, key=lambda e: e.metadata.creation_timestamp)]


async def turn(runtime: Runtime, cluster: Cluster, namespace: str, name: str) -> tuple[float | None, list[Any]]:
    """One worker's turn at a promotion, as the queue hands it out: read fresh, one attempt, its Events.
    Returns when it should run again (None: not unless it changes) and the Events this turn posted."""
    before = len(posted(cluster, namespace, name))
    again, _ = await Workers(runtime).process((namespace, name))
    return again, posted(cluster, namespace, name)[before:]


def reason(obj: dict[str, Any]) -> str:
    return str(next(c["reason"] for c in obj["status"]["conditions"] if c["type"] == "Succeeded"))


async def test_success_writes_status_and_posts_the_move(
    runtime: Runtime, objects: Objects, seeded: str, kms: RunningEmulator, cluster: Cluster
) -> None:
    objects.create("ok", seeded, moveToVersion="v2")
    again, events = await turn(runtime, cluster, objects.namespace, "ok")
    assert again is None
    obj = objects.get("ok")
    status = obj["status"]
    assert (status["phase"], reason(obj)) == ("Succeeded", "Promoted")
    move = next(h for h in kms.emulator.history if h["action"] == "UpdateSecretVersionStage")
    assert status["requestId"] == move["request_id"]  # the move's RequestId, never a read's
    assert status["move"]["answer"] == "Received"
    assert events[0][:2] == ("Normal", "Promoted")
    assert move["request_id"] in events[0][2]


async def test_failure_is_final_and_posted(runtime: Runtime, objects: Objects, seeded: str, cluster: Cluster) -> None:
    objects.create("bad", seeded, moveToVersion="v2", precondition={"currentVersion": "v9"})
    again, events = await turn(runtime, cluster, objects.namespace, "bad")
    assert again is None  # not run again unless the spec changes
    assert [e[:2] for e in events] == [("Warning", "PromotionFailed")]
    obj = objects.get("bad")
    assert (obj["status"]["phase"], reason(obj)) == ("Failed", "PreconditionFailed")
    assert "requestId" not in obj["status"]  # nothing moved: no RequestId, not a read's


async def test_throttled_read_runs_again_after_the_backoff(
    runtime: Runtime, objects: Objects, seeded: str, kms: RunningEmulator, cluster: Cluster
) -> None:
    kms.emulator.faults = {"ListSecretVersionIds": Faults(throttle=1.0)}
    objects.create("slow", seeded, moveToVersion="v2")
    again, _ = await turn(runtime, cluster, objects.namespace, "slow")
    assert again is not None
    assert again >= 1.0
    obj = objects.get("slow")
    assert (obj["status"]["phase"], reason(obj)) == ("InProgress", "Rejected_Throttling")


async def test_lost_answer_is_confirmed_without_a_second_move(
    runtime: Runtime, objects: Objects, seeded: str, kms: RunningEmulator, cluster: Cluster
) -> None:
    kms.emulator.faults = {"UpdateSecretVersionStage": Faults(drop_after=1.0)}
    objects.create("lost", seeded, moveToVersion="v2")
    await turn(runtime, cluster, objects.namespace, "lost")
    obj = objects.get("lost")
    assert (obj["status"]["phase"], reason(obj)) == ("Succeeded", "PromotedAnswerLost")
    assert kms.emulator.calls["UpdateSecretVersionStage"] == 1  # sent once, confirmed by a read
    assert "requestId" not in obj["status"]  # unknown, and said so, rather than a read's RequestId
    assert "ActionTrail" in next(c["message"] for c in obj["status"]["conditions"] if c["type"] == "Succeeded")


async def test_a_turn_for_a_done_promotion_does_nothing(
    runtime: Runtime, objects: Objects, seeded: str, kms: RunningEmulator, cluster: Cluster
) -> None:
    """A key queued again after its generation finished (a late event of its own intent write): the
    fresh read shows it done; no KMS call, no write, no Event."""
    restart = {"restart": [{"kind": "Deployment", "name": "x"}]}
    objects.create("done", seeded, moveToVersion="v2", afterSuccess=restart)
    await turn(runtime, cluster, objects.namespace, "done")
    done = objects.get("done")
    calls = dict(kms.emulator.calls)
    again, events = await turn(runtime, cluster, objects.namespace, "done")
    assert (again, events) == (None, [])
    assert objects.get("done") == done
    assert dict(kms.emulator.calls) == calls


async def test_a_promotion_deleted_before_its_turn_sends_nothing_and_stops(
    runtime: Runtime, objects: Objects, seeded: str, kms: RunningEmulator, cluster: Cluster
) -> None:
    """Deleted while its key waited in the queue: the worker's read finds nothing; no move, no retry."""
    objects.create("gone", seeded, moveToVersion="v2")
    objects.api.delete_namespaced_custom_object(GROUP, VERSION, objects.namespace, PLURAL, "gone")
    again, _ = await Workers(runtime).process((objects.namespace, "gone"))
    assert again is None
    assert kms.emulator.calls.get("UpdateSecretVersionStage", 0) == 0
    assert kms.placement(seeded)["v1"] == ["ACSCurrent"]


async def test_second_promotion_of_a_secret_waits_visibly(
    runtime: Runtime, objects: Objects, seeded: str, kms: RunningEmulator, cluster: Cluster
) -> None:
    kms.emulator.faults = {"UpdateSecretVersionStage": Faults(latency_ms=500)}
    objects.create("first", seeded, moveToVersion="v2")
    objects.create("second", seeded, moveToVersion="v1")
    running = asyncio.create_task(turn(runtime, cluster, objects.namespace, "first"))
    # The second starts only once the first holds the secret (its move journaled), not by luck of scheduling.
    deadline = asyncio.get_running_loop().time() + 30
    while (objects.get("first").get("status") or {}).get("move") is None:
        assert asyncio.get_running_loop().time() < deadline, f"first never journaled its move: {objects.get('first')}"
        await asyncio.sleep(0.05)
    again, _ = await turn(runtime, cluster, objects.namespace, "second")
    assert again is not None  # looked at again soon
    await running
    waiting = objects.get("second")
    assert (waiting["status"]["phase"], reason(waiting)) == ("Pending", "WaitingForSecret")
    assert f"{objects.namespace}/first" in waiting["status"]["conditions"][0]["message"]
    assert kms.emulator.calls["UpdateSecretVersionStage"] == 1  # the second one sent nothing while waiting
    await turn(runtime, cluster, objects.namespace, "second")  # its turn now
    assert objects.get("second")["status"]["phase"] == "Succeeded"
    assert kms.placement(seeded)["v1"][0] == "ACSCurrent"


async def test_after_success_errors_are_reported_not_raised() -> None:
    """Any error on one target (here the API server cannot be reached at all) is a result, not an exception."""
    kube = KubeHttp(httpx.AsyncClient(base_url="http://127.0.0.1:9"))  # discard port: nothing listens
    try:
        results = await aftersuccess.run_all(kube, "ns", (("Deployment", "web"),), ("db",), now="t", stamp="1")
    finally:
        await kube.aclose()
    assert [(r.kind, r.result) for r in results] == [("Deployment", "Error"), ("ExternalSecret", "Error")]
    assert all("failed" in r.message for r in results)
