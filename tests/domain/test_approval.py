"""spec.approval as the operator reads it: who counts, which generation, when the policy is trusted. Pure."""

from __future__ import annotations

from typing import Any

import pytest

from secretstage.domain.approval import (
    APPROVALS_ANNOTATION,
    REQUESTED_BY_ANNOTATION,
    ApprovalRule,
    Decision,
    InvalidApproval,
    approval_decisions,
    approval_policy_problem,
    decide,
    parse_approval,
    parse_entries,
    record,
)
from secretstage.domain.outcome import AttemptResult, Kind, Outcome, failed
from secretstage.domain.status import build_status, events_for

RULE = ApprovalRule(users=("bob", "carol"), groups=("leads",), min_approvals=2)


def annotations(*lines: str, requested_by: str = "alice") -> dict[str, str]:
    return {APPROVALS_ANNOTATION: "\n".join(lines), REQUESTED_BY_ANNOTATION: requested_by}


def test_spec_approval_is_checked_and_names_the_field() -> None:
    assert parse_approval(None) is None
    assert parse_approval({"required": False, "approvers": {"users": ["bob"]}}) is None
    assert parse_approval({"required": True, "approvers": {"users": ["bob"]}}) == ApprovalRule(("bob",), (), 1)
    with pytest.raises(InvalidApproval) as nobody:
        parse_approval({"required": True, "approvers": {}})
    assert nobody.value.field == "spec.approval.approvers"
    with pytest.raises(InvalidApproval) as unreachable:
        parse_approval({"required": True, "approvers": {"users": ["bob", "carol"]}, "minApprovals": 3})
    assert "could never be met" in unreachable.value.detail
    # with a group the number of members is unknown here: allowed
    assert parse_approval({"required": True, "approvers": {"groups": ["leads"]}, "minApprovals": 3}) is not None


def test_only_this_generations_lines_count_once_per_approver_and_never_the_requesters() -> None:
    seen = decide(RULE, annotations("approve 1 bob", "approve 2 bob", "approve 2 bob", "approve 2 alice"), 2)
    assert (seen.decision, seen.approvers) == (Decision.WAITING, ("bob",))
    seen = decide(RULE, annotations("approve 1 carol", "approve 2 bob", "approve 2 carol"), 2)
    assert (seen.decision, seen.approvers) == (Decision.APPROVED, ("bob", "carol"))
    assert decide(RULE, annotations("approve 2 bob", "approve 2 carol"), 3).decision is Decision.WAITING  # an edit


def test_a_rejection_wins_and_odd_lines_count_for_nothing() -> None:
    seen = decide(RULE, annotations("approve 2 bob", "approve 2 carol", "reject 2 dave"), 2)
    assert (seen.decision, seen.rejected_by) == (Decision.REJECTED, "dave")
    assert parse_entries("lgtm\napprove x bob\napprove 3\nreject 3 carol") == [parse_entries("reject 3 carol")[0]]
    assert approval_decisions(annotations("approve 1 bob", "reject 1 carol")) == 2
    assert approval_decisions({}) == 0


def test_the_message_says_who_may_approve_and_how() -> None:
    seen = decide(RULE, annotations("approve 1 bob"), 1)
    message = seen.message("db-v2", "payments", RULE, 1)
    assert "waiting for 1 more approval(s) (2 needed; approved so far by bob)" in message
    assert "from user bob, user carol, a member of group leads, other than alice" in message
    assert "kubectl secretstage approve db-v2 -n payments" in message


def test_the_record_keeps_when_an_approval_was_first_seen() -> None:
    first = record(decide(RULE, annotations("approve 1 bob"), 1), 1, "2026-12-07T10:00:00Z", None)
    later = record(
        decide(RULE, annotations("approve 1 bob", "approve 1 carol"), 1), 1, "2026-12-07T11:00:00Z", first.to_status()
    )
    assert [(a["user"], a["time"]) for a in later.to_status()["approvals"]] == [
        ("bob", "2026-12-07T10:00:00Z"),
        ("carol", "2026-12-07T11:00:00Z"),
    ]
    other_generation = record(
        decide(RULE, annotations("approve 2 bob"), 2), 2, "2026-12-07T12:00:00Z", first.to_status()
    )
    assert other_generation.to_status()["approvals"][0]["time"] == "2026-12-07T12:00:00Z"


def _meta(name: str, created: str) -> dict[str, Any]:
    return {"name": name, "creationTimestamp": created}


