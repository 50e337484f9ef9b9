from __future__ import annotations

from typing import Any

import pytest

from secretstage.domain.promotion import InvalidPromotion, parse_spec

BASE: dict[str, Any] = {
    "secretName": "app/db",
    "versionStage": "ACSCurrent",
    "moveToVersion": "v2",
    "credentials": {"secretRef": {"name": "kms"}},
}


def test_defaults() -> None:
    req = parse_spec(BASE)
    assert (req.signature, req.verify, req.dry_run, req.remove_from_version) == ("ACS3-HMAC-SHA256", True, False, None)
    assert req.credentials_secret == "kms"
    assert req.secret_region is None


def test_arn_region() -> None:
    assert parse_spec({**BASE, "secretName": "acs:kms:cn-shanghai:123:secret/app/db"}).secret_region == "cn-shanghai"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"secretName": "a b"}, "spec.secretName"),
        ({"secretName": None}, "spec.secretName"),
        ({"versionStage": ""}, "spec.versionStage"),
        ({"moveToVersion": "v\n2"}, "spec.moveToVersion"),
        ({"moveToVersion": None}, "spec: set spec.moveToVersion and/or spec.removeFromVersion"),
        ({"moveToVersion": None, "removeFromVersion": "v1"}, "ACSCurrent cannot be removed"),
        ({"removeFromVersion": "v2"}, "must differ"),
        ({"endpoint": "https://x.example/path"}, "spec.endpoint"),
        ({"regionId": "Hangzhou"}, "spec.regionId"),
        # kms.oss-cn-hangzhou.aliyuncs.com is the OSS bucket "kms", not KMS (secretstage.regions)
        ({"regionId": "oss-cn-hangzhou"}, "spec.regionId"),
        ({"regionId": "mybucket-cn-hangzhou"}, "spec.regionId"),
        # `$` lets a trailing newline through; the checks use fullmatch
        ({"regionId": "cn-hangzhou\n"}, "spec.regionId"),
        ({"moveToVersion": "v2\n"}, "spec.moveToVersion"),
        ({"secretName": "app/db\n"}, "spec.secretName"),
        ({"credentials": {"secretRef": {"name": "kms\n"}}}, "spec.credentials.secretRef.name"),
        ({"credentials": {"serviceAccountRef": {"name": "promoter\n"}}}, "spec.credentials.serviceAccountRef.name"),
        ({"signature": "MD5"}, "spec.signature"),
        ({"credentials": {}}, "spec.credentials: set exactly one"),
        ({"credentials": {"secretRef": {"name": "k"}, "operatorIdentity": True}}, "spec.credentials: set exactly one"),
        ({"credentials": {"secretRef": {"name": "../etc"}}}, "spec.credentials.secretRef.name"),
        (
            {"credentials": {"secretRef": {"name": "k"}, "serviceAccountRef": {"name": "sa"}}},
            "spec.credentials: set exactly one",
        ),
        (
            {"credentials": {"serviceAccountRef": {"name": "promoter", "namespace": "other-team"}}},
            "spec.credentials.serviceAccountRef: takes only name",
        ),
        ({"credentials": {"serviceAccountRef": {"name": "Promoter!"}}}, "spec.credentials.serviceAccountRef.name"),
        ({"precondition": {"currentVersion": "v 1"}}, "spec.precondition.currentVersion"),
        ({"dryRun": "true"}, "spec.dryRun"),
    ],
)
def test_problems_name_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidPromotion) as err:
        parse_spec({**BASE, **change})
    assert field in str(err.value)


def test_all_problems_reported_at_once() -> None:
    with pytest.raises(InvalidPromotion) as err:
        parse_spec({"secretName": "", "versionStage": "x y", "credentials": {}})
    assert len(err.value.problems) == 3


def test_huge_values_are_truncated_in_messages() -> None:
    with pytest.raises(InvalidPromotion) as err:
        parse_spec({**BASE, "moveToVersion": "x" * 100_000})
    assert len(str(err.value)) < 500


def test_after_success_when() -> None:
    base = {
        "secretName": "s",
        "versionStage": "ACSCurrent",
        "moveToVersion": "v2",
        "credentials": {"secretRef": {"name": "k"}},
    }
    assert parse_spec(base).after_success_when == "Moved"
    always = parse_spec({**base, "afterSuccess": {"when": "Always", "restart": [{"kind": "Deployment", "name": "a"}]}})
    assert always.after_success_when == "Always"
    with pytest.raises(InvalidPromotion, match=r"spec.afterSuccess.when: must be one of Moved, Always"):
        parse_spec({**base, "afterSuccess": {"when": "Sometimes"}})
