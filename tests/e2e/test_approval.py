"""spec.approval on the real API server: the chart's ValidatingAdmissionPolicy (rendered by the real helm)
with several identities that the API server itself authenticates (ServiceAccount tokens, no impersonation),
and the operator acting on what it admitted, or refusing to when the policy is not in force.

Who is who, in the test's namespace: alice asks for changes, bob approves, mallory may edit promotions
but approves nothing, carol approves as a member of a group (the ServiceAccounts of another namespace).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from secretstage.domain.approval import APPROVALS_ANNOTATION, REQUESTED_BY_ANNOTATION
from secretstage.reconcile import utcnow
from tests.cluster import Cluster
from tests.harness import (
    CHART,
    GROUP,
    PLURAL,
    VERSION,
    EmulatorProcess,
    OperatorProcess,
    Promotions,
    condition,
    spec_for,
)
from tests.support import secretstage_cmd, wait_for

RELEASE = "ap" + uuid.uuid4().hex[:6]
POLICY = f"{RELEASE}-secretstage-operator-approvals"


def render_policy(cluster: Cluster) -> list[dict[str, Any]]:
    """The chart's approval policy and its binding, as `helm template` renders them (no RBAC)."""
    out = cluster.helm(
        "template", RELEASE, CHART, "--show-only", "templates/approvalpolicy.yaml", "--set", "rbac.create=false"
    ).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    assert {d["kind"] for d in docs} == {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
    return docs


def binding_of(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == "ValidatingAdmissionPolicyBinding")


def denial(call: Callable[[], Any]) -> str | None:
    """None when the API server admitted the call; else its status code and message."""
    try:
        call()
    except k8s.ApiException as exc:
        return f"{exc.status} {json.loads(exc.body or '{}').get('message', exc.reason)}"
    return None


def promotion(name: str, spec: dict[str, Any], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SecretStagePromotion",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": spec,
    }


def forged_create_admitted(cluster: Cluster, namespace: str) -> bool:
    """Whether the binding is out of force: a dry-run create that carries an approval (which the policy
    always refuses: an approval is for a spec that exists) is admitted."""
    body = promotion("probe", {**BASE_SPEC, "approval": APPROVAL}, {APPROVALS_ANNOTATION: "approve 1 anyone"})
    custom = k8s.CustomObjectsApi(cluster.api)
    return (
        denial(lambda: custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body, dry_run="All"))
        is None
    )


BASE_SPEC: dict[str, Any] = {
    "secretName": "app/db",
    "versionStage": "ACSCurrent",
    "moveToVersion": "v2",
    "regionId": "cn-hangzhou",
    "credentials": {"secretRef": {"name": "kms-credentials"}},
}
APPROVAL: dict[str, Any] = {"required": True, "approvers": {"users": ["nobody"]}}


def install_binding(cluster: Cluster, *docs: dict[str, Any], namespace: str) -> None:
    """Apply the policy documents, then wait until a request they refuse is refused in ``namespace`` (they
    take effect a moment after they are created) and the clock is past their creation second (the
    operator trusts approvals only of promotions created in a later second)."""
    cluster.apply("---\n".join(yaml.safe_dump(d) for d in docs))
    wait_for(
        lambda: forged_create_admitted(cluster, namespace),
        lambda admitted: not admitted,
        timeout=30,
        what="the approval policy in force",
    )
    created = max(
        cluster.kubectl(
            "get", d["kind"].lower(), d["metadata"]["name"], "-o", "jsonpath={.metadata.creationTimestamp}"
        ).stdout
        for d in docs
    )
    wait_for(utcnow, lambda now: now > created, timeout=5, what=f"a second later than {created}")


@pytest.fixture(scope="module")
def policy(cluster: Cluster, crd: None) -> Iterator[list[dict[str, Any]]]:
    docs = render_policy(cluster)
    probe_ns = "t-" + uuid.uuid4().hex[:10]
    core = k8s.CoreV1Api(cluster.api)
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=probe_ns)))
    install_binding(cluster, *docs, namespace=probe_ns)
    core.delete_namespace(probe_ns)
    yield docs
    for doc in docs:
        cluster.kubectl("delete", doc["kind"].lower(), doc["metadata"]["name"], "--ignore-not-found", check=False)


