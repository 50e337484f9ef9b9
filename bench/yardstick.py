"""The yardsticks: minimal controllers with no framework, timed exactly like the operator.

Each watches the promotions of one namespace and handles every new one as a task of its own (at most
``--concurrency`` at a time, the operator's KMS concurrency cap), on one httpx client for the API
server and our KMS client (the same signing) for KMS:

* ``raw``: the least any controller must do: one UpdateSecretVersionStage and one status PATCH.
* ``contract``: our protocol's calls, in our order, without kopf: GET the credentials Secret,
  ListSecretVersionIds (read), PATCH the intent (compare-and-set on resourceVersion),
  UpdateSecretVersionStage, ListSecretVersionIds (read back), PATCH the final status (compare-and-set),
  POST one Event.

No retries, no validation, no error handling: what they measure is the cost of the calls.
Run as a process of its own (``python -m bench.yardstick``), so that its CPU is counted apart.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import ssl
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import yaml

from secretstage.kms import Credentials, KmsClient, StaticProvider
from secretstage.kms.transport import PolledBackend, transport

GROUP, VERSION, PLURAL = "secretstage.io", "v1alpha1", "secretstagepromotions"
MERGE = {"content-type": "application/merge-patch+json"}


def client_for(kubeconfig: str, connections: int, agent: str) -> httpx.AsyncClient:
    with open(kubeconfig) as f:
        config = yaml.safe_load(f)
    cluster, user = config["clusters"][0]["cluster"], config["users"][0]["user"]
    context = ssl.create_default_context(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
    with tempfile.NamedTemporaryFile("wb", suffix=".pem") as pem:
        pem.write(base64.b64decode(user["client-certificate-data"]) + b"\n")
        pem.write(base64.b64decode(user["client-key-data"]))
        pem.flush()
        context.load_cert_chain(pem.name)
    # the operator's HTTP stack (its cheap idle-connection check), so that only the calls differ
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(
        base_url=cluster["server"],
        transport=transport(PolledBackend(), context, limits),
        trust_env=False,
        headers={"User-Agent": agent},
        timeout=httpx.Timeout(30, read=None),
    )


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Controller:
    def __init__(self, mode: str, namespace: str, k8s: httpx.AsyncClient, kms: KmsClient, concurrency: int) -> None:
        self.mode, self.namespace, self.k8s, self.kms = mode, namespace, k8s, kms
        self.base = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
        self.slots = asyncio.Semaphore(concurrency)
        self.seen: set[str] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        listed = (await self.k8s.get(self.base)).json()
        rv = listed["metadata"]["resourceVersion"]
        for obj in listed["items"]:
            self.offer(obj)
        print("ready", flush=True)
        while True:
            params = {"watch": "1", "resourceVersion": rv, "allowWatchBookmarks": "true"}
            async with self.k8s.stream("GET", self.base, params=params) as stream:
                async for line in stream.aiter_lines():
                    event = json.loads(line)
                    rv = event["object"]["metadata"].get("resourceVersion", rv)
                    if event["type"] == "ADDED":
                        self.offer(event["object"])

    def offer(self, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        if name in self.seen or (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return
        self.seen.add(name)
        task = asyncio.create_task(self.handle(obj))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def handle(self, obj: dict[str, Any]) -> None:
        async with self.slots:
            if self.mode == "raw":
                await self.raw(obj)
            else:
                await self.contract(obj)

    async def raw(self, obj: dict[str, Any]) -> None:
        spec, name = obj["spec"], obj["metadata"]["name"]
        moved = await self.kms.update_secret_version_stage(
            spec["secretName"], spec["versionStage"], move_to_version=spec["moveToVersion"], remove_from_version="v1"
        )
        status = {"phase": "Succeeded", "requestId": moved.request_id}
        (await self.k8s.patch(f"{self.base}/{name}/status", json={"status": status}, headers=MERGE)).raise_for_status()

    async def contract(self, obj: dict[str, Any]) -> None:
        spec, meta = obj["spec"], obj["metadata"]
        name, generation = meta["name"], meta["generation"]
        secret = f"/api/v1/namespaces/{self.namespace}/secrets/{spec['credentials']['secretRef']['name']}"
        (await self.k8s.get(secret)).raise_for_status()
        before = await self.kms.list_secret_version_ids(spec["secretName"], include_deprecated=True)
        current = before.placement().get(spec["versionStage"])
        intent = {
            "metadata": {"resourceVersion": meta["resourceVersion"]},
            "status": {
                "phase": "InProgress",
                "observedGeneration": generation,
                "move": {"answer": "Pending", "sentTime": now()},
            },
        }
        written = await self.k8s.patch(f"{self.base}/{name}/status", json=intent, headers=MERGE)
        written.raise_for_status()
        moved = await self.kms.update_secret_version_stage(
            spec["secretName"], spec["versionStage"], move_to_version=spec["moveToVersion"], remove_from_version=current
        )
        after = await self.kms.list_secret_version_ids(spec["secretName"], include_deprecated=True)
        final = {
            "metadata": {"resourceVersion": written.json()["metadata"]["resourceVersion"]},
            "status": {
                "phase": "Succeeded",
                "observedGeneration": generation,
                "requestId": moved.request_id,
                "stagesAfter": after.placement(),
                "move": {"answer": "Received", "requestId": moved.request_id},
            },
        }
        (await self.k8s.patch(f"{self.base}/{name}/status", json=final, headers=MERGE)).raise_for_status()
        event = {
            "metadata": {"name": f"{name}.{uuid.uuid4().hex[:12]}", "namespace": self.namespace},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "SecretStagePromotion",
                "name": name,
                "namespace": self.namespace,
                "uid": meta["uid"],
            },
            "reason": "Promoted",
            "message": f"moved (RequestId {moved.request_id})",
            "type": "Normal",
            "source": {"component": "yardstick"},
            "firstTimestamp": now(),
            "lastTimestamp": now(),
            "count": 1,
        }
        posted = await self.k8s.post(f"/api/v1/namespaces/{self.namespace}/events", json=event)
        posted.raise_for_status()


async def main_async(args: argparse.Namespace) -> None:
    credentials = StaticProvider(Credentials(args.access_key_id, os.environ["YARDSTICK_ACCESS_KEY_SECRET"]))
    async with (
        client_for(args.kubeconfig, args.concurrency, f"yardstick-{args.mode}") as k8s,
        KmsClient(endpoint=args.kms, credentials=credentials) as kms,
    ):
        await Controller(args.mode, args.namespace, k8s, kms, args.concurrency).run()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=("raw", "contract"))
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--kms", required=True, help="the emulator's URL")
    parser.add_argument("--access-key-id", required=True)
    parser.add_argument("--concurrency", type=int, default=20, help="promotions in flight (the operator's KMS cap)")
    args = parser.parse_args()
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
