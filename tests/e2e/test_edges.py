"""The protocol's edges on the real API server (issue 20, cases 1, 2 and 4), from outside.

The operator reaches the emulator through a loopback proxy that holds the promotion's first
ListSecretVersionIds while the test changes the object: an edit, a delete + re-create under the
same name, a rival promotion of the same secret under another spelling. Then it lets the read go
and checks what reached KMS. Its own module: one operator per test, watching its namespace only.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

from tests.cluster import Cluster
from tests.harness import GROUP, PLURAL, VERSION, EmulatorProcess, OperatorProcess, Promotions, condition
from tests.kms_proxy import holding_proxy
from tests.support import wait_for

READ = "ListSecretVersionIds"


def spec(secret: str, endpoint: str | None = None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "secretName": secret,
        "versionStage": "ACSCurrent",
        "credentials": {"secretRef": {"name": "kms-credentials"}},
        **fields,
    }
    if endpoint:
        body["endpoint"] = endpoint
    return body


def moves_sent(emulator: EmulatorProcess, secret: str) -> list[str | None]:
    """The MoveToVersion of every UpdateSecretVersionStage for ACSCurrent that reached KMS for ``secret``."""
    return [
        h.get("MoveToVersion")
        for h in emulator.calls()["history"]
        if h["action"] == "UpdateSecretVersionStage"
        and h.get("VersionStage") == "ACSCurrent"
        and h.get("SecretName", "").endswith(secret)
    ]


def operator_behind(
    cluster: Cluster, emulator: EmulatorProcess, workdir: Path, ns: str, *extra: str, allow: str
) -> OperatorProcess:
    return OperatorProcess(
        workdir, cluster.kubeconfig, emulator.url, "--namespace", ns, *extra, allow=allow, name=f"edges-{ns}"
    )


def test_an_edit_during_the_first_read_never_sends_the_withdrawn_move(
    cluster: Cluster, crd: None, emulator: EmulatorProcess, promotions: Promotions, ns: str, workdir: Path
) -> None:
    secret = emulator.seed(f"edges/{uuid4().hex[:8]}", "v1", "v2", "v3")
    with holding_proxy(emulator.url) as proxy:
        op = operator_behind(cluster, emulator, workdir, ns, allow=re.escape(proxy.url))
        try:
            read = proxy.hold(READ, secret)
            promotions.create(
                ns, "p", spec(secret, proxy.url, moveToVersion="v2", precondition={"currentVersion": "v1"})
            )
            read.wait_arrived()
            # The user withdraws v2 while generation 1 is reading KMS.
            promotions.patch_spec(ns, "p", {"moveToVersion": "v3"})
            read.release()
            obj = promotions.wait_phase(ns, "p", "Succeeded", "Failed", generation=2)
        finally:
            op.stop()
    assert (obj["status"]["phase"], condition(obj, "Succeeded")["reason"]) == ("Succeeded", "Promoted"), obj["status"]
    assert moves_sent(emulator, secret) == ["v3"]  # v2 never reached KMS
    assert emulator.holder(secret, "ACSCurrent") == "v3"
    assert obj["status"]["move"]["moveToVersion"] == "v3"


def test_a_delete_and_recreate_during_the_first_read_runs_the_new_object_only(
    cluster: Cluster, crd: None, emulator: EmulatorProcess, promotions: Promotions, ns: str, workdir: Path
) -> None:
    secret = emulator.seed(f"edges/{uuid4().hex[:8]}", "v1", "v2", "v3")
    with holding_proxy(emulator.url) as proxy:
        op = operator_behind(cluster, emulator, workdir, ns, allow=re.escape(proxy.url))
        try:
            read = proxy.hold(READ, secret)
            old = promotions.create(ns, "p", spec(secret, proxy.url, moveToVersion="v2"))
            read.wait_arrived()
            # kubectl replace --force, or an Argo CD hook with BeforeHookCreation: same name, new object.
            promotions.api.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "p")
            wait_for(
                lambda: [
                    o["metadata"]["uid"]
                    for o in promotions.api.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"]
                ],
                lambda uids: old["metadata"]["uid"] not in uids,
                timeout=30,
                what="the old object to be gone",
            )
            new = promotions.create(ns, "p", spec(secret, proxy.url, moveToVersion="v3"))
            read.release()
            obj = promotions.wait_phase(ns, "p", "Succeeded", "Failed")
        finally:
            op.stop()
    assert obj["metadata"]["uid"] == new["metadata"]["uid"]
    assert (obj["status"]["phase"], condition(obj, "Succeeded")["reason"]) == ("Succeeded", "Promoted"), obj["status"]
    assert obj["status"]["move"]["moveToVersion"] == "v3"
    assert moves_sent(emulator, secret) == ["v3"]  # nothing was sent for the deleted object
    assert emulator.holder(secret, "ACSCurrent") == "v3"
    assert "the promotion was deleted and created again under the same name" in op.log_text()


def test_one_secret_under_two_spellings_is_one_secret(
    cluster: Cluster, crd: None, emulator: EmulatorProcess, promotions: Promotions, ns: str, workdir: Path
) -> None:
    """P names the secret by region (the operator's endpoint template: one gateway); Q by ARN over
    another gateway of the same store. Q waits while P's read is held, then runs."""
    secret = emulator.seed(f"edges/{uuid4().hex[:8]}", "v1", "v2", "v3")
    arn = emulator.arn(secret)
    region = arn.split(":")[2]
    with holding_proxy(emulator.url) as public, holding_proxy(emulator.url) as vpc:
        allow = f"{re.escape(public.url)}|{re.escape(vpc.url)}"
        op = operator_behind(cluster, emulator, workdir, ns, "--kms-endpoint-template", public.url, allow=allow)
        try:
            read = public.hold(READ, secret)
            promotions.create(ns, "p", spec(secret, moveToVersion="v2", regionId=region))
            read.wait_arrived()
            promotions.create(ns, "q", spec(arn, vpc.url, moveToVersion="v3"))
            waiting = wait_for(
                lambda: promotions.get(ns, "q").get("status") or {},
                lambda status: status.get("phase") == "Pending",
                timeout=30,
                what="q to wait for p",
            )
            read.release()
            p = promotions.wait_phase(ns, "p", "Succeeded", "Failed")
            q = promotions.wait_phase(ns, "q", "Succeeded", "Failed")
        finally:
            op.stop()
    message = next(c["message"] for c in waiting["conditions"] if c["type"] == "Succeeded")
    assert f"promotion {ns}/p is changing secret" in message, waiting
    assert (p["status"]["phase"], q["status"]["phase"]) == ("Succeeded", "Succeeded")
    assert moves_sent(emulator, secret) == ["v2", "v3"]  # one after the other, never both in flight
    assert emulator.holder(secret, "ACSCurrent") == "v3"
    assert (READ, arn) in vpc.seen
    assert (READ, secret) in public.seen


def test_a_restarted_operator_keeps_a_secret_whose_move_may_still_land(
    cluster: Cluster, crd: None, emulator: EmulatorProcess, promotions: Promotions, ns: str, workdir: Path
) -> None:
    """P's journal says its move got no answer a moment ago (the operator died after sending it); P
    itself cannot run yet (its credentials Secret is missing). Rival Q must not move the secret before
    P's request can no longer land: the operator reserves it at start-up, from the journal, before
    handling anything."""
    secret = emulator.seed(f"edges/{uuid4().hex[:8]}", "v1", "v2", "v3")
    sent = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    p = promotions.create(
        ns, "p", spec(secret, emulator.url, moveToVersion="v2", credentials={"secretRef": {"name": "not-yet"}})
    )
    journal = {
        "phase": "InProgress",
        "observedGeneration": p["metadata"]["generation"],
        "move": {
            "versionStage": "ACSCurrent",
            "moveToVersion": "v2",
            "removeFromVersion": "v1",
            "answer": "Lost",
            "sentTime": sent,
        },
    }
    promotions.api.patch_namespaced_custom_object_status(GROUP, VERSION, ns, PLURAL, "p", {"status": journal})
    promotions.create(ns, "q", spec(secret, emulator.url, moveToVersion="v3"))
    op = operator_behind(cluster, emulator, workdir, ns, allow=re.escape(emulator.url))
    try:
        waiting = wait_for(
            lambda: promotions.get(ns, "q").get("status") or {},
            lambda status: status.get("phase") == "Pending",
            timeout=30,
            what="q to wait for p's move",
        )
    finally:
        op.stop()
    message = next(c["message"] for c in waiting["conditions"] if c["type"] == "Succeeded")
    assert f"a move of promotion {ns}/p sent at {sent} got no answer and may still land" in message, message
    assert emulator.calls_for(secret).get("UpdateSecretVersionStage", 0) == 0
    assert emulator.holder(secret, "ACSCurrent") == "v1"
    assert "1 secret(s) reserved at start-up" in op.log_text()
