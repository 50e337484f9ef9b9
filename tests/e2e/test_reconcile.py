"""reconcile and the kopf handler glue, in-process, on the real API server with the emulator.

The handler is called as kopf calls it (same arguments, kopf's event queue in place), so what it
raises, writes and posts is what kopf would see: no operator process, no framework loop.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import httpx
import kopf
import pytest
from kopf._core.engines.posting import event_queue_loop_var, event_queue_var, settings_var
from kubernetes import client as k8s

from secretstage import aftersuccess, handlers
from secretstage.config import Settings
from secretstage.emulator.app import Faults
from secretstage.kms import FairGate, TokenBucket
from secretstage.kubehttp import KubeHttp
from secretstage.metrics import Metrics
from secretstage.reconcile import Runtime
from tests.cluster import Cluster
from tests.conftest import ACCESS_KEY_ID, ACCESS_KEY_SECRET, RunningEmulator
from tests.harness import GROUP, PLURAL, VERSION

LOG = logging.getLogger("test")


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


async def handle(runtime: Runtime, body: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Call the handler as kopf does; returns the Events it posted as (type, reason, message)."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    # what kopf's posting engine sets up for every handler it runs
    tokens = [
        (event_queue_var, event_queue_var.set(queue)),
        (event_queue_loop_var, event_queue_loop_var.set(asyncio.get_running_loop())),
        (settings_var, settings_var.set(kopf.OperatorSettings())),
    ]
    try:
        await handlers.promote(
            body=body,
            spec=body["spec"],
            meta=body["metadata"],
            status=body.get("status") or {},
            namespace=body["metadata"]["namespace"],
            name=body["metadata"]["name"],
            uid=body["metadata"]["uid"],
            memo=SimpleNamespace(runtime=runtime),
            logger=LOG,
        )
    finally:
        for var, token in reversed(tokens):
            var.reset(token)  # type: ignore[attr-defined]
        posted = [queue.get_nowait() for _ in range(queue.qsize())]
    return [(e.type, e.reason, e.message) for e in posted]


def reason(obj: dict[str, Any]) -> str:
    return str(next(c["reason"] for c in obj["status"]["conditions"] if c["type"] == "Succeeded"))


async def test_success_writes_status_and_posts_the_move(
    runtime: Runtime, objects: Objects, seeded: str, kms: RunningEmulator
) -> None:
    body = objects.create("ok", seeded, moveToVersion="v2")
    events = await handle(runtime, body)
    obj = objects.get("ok")
    status = obj["status"]
    assert (status["phase"], reason(obj)) == ("Succeeded", "Promoted")
    move = next(h for h in kms.emulator.history if h["action"] == "UpdateSecretVersionStage")
    assert status["requestId"] == move["request_id"]  # the move's RequestId, never a read's
    assert status["move"]["answer"] == "Received"
    assert events[0][:2] == ("Normal", "Promoted")
    assert move["request_id"] in events[0][2]


async def test_failure_raises_permanent_error(runtime: Runtime, objects: Objects, seeded: str) -> None:
    body = objects.create("bad", seeded, moveToVersion="v2", precondition={"currentVersion": "v9"})
    with pytest.raises(kopf.PermanentError, match="PreconditionFailed"):
        await handle(runtime, body)
    obj = objects.get("bad")
    assert (obj["status"]["phase"], reason(obj)) == ("Failed", "PreconditionFailed")
    assert "requestId" not in obj["status"]  # nothing moved: no RequestId, not a read's


async def test_throttled_read_raises_temporary_error_with_the_backoff(
    runtime: Runtime, objects: Objects, seeded: str, kms: RunningEmulator
) -> None:
    kms.emulator.faults = {"ListSecretVersionIds": Faults(throttle=1.0)}
    body = objects.create("slow", seeded, moveToVersion="v2")
    with pytest.raises(kopf.TemporaryError) as err:
        await handle(runtime, body)
    assert err.value.delay is not None
    assert err.value.delay >= 1.0
    obj = objects.get("slow")
    assert (obj["status"]["phase"], reason(obj)) == ("InProgress", "Rejected_Throttling")


async def test_lost_answer_is_confirmed_without_a_second_move(
    runtime: Runtime, objects: Objects, seeded: str, kms: RunningEmulator
) -> None:
    kms.emulator.faults = {"UpdateSecretVersionStage": Faults(drop_after=1.0)}
    body = objects.create("lost", seeded, moveToVersion="v2")
    await handle(runtime, body)
    obj = objects.get("lost")
    assert (obj["status"]["phase"], reason(obj)) == ("Succeeded", "PromotedAnswerLost")
    assert kms.emulator.calls["UpdateSecretVersionStage"] == 1  # sent once, confirmed by a read
    assert "requestId" not in obj["status"]  # unknown, and said so, rather than a read's RequestId
    assert "ActionTrail" in next(c["message"] for c in obj["status"]["conditions"] if c["type"] == "Succeeded")


async def test_stale_body_does_nothing(runtime: Runtime, objects: Objects, seeded: str, kms: RunningEmulator) -> None:
    """kopf hands the handler an old copy of the object (its own patch's event lagged): no call, no write."""
    restart = {"restart": [{"kind": "Deployment", "name": "x"}]}
    body = objects.create("stale", seeded, moveToVersion="v2", afterSuccess=restart)
    await handle(runtime, body)
    done = objects.get("stale")
    calls = dict(kms.emulator.calls)
    events = await handle(runtime, body)  # the creation-time copy again
    assert objects.get("stale") == done
    assert kms.emulator.calls.get("UpdateSecretVersionStage") == calls.get("UpdateSecretVersionStage") == 1
    assert events == []


async def test_unrelated_change_between_read_and_write_is_not_a_conflict(
    runtime: Runtime, objects: Objects, seeded: str, cluster: Cluster
) -> None:
    body = objects.create("labelled", seeded, moveToVersion="v2")
    objects.api.patch_namespaced_custom_object(
        GROUP, VERSION, objects.namespace, PLURAL, "labelled", {"metadata": {"labels": {"team": "payments"}}}
    )
    await handle(runtime, body)  # its resourceVersion is stale, its journal is not
    assert objects.get("labelled")["status"]["phase"] == "Succeeded"


async def test_a_promotion_deleted_before_its_intent_sends_nothing_and_stops(
    runtime: Runtime, objects: Objects, seeded: str, kms: RunningEmulator
) -> None:
    """The intent record cannot be written because the object is gone: no move is sent, and the
    handler stops (nothing to retry for a deleted object: no TemporaryError, no Event)."""
    body = objects.create("gone", seeded, moveToVersion="v2")
    objects.api.delete_namespaced_custom_object(GROUP, VERSION, objects.namespace, PLURAL, "gone")
    assert await handle(runtime, body) == []
    assert kms.emulator.calls.get("UpdateSecretVersionStage", 0) == 0
    assert kms.placement(seeded)["v1"] == ["ACSCurrent"]


async def test_second_promotion_of_a_secret_waits_visibly(
    runtime: Runtime, objects: Objects, seeded: str, kms: RunningEmulator
) -> None:
    kms.emulator.faults = {"UpdateSecretVersionStage": Faults(latency_ms=500)}
    first = objects.create("first", seeded, moveToVersion="v2")
    second = objects.create("second", seeded, moveToVersion="v1")
    running = asyncio.create_task(handle(runtime, first))
    # The second starts only once the first holds the secret (its move journaled), not by luck of scheduling.
    deadline = asyncio.get_running_loop().time() + 30
    while (objects.get("first").get("status") or {}).get("move") is None:
        assert asyncio.get_running_loop().time() < deadline, f"first never journaled its move: {objects.get('first')}"
        await asyncio.sleep(0.05)
    with pytest.raises(kopf.TemporaryError, match="WaitingForSecret"):
        await handle(runtime, second)
    await running
    waiting = objects.get("second")
    assert (waiting["status"]["phase"], reason(waiting)) == ("Pending", "WaitingForSecret")
    assert f"{objects.namespace}/first" in waiting["status"]["conditions"][0]["message"]
    assert kms.emulator.calls["UpdateSecretVersionStage"] == 1  # the second one sent nothing while waiting
    await handle(runtime, objects.get("second"))  # its turn now
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
