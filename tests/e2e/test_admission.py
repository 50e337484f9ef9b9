"""Bad SecretStagePromotions are rejected by the API server itself, with a message that says what to fix."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from tests.harness import Promotions

BASE: dict[str, Any] = {
    "secretName": "app/db",
    "versionStage": "ACSCurrent",
    "moveToVersion": "v2",
    "regionId": "cn-hangzhou",
    "credentials": {"secretRef": {"name": "kms"}},
}


EXACTLY_ONE = (
    "set exactly one of credentials.secretRef.name, credentials.serviceAccountRef.name or "
    "credentials.operatorIdentity=true"
)


def without(key: str) -> dict[str, Any]:
    return {k: v for k, v in BASE.items() if k != key}


CASES = [
    (
        "no-move-no-remove",
        {**without("moveToVersion")},
        "set spec.moveToVersion (the version that should get the stage) and/or spec.removeFromVersion",
    ),
    (
        "remove-acscurrent",
        {**without("moveToVersion"), "removeFromVersion": "v1"},
        "ACSCurrent and ACSPrevious cannot be removed, only moved",
    ),
    (
        "remove-acsprevious",
        {**without("moveToVersion"), "versionStage": "ACSPrevious", "removeFromVersion": "v1"},
        "ACSCurrent and ACSPrevious cannot be removed, only moved",
    ),
    ("same-versions", {**BASE, "removeFromVersion": "v2"}, "must differ"),
    ("missing-secret-name", without("secretName"), "spec.secretName: Required value"),
    ("bad-secret-name", {**BASE, "secretName": "a b"}, "secretName must be a secret name"),
    (
        "arn-of-wrong-shape",
        {**BASE, "secretName": "acs:kms:cn-hangzhou:abc:secret/x y"},
        "or an ARN acs:kms:REGION:ACCOUNT:secret/NAME",
    ),
    ("version-with-slash", {**BASE, "moveToVersion": "v2/../x"}, "spec.moveToVersion in body should match"),
    ("version-too-long", {**BASE, "moveToVersion": "v" * 65}, "spec.moveToVersion: Too long"),
    ("stage-with-space", {**BASE, "versionStage": "My Stage"}, "spec.versionStage in body should match"),
    ("bad-region", {**BASE, "regionId": "Hangzhou"}, "spec.regionId in body should match"),
    (
        "endpoint-with-path",
        {**BASE, "endpoint": "https://kms.cn-hangzhou.aliyuncs.com/x?y"},
        "spec.endpoint in body should match",
    ),
    ("endpoint-userinfo", {**BASE, "endpoint": "https://user:pw@evil.example"}, "spec.endpoint in body should match"),
    ("unknown-signature", {**BASE, "signature": "HMAC-MD5"}, 'supported values: "ACS3-HMAC-SHA256", "HMAC-SHA1"'),
    ("no-credentials", without("credentials"), "spec.credentials: Required value"),
    (
        "both-credentials",
        {**BASE, "credentials": {"secretRef": {"name": "kms"}, "operatorIdentity": True}},
        EXACTLY_ONE,
    ),
    (
        "neither-credential",
        {**BASE, "credentials": {"operatorIdentity": False}},
        EXACTLY_ONE,
    ),
    (
        "secret-and-service-account",
        {**BASE, "credentials": {"secretRef": {"name": "kms"}, "serviceAccountRef": {"name": "promoter"}}},
        EXACTLY_ONE,
    ),
    (
        "service-account-ref-bad-name",
        {**BASE, "credentials": {"serviceAccountRef": {"name": "Promoter"}}},
        "spec.credentials.serviceAccountRef.name in body should match",
    ),
    (
        "secret-ref-bad-name",
        {**BASE, "credentials": {"secretRef": {"name": "Bad_Name"}}},
        "spec.credentials.secretRef.name in body should match",
    ),
    ("verify-not-bool", {**BASE, "verify": "yes"}, "spec.verify: Invalid value"),
    (
        "precondition-bad-version",
        {**BASE, "precondition": {"currentVersion": "v 1"}},
        "spec.precondition.currentVersion in body should match",
    ),
]


@pytest.mark.parametrize(("spec", "message"), [pytest.param(s, m, id=i) for i, s, m in CASES])
def test_rejected_at_admission(
    promotions: Promotions, crd: None, namespace: str, spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(ApiException) as err:
        promotions.create(namespace, "bad", spec)
    assert err.value.status == 422, err.value.body
    server_message = json.loads(err.value.body)["message"]
    assert message in server_message, server_message


def test_valid_base_is_accepted(promotions: Promotions, crd: None, namespace: str) -> None:
    created = promotions.create(namespace, "good", BASE)
    assert created["spec"] == BASE  # no server-side defaults: nothing for Argo CD to see as drift


def test_service_account_ref_has_no_namespace_field(promotions: Promotions, crd: None, namespace: str) -> None:
    """A promotion cannot point at another namespace's ServiceAccount: the field does not exist. Strict
    field validation (kubectl's default) refuses it; a lenient client's copy is pruned to the name."""
    spec = {**BASE, "credentials": {"serviceAccountRef": {"name": "promoter", "namespace": "kube-system"}}}
    body = {
        "apiVersion": "secretstage.io/v1alpha1",
        "kind": "SecretStagePromotion",
        "metadata": {"name": "strict"},
        "spec": spec,
    }
    with pytest.raises(ApiException) as err:
        promotions.api.create_namespaced_custom_object(
            "secretstage.io", "v1alpha1", namespace, "secretstagepromotions", body, field_validation="Strict"
        )
    assert 'unknown field "spec.credentials.serviceAccountRef.namespace"' in json.loads(err.value.body)["message"]
    created = promotions.create(namespace, "lenient", spec)
    assert created["spec"]["credentials"] == {"serviceAccountRef": {"name": "promoter"}}
