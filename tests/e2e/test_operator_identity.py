"""spec.credentials.operatorIdentity with RRSA: the operator exchanges its OIDC token at STS (the emulator's),
for the namespaces it is allowed in."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client as k8s

from tests.cluster import Cluster
from tests.harness import SECRETS, EmulatorProcess, OperatorProcess, Promotions, condition, run_check, spec_for

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6c3M6b3AifQ.c2ln"


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[EmulatorProcess]:
    emu = EmulatorProcess(tmp_path)
    yield emu
    emu.stop()


def test_rrsa_identity(cluster: Cluster, crd: None, namespace: str, emulator: EmulatorProcess, tmp_path: Path) -> None:
    """Only namespaces listed in --operator-identity-namespaces may use the operator's own identity."""
    other = "t-" + uuid.uuid4().hex[:10]
    k8s.CoreV1Api(cluster.api).create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=other)))
    token = tmp_path / "token"
    token.write_text(JWT)
    env = {
        "ALIBABA_CLOUD_ROLE_ARN": "acs:ram::1234567890123456:role/secretstage",
        "ALIBABA_CLOUD_OIDC_PROVIDER_ARN": "acs:ram::1234567890123456:oidc-provider/ack-rrsa",
        "ALIBABA_CLOUD_OIDC_TOKEN_FILE": str(token),
        "ALIBABA_CLOUD_STS_ENDPOINT": emulator.url,
    }
    op = OperatorProcess(
        tmp_path,
        cluster.kubeconfig,
        emulator.url,
        "--namespace",
        namespace,
        "--namespace",
        other,
        "--operator-identity-namespaces",
        namespace,
        name="rrsa-op",
        env=env,
    )
    promotions = Promotions(cluster)
    try:
        for i in range(3):
            secret = emulator.seed(f"rrsa/s{i}", "v1", "v2")
            promotions.create(
                namespace,
                f"p{i}",
                spec_for(emulator, secret, moveToVersion="v2", credentials={"operatorIdentity": True}),
            )
            obj = promotions.wait_phase(namespace, f"p{i}", "Succeeded", "Failed")
            assert obj["status"]["phase"] == "Succeeded", obj["status"]
        history = emulator.calls()["history"]
        updates = [h for h in history if h["action"] == "UpdateSecretVersionStage"]
        assert {h["access_key_id"][:4] for h in updates} == {"STS."}
        assert emulator.calls()["sts_exchanges"] == 1  # cached and shared across promotions
        assert "secretstage_credential_refreshes_total 1.0" in op.metrics()
        # `secretstage check --operator-identity`: what `helm test` runs on an RRSA-only install
        checked = emulator.seed("rrsa/check", "v1", "v2")
        check = run_check(
            cluster,
            *("-n", namespace, "--secret-name", checked, "--move-to-version", "v2"),
            *("--endpoint", emulator.url, "--operator-identity", "--timeout", "60"),
        )
        assert check.returncode == 0, check.stdout + check.stderr
        assert "ok: move ACSCurrent from v1 to v2" in check.stdout
        secret = emulator.seed("rrsa/other", "v1", "v2")
        spec = spec_for(emulator, secret, moveToVersion="v2", credentials={"operatorIdentity": True})
        promotions.create(other, "p", spec)
        obj = promotions.wait_phase(other, "p", "Failed")
        assert condition(obj, "Succeeded")["reason"] == "OperatorIdentityNotAllowed", obj["status"]
        assert "--operator-identity-namespaces" in condition(obj, "Succeeded")["message"]
        assert emulator.holder(secret, "ACSCurrent") == "v1"
    finally:
        op.stop()
        k8s.CoreV1Api(cluster.api).delete_namespace(other)
    assert not [s for s in SECRETS if s in op.log_text()]
