"""Who may let a promotion move its stage: ``spec.approval``, the approvals recorded on the object, and
whether the admission policy that authenticates them is in force. Pure.

An approval is one line of the annotation ``secretstage.io/approvals``, ``approve GENERATION USER`` or
``reject GENERATION USER``, appended by the approver. The operator cannot tell who wrote a line; the
API server can. The chart's ValidatingAdmissionPolicy (``approval_policy_problem`` checks that it is
installed and binding) admits a line only when USER is the user the API server authenticated for that
request, is listed in ``spec.approval.approvers`` (or is in a listed group), is not the user named by
``secretstage.io/requested-by`` (whoever created or last changed the spec, which the same policy
holds to the truth), and GENERATION is the object's generation then. Lines are never changed or
removed. So the operator counts a line of this generation as an approval by that user.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

APPROVALS_ANNOTATION = "secretstage.io/approvals"
REQUESTED_BY_ANNOTATION = "secretstage.io/requested-by"
MAX_MIN_APPROVALS = 10
VERBS = ("approve", "reject")


class InvalidApproval(ValueError):
    """spec.approval cannot be used: ``field`` and ``detail`` (what is wrong, and the fix)."""

    def __init__(self, field: str, detail: str) -> None:
        self.field, self.detail = field, detail
        super().__init__(f"{field} {detail}")


@dataclass(frozen=True)
class ApprovalRule:
    """``spec.approval`` with ``required: true``."""

    users: tuple[str, ...]
    groups: tuple[str, ...]
    min_approvals: int = 1

    def describe_approvers(self) -> str:
        parts = [f"user {u}" for u in self.users] + [f"a member of group {g}" for g in self.groups]
        return ", ".join(parts)


def parse_approval(spec: Mapping[str, Any] | None) -> ApprovalRule | None:
    """``spec.approval``; None when it does not ask for approval (absent, or ``required: false``)."""
    if not spec or not spec.get("required"):
        return None
    approvers = spec.get("approvers") or {}
    users = tuple(str(u) for u in approvers.get("users") or () if str(u))
    groups = tuple(str(g) for g in approvers.get("groups") or () if str(g))
    if not users and not groups:
        raise InvalidApproval(
            "spec.approval.approvers",
            "lists nobody, and spec.approval.required is true: add users (approvers.users) or groups "
            "(approvers.groups) who may approve",
        )
    minimum = spec.get("minApprovals", 1)
    if not isinstance(minimum, int) or isinstance(minimum, bool) or not 1 <= minimum <= MAX_MIN_APPROVALS:
        raise InvalidApproval("spec.approval.minApprovals", f"must be a number from 1 to {MAX_MIN_APPROVALS}")
    if groups == () and minimum > len(set(users)):
        raise InvalidApproval(
            "spec.approval.minApprovals",
            f"is {minimum} but approvers.users lists only {len(set(users))} user(s) (and no group): it could "
            "never be met; list more approvers or lower minApprovals",
        )
    return ApprovalRule(users, groups, minimum)


@dataclass(frozen=True)
class Entry:
    verb: str  # approve | reject
    generation: int
    user: str


def line(verb: str, generation: int, user: str) -> str:
    """The annotation line an approver appends (what the admission policy compares it with)."""
    return f"{verb} {generation} {user}"


def parse_entries(text: str) -> list[Entry]:
    """The lines of the approvals annotation; a line of another shape counts for nothing."""
    entries = []
    for raw in text.splitlines():
        verb, _, rest = raw.partition(" ")
        number, _, user = rest.partition(" ")
        if verb in VERBS and number.isdigit() and user:
            entries.append(Entry(verb, int(number), user))
    return entries


def approval_decisions(annotations: Mapping[str, str]) -> int:
    """How many approval lines an object carries: a change of it is a reason to look at it again."""
    return len(str(annotations.get(APPROVALS_ANNOTATION) or "").splitlines())


class Decision(enum.Enum):
    APPROVED = "Approved"
    REJECTED = "Rejected"
    WAITING = "AwaitingApproval"


@dataclass(frozen=True)
class Approvals:
    """What the annotation says about one generation."""

    decision: Decision
    approvers: tuple[str, ...]  # who approved this generation, in order, once each
    rejected_by: str | None
    needed: int
    requested_by: str

    def message(self, name: str, namespace: str, rule: ApprovalRule, generation: int) -> str:
        if self.decision is Decision.REJECTED:
            return (
                f"{self.rejected_by} rejected generation {generation} of the spec: nothing was sent; change the "
                "spec to ask again"
            )
        if self.decision is Decision.APPROVED:
            return f"generation {generation} approved by {', '.join(self.approvers)}"
        have = f"; approved so far by {', '.join(self.approvers)}" if self.approvers else ""
        return (
            f"waiting for {self.needed - len(self.approvers)} more approval(s) ({self.needed} needed{have}) "
            f"from {rule.describe_approvers()}, other than {self.requested_by or 'whoever changed the spec'}: "
            f"kubectl secretstage approve {name} -n {namespace}. Nothing is sent until then"
        )


def decide(rule: ApprovalRule, annotations: Mapping[str, str], generation: int) -> Approvals:
    """The approvals and rejections of ``generation`` (earlier generations' lines no longer count:
    editing the spec withdraws them). A rejection wins."""
    entries = [e for e in parse_entries(annotations.get(APPROVALS_ANNOTATION, "")) if e.generation == generation]
    requested_by = annotations.get(REQUESTED_BY_ANNOTATION, "")
    approvers: list[str] = []
    for entry in entries:
        if entry.verb == "approve" and entry.user not in approvers and entry.user != requested_by:
            approvers.append(entry.user)
    rejected_by = next((e.user for e in entries if e.verb == "reject"), None)
    if rejected_by is not None:
        decision = Decision.REJECTED
    elif len(approvers) >= rule.min_approvals:
        decision = Decision.APPROVED
    else:
        decision = Decision.WAITING
    return Approvals(decision, tuple(approvers), rejected_by, rule.min_approvals, requested_by)


@dataclass(frozen=True)
class ApprovalRecord:
    """``status.approval``: who asked, who approved which generation and when the operator saw it."""

    generation: int
    required: int
    requested_by: str
    approved: tuple[tuple[str, str], ...] = ()  # (user, time)
    rejected: tuple[str, str] | None = None
    decision: str = ""

    def to_status(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "minApprovals": self.required,
            "requestedBy": self.requested_by or None,
            "decision": self.decision,
            "approvals": [{"user": u, "generation": self.generation, "time": t} for u, t in self.approved],
            "rejection": {"user": self.rejected[0], "generation": self.generation, "time": self.rejected[1]}
            if self.rejected
            else None,
        }


def record(approvals: Approvals, generation: int, now: str, old: Mapping[str, Any] | None) -> ApprovalRecord:
    """The status record, keeping the time an approval was first seen (by an earlier attempt)."""
    seen: dict[str, str] = {}
    if old and old.get("generation") == generation:
        seen = {str(a.get("user")): str(a.get("time")) for a in old.get("approvals") or () if a.get("user")}
    rejection = None
    if approvals.rejected_by is not None:
        earlier = (old or {}).get("rejection") or {}
        when = str(earlier.get("time")) if old and old.get("generation") == generation and earlier else now
        rejection = (approvals.rejected_by, when)
    return ApprovalRecord(
        generation=generation,
        required=approvals.needed,
        requested_by=approvals.requested_by,
        approved=tuple((user, seen.get(user, now)) for user in approvals.approvers),
        rejected=rejection,
        decision=approvals.decision.value,
    )


def approval_policy_problem(
    policy_name: str,
    policy: Mapping[str, Any] | None,
    bindings: Sequence[Mapping[str, Any]],
    promotion_created: str,
) -> str | None:
    """Why the approvals of a promotion created at ``promotion_created`` cannot be trusted, or None.

    They can be when the ValidatingAdmissionPolicy exists, fails closed, and a binding applies it to
    every promotion with Deny; and both were created before the promotion (in an earlier second: the
    API server's times are whole seconds), so that every line ever written to it was admitted by them.
    (A policy deleted and re-created since is newer than the promotion: lines written in between were
    checked by nobody.) Read after the promotion was: in force then, in force when its lines were written.
    """
    fix = (
        "install it with the chart (approvals.admissionPolicy.enabled=true) or ask the cluster's administrators; "
        "nothing is sent until then"
    )
    if policy is None:
        return f"the ValidatingAdmissionPolicy {policy_name} that authenticates approvers does not exist: {fix}"
    if (policy.get("spec") or {}).get("failurePolicy", "Fail") != "Fail":
        return f"the ValidatingAdmissionPolicy {policy_name} does not fail closed (failurePolicy is not Fail): {fix}"
    binding = next((b for b in bindings if _binds(b, policy_name)), None)
    if binding is None:
        return (
            f"no ValidatingAdmissionPolicyBinding applies {policy_name} to every promotion with validationActions "
            f"[Deny]: {fix}"
        )
    for kind, obj in (("ValidatingAdmissionPolicy", policy), ("ValidatingAdmissionPolicyBinding", binding)):
        meta = obj.get("metadata") or {}
        created = str(meta.get("creationTimestamp") or "")
        # Whole seconds: one created in the same second as the promotion may have come after it.
        if not created or not promotion_created or created >= promotion_created:
            return (
                f"the {kind} {meta.get('name')} was created at {created or 'an unknown time'}, not before this "
                f"promotion ({promotion_created or 'an unknown time'}): approvals written before it was in force were "
                "checked by nobody. Re-create the promotion (kubectl replace --force -f FILE) and approve it again"
            )
    return None


def _binds(binding: Mapping[str, Any], policy_name: str) -> bool:
    spec = binding.get("spec") or {}
    if spec.get("policyName") != policy_name or "Deny" not in (spec.get("validationActions") or ()):
        return False
    if spec.get("paramRef"):
        return False
    match = spec.get("matchResources") or {}
    # A binding narrowed to some namespaces or objects would leave the others unchecked.
    narrowing = ("namespaceSelector", "objectSelector", "resourceRules", "excludeResourceRules")
    return not any(match.get(key) for key in narrowing)
