"""Hostile and bad input: each case is rejected at admission with a clear message, or ends Failed with a
clear reason, and the operator keeps serving the good promotions created alongside."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from tests.cluster import Cluster
from tests.harness import E2E_KEY_ID, E2E_KEY_SECRET, E2E_TOKEN, EmulatorProcess, OperatorProcess, Promotions, condition
from tests.reliability.helpers import seed_many, unique

REJECT, FAIL = "rejected", "failed"


def base(emulator: EmulatorProcess, secret: str = "app/db") -> dict[str, Any]:
    return {
        "secretName": secret,
        "versionStage": "ACSCurrent",
        "moveToVersion": "v2",
        "endpoint": emulator.url,
        "credentials": {"secretRef": {"name": "kms-credentials"}},
    }


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


GOOD = {
    "AccessKeyId": E2E_KEY_ID.encode(),
    "AccessKeySecret": E2E_KEY_SECRET.encode(),
    "SecurityToken": E2E_TOKEN.encode(),
}

# (id, outcome, change to the spec, credentials Secret data/type or None, expected text)
CASES: list[tuple[str, str, dict[str, Any], dict[str, Any] | None, str]] = [
    ("huge-secret-name", REJECT, {"secretName": "a" * 100_000}, None, "spec.secretName: Too long"),
    ("non-ascii-secret-name", REJECT, {"secretName": "秘密/数据库"}, None, "secretName must be a secret name"),
    ("control-char-in-name", REJECT, {"secretName": "app/db\r\nX-Injected: 1"}, None, "secretName must be"),
    ("url-injection-in-name", REJECT, {"secretName": "db&Action=DeleteSecret"}, None, "secretName must be"),
    (
        "url-injection-in-version",
        REJECT,
        {"moveToVersion": "v2&ForceDeleteWithoutRecovery=true"},
        None,
        "spec.moveToVersion in body should match",
    ),
    ("newline-in-version", REJECT, {"moveToVersion": "v2\n"}, None, "spec.moveToVersion in body should match"),
    ("non-ascii-stage", REJECT, {"versionStage": "ACSCurrént"}, None, "spec.versionStage in body should match"),
    ("huge-stage", REJECT, {"versionStage": "S" * 5000}, None, "spec.versionStage: Too long"),
    (
        "endpoint-with-path",
        REJECT,
        {"endpoint": "https://kms.cn-hangzhou.aliyuncs.com/?Action=x"},
        None,
        "spec.endpoint in body should match",
    ),
    (
        "endpoint-userinfo",
        REJECT,
        {"endpoint": "https://a:b@kms.cn-hangzhou.aliyuncs.com"},
        None,
        "spec.endpoint in body should match",
    ),
    ("endpoint-file-scheme", REJECT, {"endpoint": "file:///etc/passwd"}, None, "spec.endpoint in body should match"),
    (
        "secret-ref-other-namespace",
        REJECT,
        {"credentials": {"secretRef": {"name": "kube-system/admin"}}},
        None,
        "spec.credentials.secretRef.name in body should match",
    ),
    (
        "secret-ref-namespace-field",
        REJECT,
        {"credentials": {"secretRef": {"name": "kms-credentials", "namespace": "kube-system"}}},
        None,
        'unknown field "spec.credentials.secretRef.namespace"',
    ),
    (
        "unknown-top-level-field",
        REJECT,
        {"insecureSkipTLSVerify": True},
        None,
        'unknown field "spec.insecureSkipTLSVerify"',
    ),
    ("metadata-endpoint", FAIL, {"endpoint": "http://169.254.169.254"}, None, "EndpointNotAllowed"),
    ("alibaba-metadata-endpoint", FAIL, {"endpoint": "http://100.100.100.200"}, None, "EndpointNotAllowed"),
    ("plain-http-other-host", FAIL, {"endpoint": "http://kms.cn-hangzhou.aliyuncs.com"}, None, "EndpointNotAllowed"),
    ("other-host", FAIL, {"endpoint": "https://kms.cn-hangzhou.aliyuncs.com.evil.example"}, None, "EndpointNotAllowed"),
    ("other-port", FAIL, {"endpoint": "https://kms.cn-hangzhou.aliyuncs.com:8443"}, None, "EndpointNotAllowed"),
    ("ipv6-link-local", FAIL, {"endpoint": "http://[fe80::1]:80"}, None, "EndpointNotAllowed"),
    (
        "arn-of-another-account",
        FAIL,
        {"secretName": "acs:kms:cn-hangzhou:999999999999:secret/app/db", "endpoint": None, "regionId": None},
        None,
        "EndpointNotAllowed",
    ),
    (
        "arn-other-account-on-emulator",
        FAIL,
        {"secretName": "acs:kms:cn-hangzhou:999999999999:secret/app/db"},
        None,
        "Forbidden_ResourceNotFound",
    ),
    ("creds-missing-key", FAIL, {}, {"data": {"AccessKeyId": GOOD["AccessKeyId"]}}, "CredentialsInvalid"),
    ("creds-empty-secret", FAIL, {}, {"data": {**GOOD, "AccessKeySecret": b""}}, "CredentialsInvalid"),
    ("creds-non-utf8", FAIL, {}, {"data": {**GOOD, "AccessKeySecret": b"\xff\xfe\xfd"}}, "CredentialsInvalid"),
    ("creds-oversized", FAIL, {}, {"data": {**GOOD, "SecurityToken": b"t" * 100_000}}, "CredentialsInvalid"),
    (
        "creds-wrong-type",
        FAIL,
        {},
        {"data": GOOD, "type": "kubernetes.io/ssh-auth", "extra": {"ssh-privatekey": b"x"}},
        "CredentialsInvalid",
    ),
    ("creds-wrong-secret", FAIL, {}, {"data": {**GOOD, "AccessKeySecret": b"not-the-secret"}}, "SignatureDoesNotMatch"),
    (
        "creds-wrong-token",
        FAIL,
        {},
        {"data": {**GOOD, "SecurityToken": b"CAIS-forged"}},
        "InvalidSecurityToken_MismatchWithAccessKey",
    ),
    ("unknown-version", FAIL, {"moveToVersion": "v999"}, None, "VersionNotFound"),
]


@pytest.fixture(scope="module")
def hostile_results(
    cluster: Cluster, operator: OperatorProcess, emulator: EmulatorProcess
) -> dict[str, tuple[str, str]]:
    """Create every case (and good promotions between them) in one namespace; collect what happened."""
    promotions = Promotions(cluster)
    core = k8s.CoreV1Api(cluster.api)
    namespace = "t-hostile-" + uuid.uuid4().hex[:6]
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace)))
    promotions.credentials_secret(namespace)
    good_secrets = [unique("hostile-good") for _ in CASES]
    seed_many(emulator.url, ["app/db", *good_secrets])
    results: dict[str, tuple[str, str]] = {}
    created: list[str] = []
    for i, (case_id, _, change, creds, _) in enumerate(CASES):
        spec = {**base(emulator), **change}
        spec = {k: v for k, v in spec.items() if v is not None}
        if creds is not None:
            data = {k: b64(v) for k, v in {**creds["data"], **creds.get("extra", {})}.items()}
            core.create_namespaced_secret(
                namespace,
                k8s.V1Secret(
                    metadata=k8s.V1ObjectMeta(name=f"creds-{case_id}"), data=data, type=creds.get("type", "Opaque")
                ),
            )
            spec["credentials"] = {"secretRef": {"name": f"creds-{case_id}"}}
        body = {
            "apiVersion": "secretstage.io/v1alpha1",
            "kind": "SecretStagePromotion",
            "metadata": {"name": case_id},
            "spec": spec,
        }
        result = cluster.kubectl(
            "create", "-n", namespace, "--validate=strict", "-f", "-", input=json.dumps(body), check=False
        )
        if result.returncode != 0:
            results[case_id] = (REJECT, result.stderr)
        else:
            created.append(case_id)
        promotions.create(namespace, f"good-{i}", base(emulator, good_secrets[i]))
    for case_id in created:
        obj = promotions.wait_phase(namespace, case_id, "Succeeded", "Failed", timeout=120)
        cond = condition(obj, "Succeeded")
        results[case_id] = (
            FAIL if obj["status"]["phase"] == "Failed" else "succeeded",
            f"{cond['reason']}: {cond['message']}",
        )
    for i in range(len(CASES)):
        obj = promotions.wait_phase(namespace, f"good-{i}", "Succeeded", "Failed", timeout=120)
        results[f"good-{i}"] = (obj["status"]["phase"], "")
    leaked = [s for s in (E2E_KEY_SECRET, E2E_TOKEN) if s in promotions.all_text(namespace)]
    assert not leaked, "a test secret appeared in a status or event"
    core.delete_namespace(namespace)
    return results


@pytest.mark.parametrize(("case_id", "outcome", "text"), [(c[0], c[1], c[4]) for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_case(hostile_results: dict[str, tuple[str, str]], case_id: str, outcome: str, text: str) -> None:
    got, message = hostile_results[case_id]
    assert got == outcome, message
    assert text in message, message


def test_operator_kept_serving(hostile_results: dict[str, tuple[str, str]], operator: OperatorProcess) -> None:
    goods = {k: v[0] for k, v in hostile_results.items() if k.startswith("good-")}
    assert set(goods.values()) == {"Succeeded"}, goods
    assert operator.process is not None
    assert operator.process.alive()


def test_huge_annotations_rejected(cluster: Cluster, crd: None, namespace: str, emulator: EmulatorProcess) -> None:
    body = {
        "apiVersion": "secretstage.io/v1alpha1",
        "kind": "SecretStagePromotion",
        "metadata": {"name": "fat", "annotations": {"note": "x" * (1024 * 1024)}},
        "spec": base(emulator),
    }
    with pytest.raises(ApiException) as err:
        Promotions(cluster).api.create_namespaced_custom_object(
            "secretstage.io", "v1alpha1", namespace, "secretstagepromotions", body
        )
    assert err.value.status == 422
    assert "metadata.annotations: Too long: may not be more than 262144 bytes" in json.loads(err.value.body)["message"]