@dataclass
class Person:
    name: str
    user: str  # as the API server authenticates them
    kubeconfig: str
    api: k8s.ApiClient

    def custom(self) -> k8s.CustomObjectsApi:
        return k8s.CustomObjectsApi(self.api)

    def create(self, namespace: str, body: dict[str, Any]) -> str | None:
        return denial(lambda: self.custom().create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body))

    def patch(self, namespace: str, name: str, patch: dict[str, Any]) -> str | None:
        return denial(
            lambda: self.custom().patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, patch)
        )

    def annotate(self, namespace: str, name: str, **values: str) -> str | None:
        return self.patch(namespace, name, {"metadata": {"annotations": values}})

    def add_line(self, namespace: str, name: str, line: str) -> str | None:
        obj = self.custom().get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        old = (obj["metadata"].get("annotations") or {}).get(APPROVALS_ANNOTATION, "")
        return self.annotate(namespace, name, **{APPROVALS_ANNOTATION: f"{old}\n{line}" if old else line})

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KUBECONFIG": self.kubeconfig}
        env.pop("KUBERNETES_SERVICE_HOST", None)
        return subprocess.run(secretstage_cmd(*args), capture_output=True, text=True, env=env, timeout=60, check=False)


@pytest.fixture
def people(cluster: Cluster, namespace: str, tmp_path: Path) -> Iterator[dict[str, Person]]:
    """ServiceAccounts alice, bob, mallory (this namespace) and carol (another), each allowed to create and
    change promotions here, each with a TokenRequest token of its own."""
    core, rbac = k8s.CoreV1Api(cluster.api), k8s.RbacAuthorizationV1Api(cluster.api)
    leads = "t-" + uuid.uuid4().hex[:10]
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=leads, labels={"secretstage-test": "1"})))
    where = {"alice": namespace, "bob": namespace, "mallory": namespace, "carol": leads}
    for name, ns in where.items():
        core.create_namespaced_service_account(ns, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name=name)))
    rbac.create_namespaced_role(
        namespace,
        k8s.V1Role(
            metadata=k8s.V1ObjectMeta(name="promoters"),
            rules=[
                k8s.V1PolicyRule(
                    api_groups=[GROUP], resources=[PLURAL], verbs=["get", "list", "watch", "create", "update", "patch"]
                )
            ],
        ),
    )
    rbac.create_namespaced_role_binding(
        namespace,
        k8s.V1RoleBinding(
            metadata=k8s.V1ObjectMeta(name="promoters"),
            role_ref=k8s.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="promoters"),
            subjects=[k8s.RbacV1Subject(kind="ServiceAccount", name=n, namespace=ns) for n, ns in where.items()],
        ),
    )
    people = {}
    for name, ns in where.items():
        kubeconfig = cluster.token_kubeconfig(ns, name, tmp_path / f"{name}.kubeconfig")
        user = f"system:serviceaccount:{ns}:{name}"
        people[name] = Person(name, user, kubeconfig, k8s_config.new_client_from_config(config_file=kubeconfig))
    yield people
    for person in people.values():
        person.api.close()
    core.delete_namespace(leads)


def approval_for(
    people: dict[str, Person], *users: str, groups: tuple[str, ...] = (), minimum: int = 1
) -> dict[str, Any]:
    return {
        "required": True,
        "approvers": {"users": [people[u].user for u in users], "groups": list(groups)},
        "minApprovals": minimum,
    }