POLICY = {"metadata": _meta("p", "2026-12-07T09:00:00Z"), "spec": {"failurePolicy": "Fail"}}
BINDING = {"metadata": _meta("p", "2026-12-07T09:00:00Z"), "spec": {"policyName": "p", "validationActions": ["Deny"]}}
CREATED = "2026-12-07T10:00:00Z"


@pytest.mark.parametrize(
    ("policy", "bindings", "expected"),
    [
        (None, [BINDING], "does not exist"),
        ({**POLICY, "spec": {"failurePolicy": "Ignore"}}, [BINDING], "does not fail closed"),
        (POLICY, [], "no ValidatingAdmissionPolicyBinding applies p"),
        (POLICY, [{**BINDING, "spec": {"policyName": "p", "validationActions": ["Warn", "Audit"]}}], "no Validating"),
        (
            POLICY,
            [
                {
                    **BINDING,
                    "spec": {**BINDING["spec"], "matchResources": {"namespaceSelector": {"matchLabels": {"a": "b"}}}},
                }
            ],
            "no ValidatingAdmissionPolicyBinding",
        ),
        ({**POLICY, "metadata": _meta("p", "2026-12-07T10:00:01Z")}, [BINDING], "not before this promotion"),
        (POLICY, [{**BINDING, "metadata": _meta("p", CREATED)}], "not before this promotion"),  # the same second
    ],
    ids=["missing", "fails-open", "unbound", "warn-only", "narrowed", "newer", "same-second"],
)
def test_approvals_are_trusted_only_under_a_policy_in_force_since_before_the_promotion(
    policy: dict[str, Any] | None, bindings: list[dict[str, Any]], expected: str
) -> None:
    problem = approval_policy_problem("p", policy, bindings, CREATED)
    assert problem is not None
    assert expected in problem
    assert "nothing is sent" in problem or "Re-create the promotion" in problem


def test_a_policy_in_force_is_trusted() -> None:
    assert approval_policy_problem("p", POLICY, [BINDING], CREATED) is None
    defaulted = {
        **BINDING,
        "spec": {**BINDING["spec"], "matchResources": {"namespaceSelector": {}, "objectSelector": {}}},
    }
    assert approval_policy_problem("p", POLICY, [defaulted], CREATED) is None  # the API server's defaults


def _result(outcome: Outcome, lines: tuple[str, ...], old: dict[str, Any] | None = None) -> AttemptResult:
    approvals = decide(RULE, annotations(*lines), 1)
    result = AttemptResult(outcome=outcome)
    result.approval = record(approvals, 1, "2026-12-07T10:00:00Z", old)
    return result


def test_events_say_waiting_once_approved_once_and_rejected_as_such() -> None:
    waiting = _result(Outcome(Kind.PENDING, "AwaitingApproval", "waiting"), ("approve 1 bob",))
    assert events_for(waiting, {}, 1) == [("Normal", "PromotionAwaitingApproval", "waiting")]
    old = build_status({}, result=waiting, generation=1, now="2026-12-07T10:00:00Z")
    assert events_for(waiting, old, 2) == []  # the same wait again: no Event
    approved = _result(
        Outcome(Kind.SUCCEEDED, "Promoted", "moved"), ("approve 1 bob", "approve 1 carol"), old["approval"]
    )
    assert ("Normal", "PromotionApproved", "generation 1 approved by bob, carol") in events_for(approved, old, 2)
    rejected = _result(failed("Rejected", "dave rejected it"), ("reject 1 dave",))
    assert events_for(rejected, old, 2) == [("Warning", "PromotionRejected", "dave rejected it")]


def test_the_approval_record_stays_for_the_generation_when_later_attempts_do_not_look() -> None:
    waiting = _result(Outcome(Kind.PENDING, "AwaitingApproval", "waiting"), ("approve 1 bob", "approve 1 carol"))
    first = build_status({}, result=waiting, generation=1, now="2026-12-07T10:00:00Z")
    later = build_status(
        first,
        result=AttemptResult(outcome=Outcome(Kind.SUCCEEDED, "Promoted", "moved")),
        generation=1,
        now="2026-12-07T10:01:00Z",
    )
    assert later["approval"] == first["approval"]  # carried on
    next_generation = build_status(
        first, result=AttemptResult(outcome=Outcome(Kind.SUCCEEDED, "Promoted", "m")), generation=2, now="x"
    )
    assert next_generation["approval"] is None  # an edit: the old generation's approvals are removed
