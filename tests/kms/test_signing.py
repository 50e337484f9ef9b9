"""Signers against published vectors, and against Alibaba's own util package over random input."""

from __future__ import annotations

import hashlib
from urllib.parse import parse_qsl

import httpx
import pytest
from alibabacloud_openapi_util.client import Client as AlibabaUtil
from hypothesis import given, settings
from hypothesis import strategies as st
from Tea.request import TeaRequest

from secretstage.kms import signing
from secretstage.kms.auth import Acs3HmacSha256Auth, HmacSha1RpcAuth
from secretstage.kms.credentials import Credentials

PUBLISHED_COMMON = {
    "Format": "XML",
    "Version": "2014-05-26",
    "SignatureMethod": "HMAC-SHA1",
    "SignatureVersion": "1.0",
    "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
    "Timestamp": "2016-02-23T12:46:24Z",
    "AccessKeyId": "testid",
}
KMS_V1_PARAMS = {
    **PUBLISHED_COMMON,
    "Action": "UpdateSecretVersionStage",
    "Format": "JSON",
    "Version": "2016-01-20",
    "SecretName": "secret001",
    "VersionStage": "ACSCurrent",
    "RemoveFromVersion": "001",
    "MoveToVersion": "002",
}


@pytest.mark.parametrize(
    ("method", "params", "secret", "expected"),
    [
        pytest.param(
            "GET",
            {**PUBLISHED_COMMON, "Action": "DescribeRegions"},
            "testsecret",
            "OLeaidS1JvxuMvnyHOwuJ+uX5qY=",
            id="ecs-published",
        ),
        pytest.param(
            "GET",
            {
                **{k if k != "Timestamp" else "TimeStamp": v for k, v in PUBLISHED_COMMON.items()},
                "Action": "DescribeRegions",
            },
            "testsecret",
            "CT9X0VtwR86fNWSnsc6v8YGOjuE=",
            id="older-TimeStamp-variant",
        ),
        pytest.param(
            "POST",
            {**PUBLISHED_COMMON, "Action": "DescribeRegions"},
            "testsecret",
            "MxbnVAM4w6sft9xjVpe/GCKueuk=",
            id="ecs-inputs-POST",
        ),
        pytest.param(
            "GET", {"query": "test", "body": "test"}, "secret", "XlUyV4sXjOuX5FnjUz9IF9tm5rU=", id="sdk-unit-test"
        ),
        pytest.param("POST", KMS_V1_PARAMS, "testsecret", "x36nRMb4JXKDo3cnDlhHDCqc2nM=", id="kms-update-stage"),
        pytest.param(
            "POST",
            {**KMS_V1_PARAMS, "SecurityToken": "CAIS+token/=="},
            "testsecret",
            "gWVDTaee+DmVDJSbzjdJCWlEVDI=",
            id="kms-update-stage-sts",
        ),
        pytest.param("GET", {"A": "a b*c~d/é+"}, "secret", "KA0+T2X+NARRy6zCN+vyitUimSk=", id="special-chars"),
    ],
)
def test_rpc_signature_vectors(method: str, params: dict[str, str], secret: str, expected: str) -> None:
    assert signing.rpc_signature(method, params, secret) == expected


def test_rpc_published_string_to_sign() -> None:
    expected = (
        "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML%26SignatureMethod%3DHMAC-SHA1"
        "%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf%26SignatureVersion%3D1.0"
        "%26Timestamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26"
    )
    assert signing.rpc_string_to_sign("GET", {**PUBLISHED_COMMON, "Action": "DescribeRegions"}) == expected


V3_HEADERS = {
    "host": "ecs.cn-shanghai.aliyuncs.com",
    "x-acs-action": "RunInstances",
    "x-acs-version": "2014-05-26",
    "x-acs-date": "2023-10-26T10:22:32Z",
    "x-acs-signature-nonce": "3156853299f313e23d1673dc12e1703d",
    "x-acs-content-sha256": signing.EMPTY_SHA256,
}


def test_acs3_published_vector() -> None:
    names = signing.acs3_signed_header_names(V3_HEADERS)
    assert ";".join(names) == "host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version"
    query = [("ImageId", "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd"), ("RegionId", "cn-shanghai")]
    canonical = signing.acs3_canonical_request("POST", query, V3_HEADERS, names, signing.EMPTY_SHA256)
    assert hashlib.sha256(canonical.encode()).hexdigest() == (
        "7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259"
    )
    assert signing.acs3_signature(canonical, "YourAccessKeySecret") == (
        "06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
    )


def test_acs3_derived_kms_vector() -> None:
    headers = {
        **V3_HEADERS,
        "host": "kms.cn-hangzhou.aliyuncs.com",
        "x-acs-action": "UpdateSecretVersionStage",
        "x-acs-version": "2016-01-20",
    }
    query = [
        ("MoveToVersion", "002"),
        ("RemoveFromVersion", "001"),
        ("SecretName", "secret001"),
        ("VersionStage", "ACSCurrent"),
    ]
    names = signing.acs3_signed_header_names(headers)
    canonical = signing.acs3_canonical_request("POST", query, headers, names, signing.EMPTY_SHA256)
    assert signing.acs3_signature(canonical, "YourAccessKeySecret") == (
        "5b504263a5a1cb5f65063d95e7bcd494dfe59b7ad9e4267841f864e349b58d7c"
    )