def test_the_api_server_admits_only_authenticated_approvers(
    policy: list[dict[str, Any]], people: dict[str, Person], namespace: str
) -> None:
    alice, bob, mallory, carol = (people[n] for n in ("alice", "bob", "mallory", "carol"))
    leads_group = f"system:serviceaccounts:{carol.user.split(':')[2]}"
    approval = approval_for(people, "alice", "bob", groups=(leads_group,))
    spec = {**BASE_SPEC, "approval": approval}
    seen: dict[str, str | None] = {}

    # who asks must say so, truthfully
    seen["no requester"] = alice.create(namespace, promotion("p", spec))
    assert seen["no requester"] is not None
    assert f"set the annotation secretstage.io/requested-by to {alice.user}" in seen["no requester"]
    seen["forged requester"] = alice.create(namespace, promotion("p", spec, {REQUESTED_BY_ANNOTATION: bob.user}))
    assert f"to {alice.user} (the user the API server authenticated for this request), not {bob.user}" in str(
        seen["forged requester"]
    )
    seen["approved at creation"] = alice.create(
        namespace,
        promotion("p", spec, {REQUESTED_BY_ANNOTATION: alice.user, APPROVALS_ANNOTATION: f"approve 1 {bob.user}"}),
    )
    assert "not when the promotion is created" in str(seen["approved at creation"])
    assert alice.create(namespace, promotion("p", spec, {REQUESTED_BY_ANNOTATION: alice.user})) is None

    seen["self-approval"] = alice.add_line(namespace, "p", f"approve 1 {alice.user}")
    assert f"{alice.user} asked for this change (annotation secretstage.io/requested-by) and may not approve" in str(
        seen["self-approval"]
    )
    seen["not an approver"] = mallory.add_line(namespace, "p", f"approve 1 {mallory.user}")
    assert f"{mallory.user} is not an approver of this promotion" in str(seen["not an approver"])
    seen["forged approver"] = mallory.add_line(namespace, "p", f"approve 1 {bob.user}")
    assert f"names {bob.user} but the API server authenticated this request as {mallory.user}" in str(
        seen["forged approver"]
    )
    seen["another generation"] = bob.add_line(namespace, "p", f"approve 2 {bob.user}")
    assert "is for generation 2 but the spec is at generation 1" in str(seen["another generation"])
    seen["two at once"] = bob.add_line(namespace, "p", f"approve 1 {bob.user}\napprove 1 {carol.user}")
    assert "add one approval at a time" in str(seen["two at once"])
    seen["not a line"] = bob.add_line(namespace, "p", "lgtm")
    assert "an approval is a line approve GENERATION USER" in str(seen["not a line"])
    seen["requester renamed"] = mallory.annotate(namespace, "p", **{REQUESTED_BY_ANNOTATION: mallory.user})
    assert "changes only together with the spec" in str(seen["requester renamed"])

    assert bob.add_line(namespace, "p", f"approve 1 {bob.user}") is None  # an approver, as himself
    seen["twice"] = bob.add_line(namespace, "p", f"approve 1 {bob.user}")
    assert "has already done this for generation 1" in str(seen["twice"])
    assert carol.add_line(namespace, "p", f"approve 1 {carol.user}") is None  # an approver through a group
    seen["rewritten"] = mallory.annotate(namespace, "p", **{APPROVALS_ANNOTATION: f"approve 1 {carol.user}"})
    assert "only grows" in str(seen["rewritten"])
    seen["removed"] = mallory.patch(namespace, "p", {"metadata": {"annotations": {APPROVALS_ANNOTATION: None}}})
    assert "only grows" in str(seen["removed"])

    # an edit is a new request by its editor: the approvals of generation 1 no longer count
    seen["edit without requester"] = bob.patch(namespace, "p", {"spec": {"moveToVersion": "v3"}})
    assert f"to {bob.user}" in str(seen["edit without requester"])
    edited = {"spec": {"moveToVersion": "v3"}, "metadata": {"annotations": {REQUESTED_BY_ANNOTATION: bob.user}}}
    assert bob.patch(namespace, "p", edited) is None
    seen["approve own edit"] = bob.add_line(namespace, "p", f"approve 2 {bob.user}")
    assert "may not approve it" in str(seen["approve own edit"])
    assert alice.add_line(namespace, "p", f"approve 2 {alice.user}") is None  # now alice did not ask

    # a promotion that asks for no approval takes none
    assert alice.create(namespace, promotion("plain", BASE_SPEC)) is None
    seen["no approval asked"] = bob.add_line(namespace, "plain", f"approve 1 {bob.user}")
    assert "does not ask for approval" in str(seen["no approval asked"])

    for case, message in seen.items():  # every refusal came from the policy, and says so
        assert message is not None, case
        assert message.startswith(("403", "422")), (case, message)
        # this module's policy, or another test's copy of it (the same rules) that is installed meanwhile
        assert re.search(r"ValidatingAdmissionPolicy '[a-z0-9-]+-approvals'", message), (case, message)
        print(f"{case}: {message}")


