"""--kms-endpoint-template: a promotion that names only a region goes where the operator says.

On ACK without internet egress the operator is started with ``vpc`` or a dedicated instance's URL;
here the template is the emulator's URL (no {regionId}: one endpoint for every region), so a
promotion with spec.regionId and no spec.endpoint reaches it. Its own module: one operator per namespace.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.cluster import Cluster
from tests.harness import EmulatorProcess, OperatorProcess, Promotions


def test_a_region_only_promotion_uses_the_operator_s_endpoint_template(
    cluster: Cluster, crd: None, emulator: EmulatorProcess, promotions: Promotions, ns: str, workdir: Path
) -> None:
    op = OperatorProcess(
        workdir,
        cluster.kubeconfig,
        emulator.url,
        "--namespace",
        ns,
        "--kms-endpoint-template",
        emulator.url,
        name="template-op",
    )
    secret = emulator.seed(f"region/{uuid.uuid4().hex[:6]}", "v1", "v2")
    try:
        spec = {
            "secretName": secret,
            "versionStage": "ACSCurrent",
            "moveToVersion": "v2",
            "regionId": "cn-shanghai",
            "credentials": {"secretRef": {"name": "kms-credentials"}},
        }
        promotions.create(ns, "p", spec)
        obj = promotions.wait_phase(ns, "p", "Succeeded", "Failed")
    finally:
        op.stop()
    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    assert emulator.holder(secret, "ACSCurrent") == "v2"
    assert f"region-endpoints={emulator.url}" in op.log_text()
