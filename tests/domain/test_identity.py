"""Which role a ServiceAccount's annotations name (pure)."""

from __future__ import annotations

import re

import pytest

from secretstage.domain.identity import (
    ROLE_ARN_ANNOTATION,
    ROLE_NAME_ANNOTATION,
    IdentityProblem,
    OperatorIdentity,
    provider_account,
    role_arn_for,
    session_name,
)

PROVIDER = "acs:ram::1234567890123456:oidc-provider/ack-rrsa-c1"


def test_role_name_annotation_is_in_the_providers_account() -> None:
    role = role_arn_for(
        "payments", "promoter", {ROLE_NAME_ANNOTATION: "payments-promoter"}, PROVIDER, accept_ack_annotation=True
    )
    assert role == "acs:ram::1234567890123456:role/payments-promoter"


def test_full_arn_annotation() -> None:
    arn = "acs:ram::1234567890123456:role/x.y-z"
    assert role_arn_for("ns", "sa", {ROLE_ARN_ANNOTATION: arn}, PROVIDER) == arn
    both = {ROLE_ARN_ANNOTATION: arn, ROLE_NAME_ANNOTATION: "x.y-z"}
    assert role_arn_for("ns", "sa", both, PROVIDER, accept_ack_annotation=True) == arn


@pytest.mark.parametrize(
    ("annotations", "reason", "needle"),
    [
        ({}, "ServiceAccountHasNoRole", "oidc:sub system:serviceaccount:ns:sa"),
        ({"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/x"}, "ServiceAccountHasNoRole", ROLE_ARN_ANNOTATION),
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
        role_arn_for("ns", "sa", annotations, PROVIDER, accept_ack_annotation=True)
    assert err.value.reason == reason
    assert needle in str(err.value)


def test_session_name_fits_sts_rules() -> None:
    name = session_name("a" * 63, "b" * 100)
    assert len(name) == 64
    assert re.fullmatch(r"[A-Za-z0-9.@_-]{2,64}", name)
    assert name.startswith("secretstage.aaa")
    assert session_name("payments", "promoter") == "secretstage.payments.promoter"


def test_session_names_stay_unique_past_64_characters() -> None:
    # cut at 64, these two were the same session name: one tenant's ActionTrail entries under another's
    ns = "team-" + "x" * 50
    first, second = session_name(ns, "promoter-one"), session_name(ns, "promoter-two")
    assert first != second
    assert len(first) == len(second) == 64
    assert first.startswith(f"secretstage.{ns[:30]}")  # readable head
    assert session_name(ns, "promoter-one") == first  # stable across restarts


def test_a_service_account_cannot_be_named_like_anothers_hashed_session() -> None:
    long_name = session_name("payments", "p" * 80)
    assert "_" in long_name
    short = long_name.removeprefix("secretstage.payments.")
    assert session_name("payments", short.replace("_", "-")) != long_name


@pytest.mark.parametrize(
    "annotation",
    [
        {ROLE_ARN_ANNOTATION: "acs:ram::1234567890123456:role/x\\n"},
        {ROLE_NAME_ANNOTATION: "payments-promoter\\n"},
    ],
)
def test_a_trailing_newline_is_not_part_of_a_role(annotation: dict[str, str]) -> None:
    with pytest.raises(IdentityProblem) as err:
        role_arn_for("ns", "sa", annotation, PROVIDER, accept_ack_annotation=True)
    assert err.value.reason == "InvalidRoleAnnotation"


def test_oidc_provider_arn_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(ValueError, match="is not an OIDC provider ARN"):
        provider_account(PROVIDER + "\\n")


def test_acks_workload_annotation_is_not_honoured_by_default() -> None:
    # it names the role of the namespace's pods: honouring it hands that role to anyone who may create promotions
    with pytest.raises(IdentityProblem) as err:
        role_arn_for("payments", "api", {ROLE_NAME_ANNOTATION: "payments-api"}, PROVIDER)
    assert err.value.reason == "ServiceAccountHasNoRole"
    assert "--accept-ack-role-annotation" in str(err.value)
    assert ROLE_ARN_ANNOTATION in str(err.value)


OPERATOR = OperatorIdentity(
    service_account=("secretstage-system", "secretstage-operator"),
    role_arn="acs:ram::1234567890123456:role/secretstage-operator",
)


def test_the_operators_own_service_account_is_refused() -> None:
    with pytest.raises(IdentityProblem) as err:
        role_arn_for(
            "secretstage-system",
            "secretstage-operator",
            {ROLE_NAME_ANNOTATION: "secretstage-operator"},
            PROVIDER,
            accept_ack_annotation=True,
            operator=OPERATOR,
        )
    assert err.value.reason == "OperatorIdentityNotAllowed"
    assert "operatorIdentity" in str(err.value)


@pytest.mark.parametrize(
    "annotations",
    [
        {ROLE_ARN_ANNOTATION: "acs:ram::1234567890123456:role/secretstage-operator"},
        {ROLE_ARN_ANNOTATION: "acs:ram::1234567890123456:role/SecretStage-Operator"},  # RAM names ignore case
        {ROLE_NAME_ANNOTATION: "secretstage-operator"},
    ],
)
def test_a_service_account_naming_the_operators_role_is_refused(annotations: dict[str, str]) -> None:
    with pytest.raises(IdentityProblem) as err:
        role_arn_for("team-a", "borrower", annotations, PROVIDER, accept_ack_annotation=True, operator=OPERATOR)
    assert err.value.reason == "OperatorIdentityNotAllowed"


def test_other_roles_pass_the_operator_check() -> None:
    arn = "acs:ram::1234567890123456:role/team-a"
    assert role_arn_for("team-a", "promoter", {ROLE_ARN_ANNOTATION: arn}, PROVIDER, operator=OPERATOR) == arn
