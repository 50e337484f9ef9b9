"""No tenant can starve another: a namespace full of stuck and queued promotions does not delay a
single promotion in another namespace by more than about a KMS round trip and a rate-limit token.

Before issue 12, kopf's worker limit (100) was the only bound: 150 promotions retrying for ever (a
credentials Secret that does not exist) held every worker, and a promotion in another namespace
had not even started after 60 s.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client as k8s

from tests.cluster import Cluster
from tests.harness import EMULATOR_MODES, EmulatorProcess, OperatorProcess, Promotions, spec_for
from tests.reliability.helpers import list_all, seed_many
from tests.support import wait_for

STUCK, QUEUED = 250, 250  # 500 in the crowded namespace
RATE = 20  # KMS requests/s for the whole operator: 250 queued promotions (3 requests each) need ~38 s


def test_a_crowded_namespace_does_not_starve_another(
    cluster: Cluster, crd: None, tmp_path: Path, figures: dict[str, Any]
) -> None:
    emulator = EmulatorProcess(tmp_path, switches=EMULATOR_MODES["kms-documented"])
    promotions = Promotions(cluster)
    core = k8s.CoreV1Api(cluster.api)
    run = uuid.uuid4().hex[:6]
    crowded, quiet = f"t-crowded-{run}", f"t-quiet-{run}"
    for ns in (crowded, quiet):
        core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=ns)))
        promotions.credentials_secret(ns)
    queued = [f"fair/{run}/q{i}" for i in range(QUEUED)]
    lonely = f"fair/{run}/lonely"
    seed_many(emulator.url, [*queued, lonely])
    emulator.set_faults({"*": {"latency_ms": 50}})  # a realistic round trip
    op = OperatorProcess(
        tmp_path,
        cluster.kubeconfig,
        emulator.url,
        "--namespace",
        crowded,
        "--namespace",
        quiet,
        "--kms-rate-limit",
        str(RATE),
        "--kms-burst",
        "1",
        log_level="INFO",
    )
    try:
        stuck_spec = spec_for(emulator, "fair/none", moveToVersion="v2", credentials={"secretRef": {"name": "absent"}})
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: promotions.create(crowded, f"stuck-{i}", stuck_spec), range(STUCK)))
            list(
                pool.map(
                    lambda i: promotions.create(
                        crowded, f"queued-{i}", spec_for(emulator, queued[i], moveToVersion="v2")
                    ),
                    range(QUEUED),
                )
            )

        # Wait until the crowded namespace really crowds the operator: promotions wait for their turn
        # (Pending/Queued) behind the ones the workers have, which wait for KMS tokens.
        def queued_for_their_turn() -> int:
            return sum(1 for o in list_all(promotions, crowded) if "queue" in (o.get("status") or {}))

        wait_for(
            queued_for_their_turn, lambda n: n >= 100, timeout=120, what="promotions Queued in the crowded namespace"
        )
        started = time.monotonic()
        promotions.create(quiet, "lonely", spec_for(emulator, lonely, moveToVersion="v2"))
        obj = promotions.wait_phase(quiet, "lonely", "Succeeded", "Failed", timeout=60)
        delay = time.monotonic() - started
        backlog = sum(1 for o in list_all(promotions, crowded) if (o.get("status") or {}).get("phase") != "Succeeded")
    finally:
        op.stop()
        emulator.stop()
    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    # Generous: the quiet promotion's own 3 requests at 50 ms, its turn for 3 tokens at 20/s, the
    # API writes, and its turn for a worker (the namespace holding the fewest goes first) on a 2-core machine.
    assert delay < 15, f"{delay:.1f}s behind a crowded namespace"
    assert backlog > STUCK, "the crowded namespace had finished: the test measured nothing"
    figures["fairness.quiet_namespace_delay_s"] = round(delay, 2)
    figures["fairness.crowded_backlog_when_measured"] = backlog
