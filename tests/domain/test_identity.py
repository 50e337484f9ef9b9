"""Which role a ServiceAccount's annotations name (pure)."""

from __future__ import annotations

import pytest

from secretstage.domain.identity import (
    ROLE_ARN_ANNOTATION,
    ROLE_NAME_ANNOTATION,
    IdentityProblem,
    role_arn_for,
    session_name,
)

PROVIDER = "acs:ram::1234567890123456:oidc-provider/ack-rrsa-c1"


def test_role_name_annotation_is_in_the_providers_account() -> None:
    role = role_arn_for("payments", "promoter", {ROLE_NAME_ANNOTATION: "payments-promoter"}, PROVIDER)
    assert role == "acs:ram::1234567890123456:role/payments-promoter"


def test_full_arn_annotation() -> None:
    arn = "acs:ram::1234567890123456:role/x.y-z"
    assert role_arn_for("ns", "sa", {ROLE_ARN_ANNOTATION: arn}, PROVIDER) == arn
    assert role_arn_for("ns", "sa", {ROLE_ARN_ANNOTATION: arn, ROLE_NAME_ANNOTATION: "x.y-z"}, PROVIDER) == arn


@pytest.mark.parametrize(
    ("annotations", "reason", "needle"),
    [
        ({}, "ServiceAccountHasNoRole", "oidc:sub system:serviceaccount:ns:sa"),
        ({"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/x"}, "ServiceAccountHasNoRole", ROLE_NAME_ANNOTATION),
        ({ROLE_NAME_ANNOTATION: "a/b"}, "InvalidRoleAnnotation", "is not a RAM role name"),
        ({ROLE_ARN_ANNOTATION: "acs:ram::1234567890123456:user/x"}, "InvalidRoleAnnotation", "is not a role ARN"),
        ({ROLE_ARN_ANNOTATION: "acs:ram::999:role/x"}, "InvalidRoleAnnotation", "can only trust an OIDC provider"),
        (
            {ROLE_ARN_ANNOTATION: "acs:ram::1234567890123456:role/x", ROLE_NAME_ANNOTATION: "y"},
            "InvalidRoleAnnotation",
            "name different roles",
        ),
    ],
)
def test_problems_say_what_to_fix(annotations: dict[str, str], reason: str, needle: str) -> None:
    with pytest.raises(IdentityProblem) as err:
        role_arn_for("ns", "sa", annotations, PROVIDER)
    assert err.value.reason == reason
    assert needle in str(err.value)


def test_session_name_fits_sts_rules() -> None:
    name = session_name("a" * 63, "b" * 100)
    assert len(name) == 64
    assert name.startswith("secretstage.aaa")
    assert session_name("payments", "promoter") == "secretstage.payments.promoter"
