"""Alibaba's official KMS SDK (alibabacloud-kms20160120), unmodified, against our emulator.

If our signature verification or response shapes drifted from real KMS, the SDK would fail here:
it signs with Alibaba's own code, not ours.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from alibabacloud_kms20160120 import models as kms_models
from alibabacloud_kms20160120.client import Client as KmsSdkClient
from alibabacloud_tea_openapi import models as open_api_models
from Tea.exceptions import TeaException

from tests.conftest import ACCESS_KEY_ID, ACCESS_KEY_SECRET, RunningEmulator

SDK_ALGORITHMS = pytest.mark.parametrize("algorithm", ["v3", "v2"], ids=["ACS3-HMAC-SHA256", "HMAC-SHA1"])


def sdk(url: str, algorithm: str, *, secret: str = ACCESS_KEY_SECRET, security_token: str | None = None) -> Any:
    config = open_api_models.Config(
        access_key_id=ACCESS_KEY_ID if security_token is None else None,
        access_key_secret=secret,
        endpoint=url.removeprefix("http://"),
        protocol="http",
    )
    if algorithm == "v2":
        config.signature_algorithm = "v2"  # the SDK's name for the HMAC-SHA1 RPC signature
    return KmsSdkClient(config)


@SDK_ALGORITHMS
async def test_sdk_full_rotation(kms: RunningEmulator, algorithm: str) -> None:
    client = sdk(kms.url, algorithm)

    def rotate() -> list[Any]:
        created = client.create_secret(
            kms_models.CreateSecretRequest(
                secret_name="sdk-secret", secret_data="one", version_id="v1", secret_data_type="text"
            )
        )
        put = client.put_secret_value(
            kms_models.PutSecretValueRequest(
                secret_name="sdk-secret", secret_data="two", version_id="v2", version_stages='["ACSPending"]'
            )
        )
        moved = client.update_secret_version_stage(
            kms_models.UpdateSecretVersionStageRequest(
                secret_name="sdk-secret", version_stage="ACSCurrent", move_to_version="v2", remove_from_version="v1"
            )
        )
        listed = client.list_secret_version_ids(
            kms_models.ListSecretVersionIdsRequest(secret_name="sdk-secret", page_size=10)
        )
        described = client.describe_secret(kms_models.DescribeSecretRequest(secret_name="sdk-secret"))
        value = client.get_secret_value(kms_models.GetSecretValueRequest(secret_name="sdk-secret"))
        return [created, put, moved, listed, described, value]

    created, put, moved, listed, described, value = await asyncio.to_thread(rotate)
    assert created.body.arn.endswith(":secret/sdk-secret")
    assert put.body.version_stages.version_stage == ["ACSPending"]
    assert moved.status_code == 200
    assert moved.body.secret_name == "sdk-secret"
    assert moved.body.request_id
    stages = {v.version_id: v.version_stages.version_stage for v in listed.body.version_ids.version_id}
    assert stages == {"v1": ["ACSPrevious"], "v2": ["ACSPending", "ACSCurrent"]}
    assert listed.body.total_count == 2
    assert described.body.secret_type == "Generic"
    assert (value.body.version_id, value.body.secret_data) == ("v2", "two")
    assert kms.emulator.applied["UpdateSecretVersionStage"] == 1
    expected = "HMAC-SHA1" if algorithm == "v2" else "ACS3-HMAC-SHA256"
    assert {h["signature"] for h in kms.emulator.history} == {expected}


@SDK_ALGORITHMS
async def test_sdk_sees_kms_errors(kms: RunningEmulator, algorithm: str) -> None:
    good = sdk(kms.url, algorithm)
    bad = sdk(kms.url, algorithm, secret="not-the-secret")

    def call(client: Any, name: str) -> Any:
        return client.describe_secret(kms_models.DescribeSecretRequest(secret_name=name))

    with pytest.raises(TeaException) as err:
        await asyncio.to_thread(call, good, "missing")
    assert err.value.code == "Forbidden.ResourceNotFound"
    assert err.value.data["RequestId"]
    with pytest.raises(TeaException) as err:
        await asyncio.to_thread(call, bad, "missing")
    assert err.value.code == "SignatureDoesNotMatch"
