"""1,000 promotions across 20 namespaces: all succeed, and the operator's memory stays bounded."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
from kubernetes import client as k8s

from tests.cluster import Cluster
from tests.harness import EmulatorProcess, OperatorProcess, Promotions, spec_for
from tests.reliability.helpers import seed_many, wait_all_terminal

NAMESPACES, PER_NAMESPACE = 20, 50


def test_thousand_promotions_in_twenty_namespaces(
    cluster: Cluster, crd: None, emulator: EmulatorProcess, tmp_path: Path, figures: dict[str, Any]
) -> None:
    promotions = Promotions(cluster)
    core = k8s.CoreV1Api(cluster.api)
    run = uuid.uuid4().hex[:6]
    namespaces = [f"t-load-{run}-{i}" for i in range(NAMESPACES)]
    for ns in namespaces:
        core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=ns)))
        promotions.credentials_secret(ns)
    secrets = {ns: [f"load/{run}/{ns}-{j}" for j in range(PER_NAMESPACE)] for ns in namespaces}
    seed_many(emulator.url, [s for names in secrets.values() for s in names])
    op = OperatorProcess(
        tmp_path,
        cluster.kubeconfig,
        emulator.url,
        "--kms-rate-limit",
        "2000",
        "--kms-burst",
        "200",
        name="load-op",
        log_level="INFO",
    )
    assert op.process is not None
    proc = psutil.Process(op.process.proc.pid)
    rss_idle = proc.memory_info().rss
    peak = [rss_idle]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.25):
            peak[0] = max(peak[0], proc.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(8) as pool:
            list(
                pool.map(
                    lambda item: promotions.create(
                        item[0], f"p{item[1]}", spec_for(emulator, secrets[item[0]][item[1]], moveToVersion="v2")
                    ),
                    [(ns, j) for ns in namespaces for j in range(PER_NAMESPACE)],
                )
            )
        objs = wait_all_terminal(promotions, namespaces, NAMESPACES * PER_NAMESPACE, timeout=900)
        elapsed = time.monotonic() - started
        rss_after = proc.memory_info().rss
    finally:
        stop.set()
        sampler.join()
        op.stop()
        for ns in namespaces:
            core.delete_namespace(ns)
    phases = {o["status"]["phase"] for o in objs}
    assert phases == {"Succeeded"}, phases
    mib = 1024 * 1024
    figures.update(
        {
            "load.promotions": len(objs),
            "load.namespaces": NAMESPACES,
            "load.seconds_create_to_all_succeeded": round(elapsed, 1),
            "load.promotions_per_s": round(len(objs) / elapsed, 1),
            "load.rss_idle_mib": round(rss_idle / mib, 1),
            "load.rss_peak_mib": round(peak[0] / mib, 1),
            "load.rss_after_mib": round(rss_after / mib, 1),
        }
    )
    # bounded: no more than a few hundred KiB per promotion held at the peak (a leak would hold far more)
    assert peak[0] - rss_idle < 300 * mib
