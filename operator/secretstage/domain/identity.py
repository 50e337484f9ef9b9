"""Which RAM role a ServiceAccount's promotions assume, and how that session is named. Pure.

ACK's convention: the ServiceAccount carries ``pod-identity.alibabacloud.com/role-name: <role>``
and the role lives in the account of the cluster's OIDC provider (a RAM role can only trust an
OIDC provider of its own account). ``secretstage.io/role-arn`` names the role by full ARN instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

ROLE_NAME_ANNOTATION = "pod-identity.alibabacloud.com/role-name"
ROLE_ARN_ANNOTATION = "secretstage.io/role-arn"
OIDC_PROVIDER_ARN = re.compile(r"^acs:ram::(?P<account>[0-9]{1,32}):oidc-provider/(?P<name>[A-Za-z0-9._-]{1,128})$")
ROLE_ARN = re.compile(r"^acs:ram::(?P<account>[0-9]{1,32}):role/(?P<name>[A-Za-z0-9.-]{1,64})$")
ROLE_NAME = re.compile(r"^[A-Za-z0-9.-]{1,64}$")
_SESSION_CHARS = re.compile(r"[^A-Za-z0-9.@_-]")


class IdentityProblem(ValueError):
    """A ServiceAccount that does not name a usable role; ``reason`` is the status reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def provider_account(oidc_provider_arn: str) -> str:
    match = OIDC_PROVIDER_ARN.match(oidc_provider_arn)
    if match is None:
        raise ValueError(
            f"{oidc_provider_arn!r} is not an OIDC provider ARN; expected acs:ram::<account>:oidc-provider/<name> "
            "(ACK: the cluster's RRSA provider, acs:ram::<account>:oidc-provider/ack-rrsa-<cluster-id>)"
        )
    return match.group("account")


def role_arn_for(namespace: str, name: str, annotations: Mapping[str, str], oidc_provider_arn: str) -> str:
    """The role ARN a ServiceAccount's annotations name; ``IdentityProblem`` says what to fix."""
    account = provider_account(oidc_provider_arn)
    who = f"ServiceAccount {namespace}/{name}"
    by_arn = annotations.get(ROLE_ARN_ANNOTATION)
    by_name = annotations.get(ROLE_NAME_ANNOTATION)
    from_name = None
    if by_name is not None:
        if not ROLE_NAME.match(by_name):
            raise IdentityProblem(
                "InvalidRoleAnnotation",
                f"{who}: annotation {ROLE_NAME_ANNOTATION}={by_name!r} is not a RAM role name "
                "(letters, digits, . and -, at most 64)",
            )
        from_name = f"acs:ram::{account}:role/{by_name}"
    if by_arn is not None:
        match = ROLE_ARN.match(by_arn)
        if match is None:
            raise IdentityProblem(
                "InvalidRoleAnnotation",
                f"{who}: annotation {ROLE_ARN_ANNOTATION}={by_arn!r} is not a role ARN, acs:ram::<account>:role/<name>",
            )
        if match.group("account") != account:
            raise IdentityProblem(
                "InvalidRoleAnnotation",
                f"{who}: role {by_arn} is in account {match.group('account')}, but the OIDC provider "
                f"{oidc_provider_arn} is in {account}; a RAM role can only trust an OIDC provider of its own account",
            )
        if from_name is not None and from_name != by_arn:
            raise IdentityProblem(
                "InvalidRoleAnnotation",
                f"{who}: {ROLE_NAME_ANNOTATION} and {ROLE_ARN_ANNOTATION} name different roles; keep one",
            )
        return by_arn
    if from_name is None:
        raise IdentityProblem(
            "ServiceAccountHasNoRole",
            f"{who} names no RAM role: annotate it with {ROLE_NAME_ANNOTATION}: <role> (or {ROLE_ARN_ANNOTATION}: "
            "<role ARN>), and let the role's trust policy allow "
            f"oidc:sub system:serviceaccount:{namespace}:{name}",
        )
    return from_name


def session_name(namespace: str, name: str) -> str:
    """RoleSessionName (2-64 of ``[A-Za-z0-9.@_-]``): names the tenant in ActionTrail's assumed-role ARN."""
    return _SESSION_CHARS.sub("-", f"secretstage.{namespace}.{name}")[:64]