# --- the operator acting on approvals ---------------------------------------------------------------------

SEEDED = {"CreateSecret": 1, "PutSecretValue": 1}  # the test's own set-up: v1, then v2


@pytest.fixture(scope="module")
def operator(
    cluster: Cluster, crd: None, emulator: EmulatorProcess, workdir: Path, policy: list[dict[str, Any]]
) -> Iterator[OperatorProcess]:
    op = OperatorProcess(workdir, cluster.kubeconfig, emulator.url, "--approval-policy", POLICY)
    yield op
    op.stop()
    assert "starting:" in op.log_text()


def reason_of(obj: dict[str, Any]) -> str | None:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c["reason"] for c in conditions if c["type"] == "Succeeded"), None)


def wait_reason(promotions: Promotions, ns: str, name: str, reason: str, contains: str = "") -> dict[str, Any]:
    return wait_for(
        lambda: promotions.get(ns, name),
        lambda obj: reason_of(obj) == reason and contains in condition(obj, "Succeeded")["message"],
        timeout=60,
        what=f"{ns}/{name} with reason {reason}",
    )


def test_a_promotion_waits_for_an_approver_then_moves(
    operator: OperatorProcess,
    emulator: EmulatorProcess,
    promotions: Promotions,
    ns: str,
    people: dict[str, Person],
) -> None:
    alice, bob, mallory = people["alice"], people["bob"], people["mallory"]
    secret = emulator.seed(f"appr/{uuid.uuid4().hex[:6]}", "v1", "v2")
    spec = spec_for(emulator, secret, moveToVersion="v2", approval=approval_for(people, "bob"))
    assert alice.create(ns, promotion("rotate", spec, {REQUESTED_BY_ANNOTATION: alice.user})) is None

    waiting = wait_reason(promotions, ns, "rotate", "AwaitingApproval")
    assert waiting["status"]["phase"] == "Pending"
    assert waiting["status"]["approval"] == {
        "generation": 1,
        "minApprovals": 1,
        "requestedBy": alice.user,
        "decision": "AwaitingApproval",
        "approvals": [],
    }
    assert f"kubectl secretstage approve rotate -n {ns}" in condition(waiting, "Succeeded")["message"]
    assert emulator.calls_for(secret) == SEEDED  # nothing sent while it waits, not even a read
    events = promotions.wait_events(ns, "rotate", lambda evs: any(e.reason == "PromotionAwaitingApproval" for e in evs))
    assert {e.type for e in events if e.reason == "PromotionAwaitingApproval"} == {"Normal"}

    refused = mallory.cli("approve", "rotate", "-n", ns)
    assert refused.returncode != 0
    assert f"{mallory.user} is not an approver of this promotion" in refused.stderr, refused.stderr
    stale = bob.cli("approve", "rotate", "-n", ns, "--generation", "7")
    assert stale.returncode != 0
    assert "is at generation 1, not 7" in stale.stderr, stale.stderr
    assert emulator.calls_for(secret) == SEEDED

    approved = bob.cli("approve", "rotate", "-n", ns, "--generation", "1")
    assert approved.returncode == 0, approved.stderr
    assert f"approved generation 1 of {ns}/rotate (ACSCurrent -> v2 of {secret}) as {bob.user}" in approved.stdout

    done = promotions.wait_phase(ns, "rotate", "Succeeded")
    approval = done["status"]["approval"]
    assert approval["decision"] == "Approved"
    assert [(a["user"], a["generation"]) for a in approval["approvals"]] == [(bob.user, 1)]
    assert emulator.holder(secret, "ACSCurrent") == "v2"
    assert emulator.moves_for(secret) == 1  # one move of ACSCurrent (and of ACSPrevious where KMS leaves it)
    events = promotions.wait_events(ns, "rotate", lambda evs: any(e.reason == "PromotionApproved" for e in evs))
    assert any(bob.user in e.message for e in events if e.reason == "PromotionApproved")