def test_acs3_sdk_unit_vector() -> None:
    headers = [("x-acs-test", "http"), ("x-acs-TEST", "https")]
    names = signing.acs3_signed_header_names(headers)
    assert names == ["x-acs-test"]
    payload = "55e12e91650d2fec56ec74e1d3e4ddbfce2ef3a65890c2a19ecf88a307e76a23"
    canonical = signing.acs3_canonical_request("GET", [("test", "ok"), ("empty", "")], headers, names, payload)
    assert signing.acs3_signature(canonical, "secret") == (
        "d16b30a7699ae9e43875b13195b2f81bcc3ed10c14a9b5eb780e51619aa50be1"
    )


# Names and values with the characters where encoders usually disagree.
tricky = st.text(
    alphabet=st.sampled_from(list("abcXYZ019 +*~/=&%:-_.é中ü\u2603")) | st.characters(codec="utf-8"),
    min_size=1,
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(
    params=st.dictionaries(tricky, st.text(max_size=20) | tricky, min_size=1, max_size=6),
    method=st.sampled_from(["GET", "POST"]),
    secret=tricky,
)
def test_rpc_signature_matches_alibaba_util(params: dict[str, str], method: str, secret: str) -> None:
    params.pop("Signature", None)  # never signed by us; the util expects callers to drop it
    assert signing.rpc_signature(method, params, secret) == AlibabaUtil.get_rpcsignature(params, method, secret)


# Alibaba's util leaves V3 query *names* unencoded while the V3 doc says to encode them; real
# parameter names are [A-Za-z0-9.] where both agree, so names are drawn from that set here.
param_names = st.text(alphabet=st.sampled_from(list("abcXYZ019.")), min_size=1, max_size=10)


@settings(max_examples=300, deadline=None)
@given(query=st.dictionaries(param_names, st.text(max_size=20) | tricky, max_size=6), action=tricky, secret=tricky)
def test_acs3_signature_matches_alibaba_util(query: dict[str, str], action: str, secret: str) -> None:
    headers = {**V3_HEADERS, "x-acs-action": action.strip() or "a"}
    request = TeaRequest()
    request.method = "POST"
    request.pathname = "/"
    request.query = dict(query)
    request.headers = dict(headers)
    expected = AlibabaUtil.get_authorization(request, "ACS3-HMAC-SHA256", signing.EMPTY_SHA256, "AKID", secret)
    names = signing.acs3_signed_header_names(headers)
    canonical = signing.acs3_canonical_request("POST", query.items(), headers, names, signing.EMPTY_SHA256)
    ours = signing.acs3_authorization("AKID", names, signing.acs3_signature(canonical, secret))
    assert ours == expected


def _fixed_auth(cls: type, token: str | None = None):  # type: ignore[no-untyped-def]
    creds = Credentials("AKID", "YourAccessKeySecret", token)
    return cls(creds, clock=lambda: 1698315752.0, nonce=lambda: "3156853299f313e23d1673dc12e1703d")


def test_acs3_auth_signs_headers_and_body() -> None:
    request = httpx.Request(
        "POST",
        "https://kms.cn-hangzhou.aliyuncs.com/",
        content=b"SecretName=s1",
        headers={
            "x-acs-action": "DescribeSecret",
            "x-acs-version": "2016-01-20",
            "content-type": "application/x-www-form-urlencoded",
        },
    )
    flow = _fixed_auth(Acs3HmacSha256Auth, token="CAIS-token").auth_flow(request)
    signed = next(flow)
    assert signed.headers["x-acs-date"] == "2023-10-26T10:22:32Z"
    assert signed.headers["x-acs-content-sha256"] == hashlib.sha256(b"SecretName=s1").hexdigest()
    assert signed.headers["x-acs-security-token"] == "CAIS-token"
    auth = signed.headers["Authorization"]
    assert auth.startswith("ACS3-HMAC-SHA256 Credential=AKID,SignedHeaders=content-type;host;x-acs-action;")
    assert "x-acs-security-token" in auth


def test_hmac_sha1_auth_puts_everything_in_the_form_body() -> None:
    request = httpx.Request(
        "POST",
        "https://kms.cn-hangzhou.aliyuncs.com/",
        content=b"SecretName=s%201",
        headers={
            "x-acs-action": "DescribeSecret",
            "x-acs-version": "2016-01-20",
            "content-type": "application/x-www-form-urlencoded",
        },
    )
    signed = next(_fixed_auth(HmacSha1RpcAuth, token="CAIS-token").auth_flow(request))
    assert signed.url.query == b""  # nothing secret in URLs, which end up in access logs
    body = dict(parse_qsl(signed.content.decode()))
    assert body["Action"] == "DescribeSecret"
    assert body["SecretName"] == "s 1"
    assert body["SignatureNonce"] == "3156853299f313e23d1673dc12e1703d"
    assert body["SecurityToken"] == "CAIS-token"
    assert signed.headers["content-length"] == str(len(signed.content))
    assert "x-acs-action" not in signed.headers
    unsigned = {k: v for k, v in body.items() if k != "Signature"}
    assert body["Signature"] == signing.rpc_signature("POST", unsigned, "YourAccessKeySecret")


def test_hmac_sha1_get_signs_query() -> None:
    request = httpx.Request(
        "GET",
        "https://kms.cn-hangzhou.aliyuncs.com/?SecretName=x",
        headers={"x-acs-action": "DescribeSecret", "x-acs-version": "2016-01-20"},
    )
    signed = next(_fixed_auth(HmacSha1RpcAuth).auth_flow(request))
    query = dict(signed.url.params)
    unsigned = {k: v for k, v in query.items() if k != "Signature"}
    assert query["Signature"] == signing.rpc_signature("GET", unsigned, "YourAccessKeySecret")


def test_percent_encode_rules() -> None:
    assert signing.percent_encode(" ~/*-+é") == "%20~%2F%2A-%2B%C3%A9"
