"""Which RAM role a ServiceAccount's promotions assume, and how that session is named. Pure.

A ServiceAccount opts in with ``secretstage.io/role-arn: acs:ram::<account>:role/<name>``: its
promotions may use that role. ACK's own workload annotation,
``pod-identity.alibabacloud.com/role-name``, is honoured only with ``--accept-ack-role-annotation``:
it is there for the namespace's pods, and honouring it would let anyone who may create a promotion in
the namespace use the role of every workload in it. Either way the role lives in the account of the
cluster's OIDC provider (a RAM role can only trust an OIDC provider of its own account).

The operator's own identity is never reachable this way: its ServiceAccount, and any ServiceAccount
whose role is the operator's, are refused; ``spec.credentials.operatorIdentity`` in the namespaces
``--operator-identity-namespaces`` lists is the one way to it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

ROLE_NAME_ANNOTATION = "pod-identity.alibabacloud.com/role-name"
ROLE_ARN_ANNOTATION = "secretstage.io/role-arn"
OIDC_PROVIDER_ARN = re.compile(r"^acs:ram::(?P<account>[0-9]{1,32}):oidc-provider/(?P<name>[A-Za-z0-9._-]{1,128})$")
ROLE_ARN = re.compile(r"^acs:ram::(?P<account>[0-9]{1,32}):role/(?P<name>[A-Za-z0-9.-]{1,64})$")
ROLE_NAME = re.compile(r"^[A-Za-z0-9.-]{1,64}$")
_SESSION_CHARS = re.compile(r"[^A-Za-z0-9.@_-]")
_KUBERNETES_CHARS = re.compile(r"[a-z0-9.-]+")


class IdentityProblem(ValueError):
    """A ServiceAccount that does not name a usable role; ``reason`` is the status reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def provider_account(oidc_provider_arn: str) -> str:
    match = OIDC_PROVIDER_ARN.fullmatch(oidc_provider_arn)
    if match is None:
        raise ValueError(
            f"{oidc_provider_arn!r} is not an OIDC provider ARN; expected acs:ram::<account>:oidc-provider/<name> "
            "(ACK: the cluster's RRSA provider, acs:ram::<account>:oidc-provider/ack-rrsa-<cluster-id>)"
        )
    return match.group("account")


@dataclass(frozen=True)
class OperatorIdentity:
    """What the operator itself is, so that no promotion can borrow it through a ServiceAccount."""

    service_account: tuple[str, str] | None = None  # (namespace, name)
    role_arn: str | None = None  # ALIBABA_CLOUD_ROLE_ARN, as ack-pod-identity-webhook sets it

    def problem(self, namespace: str, name: str, role_arn: str | None) -> IdentityProblem | None:
        fix = (
            "the operator's identity is only for spec.credentials.operatorIdentity: true in the namespaces its "
            "--operator-identity-namespaces lists; give this namespace a ServiceAccount and RAM role of its own"
        )
        if self.service_account == (namespace, name):
            return IdentityProblem(
                "OperatorIdentityNotAllowed",
                f"spec.credentials.serviceAccountRef names the operator's own ServiceAccount {namespace}/{name}; {fix}",
            )
        # RAM role names are case-insensitive
        if role_arn is not None and self.role_arn and role_arn.casefold() == self.role_arn.casefold():
            return IdentityProblem(
                "OperatorIdentityNotAllowed",
                f"ServiceAccount {namespace}/{name} names the operator's own RAM role {role_arn}; {fix}",
            )
        return None


UNKNOWN_OPERATOR = OperatorIdentity()


def role_arn_for(
    namespace: str,
    name: str,
    annotations: Mapping[str, str],
    oidc_provider_arn: str,
    *,
    accept_ack_annotation: bool = False,
    operator: OperatorIdentity = UNKNOWN_OPERATOR,
) -> str:
    """The role ARN a ServiceAccount's annotations name; ``IdentityProblem`` says what to fix."""
    refused = operator.problem(namespace, name, None)
    if refused is not None:
        raise refused
    role = _annotated_role(namespace, name, annotations, oidc_provider_arn, accept_ack_annotation)
    refused = operator.problem(namespace, name, role)
    if refused is not None:
        raise refused
    return role


def _annotated_role(
    namespace: str, name: str, annotations: Mapping[str, str], oidc_provider_arn: str, accept_ack_annotation: bool
) -> str:
    account = provider_account(oidc_provider_arn)
    who = f"ServiceAccount {namespace}/{name}"
    by_arn = annotations.get(ROLE_ARN_ANNOTATION)
    by_name = annotations.get(ROLE_NAME_ANNOTATION) if accept_ack_annotation else None
    from_name = None
    if by_name is not None:
        if not ROLE_NAME.fullmatch(by_name):
            raise IdentityProblem(
                "InvalidRoleAnnotation",
                f"{who}: annotation {ROLE_NAME_ANNOTATION}={by_name!r} is not a RAM role name "
                "(letters, digits, . and -, at most 64)",
            )
        from_name = f"acs:ram::{account}:role/{by_name}"
    if by_arn is not None:
        match = ROLE_ARN.fullmatch(by_arn)
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
        ignored = (
            f" ({ROLE_NAME_ANNOTATION} is for the namespace's pods and not honoured here: the operator runs "
            "without --accept-ack-role-annotation)"
            if ROLE_NAME_ANNOTATION in annotations
            else ""
        )
        raise IdentityProblem(
            "ServiceAccountHasNoRole",
            f"{who} names no RAM role for promotions{ignored}: annotate it with "
            f"{ROLE_ARN_ANNOTATION}: acs:ram::{account}:role/<role>, and let the role's trust policy allow "
            f"oidc:sub system:serviceaccount:{namespace}:{name}",
        )
    return from_name


SESSION_NAME_MAX = 64


def session_name(namespace: str, name: str) -> str:
    """RoleSessionName (2-64 of ``[A-Za-z0-9.@_-]``): names the tenant in ActionTrail's assumed-role ARN,
    and RAM policies may test it (``acs:RoleSessionName``), so two ServiceAccounts never share one.

    ``secretstage.<namespace>.<name>`` when it fits (a namespace has no dots, so it reads back
    unambiguously); longer ones keep a readable head and end in ``_`` and a hash of the whole. No
    Kubernetes name has a ``_``, so no ServiceAccount can be named to look like another's hashed form.
    """
    full = f"secretstage.{namespace}.{name}"
    if len(full) <= SESSION_NAME_MAX and _KUBERNETES_CHARS.fullmatch(full):
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:16]
    head = _SESSION_CHARS.sub("-", full)[: SESSION_NAME_MAX - len(digest) - 1]
    return f"{head}_{digest}"