def test_a_rejection_fails_the_generation_and_moves_nothing(
    operator: OperatorProcess,
    emulator: EmulatorProcess,
    promotions: Promotions,
    ns: str,
    people: dict[str, Person],
) -> None:
    alice, bob = people["alice"], people["bob"]
    secret = emulator.seed(f"appr/{uuid.uuid4().hex[:6]}", "v1", "v2")
    spec = spec_for(emulator, secret, moveToVersion="v2", approval=approval_for(people, "bob"))
    assert alice.create(ns, promotion("risky", spec, {REQUESTED_BY_ANNOTATION: alice.user})) is None
    wait_reason(promotions, ns, "risky", "AwaitingApproval")

    rejected = bob.cli("reject", "risky", "-n", ns)
    assert rejected.returncode == 0, rejected.stderr
    failed = promotions.wait_phase(ns, "risky", "Failed")
    assert reason_of(failed) == "Rejected"
    assert f"{bob.user} rejected generation 1" in condition(failed, "Succeeded")["message"]
    assert failed["status"]["approval"]["rejection"]["user"] == bob.user
    assert emulator.calls_for(secret) == SEEDED
    events = promotions.wait_events(ns, "risky", lambda evs: any(e.reason == "PromotionRejected" for e in evs))
    assert {e.type for e in events if e.reason == "PromotionRejected"} == {"Warning"}


def test_without_the_policy_in_force_no_approval_is_trusted(
    cluster: Cluster,
    operator: OperatorProcess,
    emulator: EmulatorProcess,
    promotions: Promotions,
    ns: str,
    people: dict[str, Person],
    policy: list[dict[str, Any]],
) -> None:
    """The operator's policy's binding deleted: approvals do not count, whoever wrote them. (Another
    test's copy of the policy may still be enforcing: the operator trusts only its own, so this holds
    whatever else is installed.)"""
    alice, bob = people["alice"], people["bob"]
    binding = binding_of(policy)
    secret = emulator.seed(f"appr/{uuid.uuid4().hex[:6]}", "v1", "v2")
    spec = spec_for(emulator, secret, moveToVersion="v2", approval=approval_for(people, "bob"))
    cluster.kubectl("delete", "validatingadmissionpolicybinding", binding["metadata"]["name"])
    try:
        assert alice.create(ns, promotion("unguarded", spec, {REQUESTED_BY_ANNOTATION: alice.user})) is None
        untrusted = wait_reason(promotions, ns, "unguarded", "ApprovalUntrusted")
        message = condition(untrusted, "Succeeded")["message"]
        assert f"no ValidatingAdmissionPolicyBinding applies {POLICY} to every promotion" in message
        assert untrusted["status"]["phase"] == "Pending"
        assert bob.add_line(ns, "unguarded", f"approve 1 {bob.user}") is None
        wait_for(
            lambda: promotions.get(ns, "unguarded"),
            lambda obj: (
                obj["metadata"]["resourceVersion"] != untrusted["metadata"]["resourceVersion"]
                and reason_of(obj) == "ApprovalUntrusted"
            ),
            timeout=30,
            what="the approval seen",
        )
        assert emulator.calls_for(secret) == SEEDED
    finally:
        install_binding(cluster, binding, namespace=ns)
    # in force again, but newer than the promotion: what was written before it was checked by nobody
    promotions.api.patch_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, "unguarded", {"metadata": {"labels": {"looked-at": "again"}}}
    )
    again = wait_reason(promotions, ns, "unguarded", "ApprovalUntrusted", contains="not before this promotion")
    assert "Re-create the promotion" in condition(again, "Succeeded")["message"]
    assert emulator.calls_for(secret) == SEEDED
