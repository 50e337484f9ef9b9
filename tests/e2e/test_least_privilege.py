"""Least privilege on the real API server, as the operator's own ServiceAccount (issue 22, finding 4).

The chart's RBAC and its ValidatingAdmissionPolicies, installed with the real helm; every request below is
made as the operator's ServiceAccount (impersonated: authorization and admission see that user, exactly as
for the operator's own token). What RBAC cannot say (an audience, a single annotation) the policies do.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.cluster import Cluster
from tests.harness import (
    EmulatorProcess,
    OperatorProcess,
    Promotions,
    condition,
    install_chart,
    install_external_secrets_crd,
    spec_for,
)

PROVIDER = "acs:ram::1234567890123456:oidc-provider/ack-rrsa-test"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


@dataclass
class As:
    """The Kubernetes API as one user."""

    user: str
    api: k8s.ApiClient

    def denial(self, call: Callable[[], Any]) -> str | None:
        """None when the API server admitted the call; else its status code and message."""
        try:
            call()
        except k8s.ApiException as exc:
            return f"{exc.status} {json.loads(exc.body or '{}').get('message', exc.reason)}"
        return None

    def token(self, namespace: str, name: str, audiences: list[str], seconds: int = 600) -> str | None:
        body = k8s.AuthenticationV1TokenRequest(
            spec=k8s.V1TokenRequestSpec(audiences=audiences, expiration_seconds=seconds)
        )
        return self.denial(
            lambda: k8s.CoreV1Api(self.api).create_namespaced_service_account_token(name, namespace, body)
        )

    def patch_deployment(self, namespace: str, name: str, patch: dict[str, Any]) -> str | None:
        return self.denial(lambda: k8s.AppsV1Api(self.api).patch_namespaced_deployment(name, namespace, patch))

    def patch_external_secret(self, namespace: str, name: str, patch: dict[str, Any]) -> str | None:
        custom = k8s.CustomObjectsApi(self.api)
        return self.denial(
            lambda: custom.patch_namespaced_custom_object(
                "external-secrets.io", "v1", namespace, "externalsecrets", name, patch
            )
        )

    def read_secret(self, namespace: str, name: str) -> str | None:
        return self.denial(lambda: k8s.CoreV1Api(self.api).read_namespaced_secret(name, namespace))


def impersonating(cluster: Cluster, user: str) -> As:
    api = k8s.ApiClient(cluster.api.configuration)
    api.set_default_header("Impersonate-User", user)
    return As(user, api)


def until_in_effect(probe: Callable[[], str | None], timeout: float = 30) -> str:
    """Admission policies take effect a moment after they are created: poll a request they must refuse."""
    deadline = time.monotonic() + timeout
    seen = probe()
    while seen is None or "ValidatingAdmissionPolicy" not in seen:
        if time.monotonic() > deadline:
            raise AssertionError(f"the admission policy did not take effect in {timeout}s; last answer: {seen}")
        time.sleep(0.2)
        seen = probe()
    return seen


@pytest.fixture
def namespaces(cluster: Cluster) -> Iterator[Callable[[], str]]:
    core = k8s.CoreV1Api(cluster.api)
    created: list[str] = []

    def make() -> str:
        name = "t-" + uuid.uuid4().hex[:10]
        core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name, labels={"secretstage-test": "1"})))
        created.append(name)
        return name

    yield make
    for name in created:
        core.delete_namespace(name)


def tenant_objects(cluster: Cluster, namespace: str) -> None:
    """What a tenant namespace holds: a credentials Secret, a ServiceAccount, a Deployment, an ExternalSecret."""
    core = k8s.CoreV1Api(cluster.api)
    core.create_namespaced_secret(
        namespace, k8s.V1Secret(metadata=k8s.V1ObjectMeta(name="kms"), string_data={"AccessKeyId": "LTAIexample"})
    )
    core.create_namespaced_service_account(namespace, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name="promoter")))
    container = k8s.V1Container(name="web", image="registry.example/web:1")
    template = k8s.V1PodTemplateSpec(
        metadata=k8s.V1ObjectMeta(labels={"app": "web"}, annotations={"team": "payments"}),
        spec=k8s.V1PodSpec(containers=[container]),
    )
    deployment = k8s.V1Deployment(
        metadata=k8s.V1ObjectMeta(name="web"),
        spec=k8s.V1DeploymentSpec(
            replicas=0, selector=k8s.V1LabelSelector(match_labels={"app": "web"}), template=template
        ),
    )
    k8s.AppsV1Api(cluster.api).create_namespaced_deployment(namespace, deployment)
    k8s.CustomObjectsApi(cluster.api).create_namespaced_custom_object(
        "external-secrets.io",
        "v1",
        namespace,
        "externalsecrets",
        {
            "apiVersion": "external-secrets.io/v1",
            "kind": "ExternalSecret",
            "metadata": {"name": "db"},
            "spec": {"a": 1},
        },
    )


@pytest.fixture(scope="module")
def external_secrets(cluster: Cluster) -> None:
    install_external_secrets_crd(cluster)


AFTER_SUCCESS = ("afterSuccess.restartWorkloads=true", "afterSuccess.refreshExternalSecrets=true")


@pytest.fixture
def releases(cluster: Cluster) -> Iterator[list[tuple[str, str]]]:
    """Helm releases a test installed, uninstalled after it whatever happened (with their cluster-scoped
    admission policies and roles)."""
    installed: list[tuple[str, str]] = []
    yield installed
    for release, namespace in installed:
        cluster.helm("uninstall", release, "-n", namespace, check=False)


def test_cluster_wide_grants_are_held_to_their_job_by_admission(
    cluster: Cluster,
    crd: None,
    external_secrets: None,
    namespaces: Callable[[], str],
    releases: list[tuple[str, str]],
) -> None:
    release_ns, tenant = namespaces(), namespaces()
    release = install_chart(
        cluster, "lp", release_ns, f"serviceAccountIdentity.oidcProviderArn={PROVIDER}", *AFTER_SUCCESS
    )
    releases.append((release, release_ns))
    tenant_objects(cluster, tenant)
    operator = impersonating(cluster, f"system:serviceaccount:{release_ns}:{release}-secretstage-operator")

    # a token for the API server's audience would be an API-server credential of that ServiceAccount
    refused = until_in_effect(lambda: operator.token(tenant, "promoter", ["https://kubernetes.default.svc"]))
    assert "only request ServiceAccount tokens for the audience sts.aliyuncs.com" in refused
    assert operator.token(tenant, "promoter", ["sts.aliyuncs.com"]) is None  # what the operator needs
    assert "ValidatingAdmissionPolicy" in str(operator.token(tenant, "promoter", ["sts.aliyuncs.com", "api"]))
    assert "at most an hour" in str(operator.token(tenant, "promoter", ["sts.aliyuncs.com"], seconds=86400))
    # kube-system's workloads' RAM roles are not for promotions, whatever RBAC grants
    assert "may not request ServiceAccount tokens in namespace kube-system" in str(
        operator.token("kube-system", "default", ["sts.aliyuncs.com"])
    )

    # afterSuccess: the restart annotation, and nothing else
    assert (
        operator.patch_deployment(
            tenant, "web", {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: "2026-12-06T00:00:00Z"}}}}}
        )
        is None
    )
    changes: dict[str, dict[str, Any]] = {
        "image": {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "evil.example/root:1"}]}}}},
        "privileged": {
            "spec": {"template": {"spec": {"containers": [{"name": "web", "securityContext": {"privileged": True}}]}}}
        },
        "service account": {"spec": {"template": {"spec": {"serviceAccountName": "promoter"}}}},
        "replicas": {"spec": {"replicas": 50}},
        "paused": {"spec": {"paused": True}},
        "another template annotation": {"spec": {"template": {"metadata": {"annotations": {"team": "x"}}}}},
        "a template label": {"spec": {"template": {"metadata": {"labels": {"extra": "x"}}}}},
        "a label": {"metadata": {"labels": {"x": "y"}}},
        "a finalizer": {"metadata": {"finalizers": ["example.com/hold"]}},
    }
    admitted = {what: operator.patch_deployment(tenant, "web", patch) for what, patch in changes.items()}
    assert all(answer is not None and "ValidatingAdmissionPolicy" in answer for answer in admitted.values()), admitted
    # a restart stamps the secret version the pods read too (the gate counts pods by it)
    stamped = {RESTARTED_AT: "2026-12-06T00:00:01Z", "secretstage.io/version": "v2"}
    assert (
        operator.patch_deployment(tenant, "web", {"spec": {"template": {"metadata": {"annotations": stamped}}}}) is None
    )
    web = k8s.AppsV1Api(cluster.api).read_namespaced_deployment("web", tenant)
    assert web.spec.template.spec.containers[0].image == "registry.example/web:1"
    assert web.spec.template.metadata.annotations[RESTARTED_AT] == "2026-12-06T00:00:01Z"

    assert operator.patch_external_secret(tenant, "db", {"metadata": {"annotations": {"force-sync": "1"}}}) is None
    assert "ValidatingAdmissionPolicy" in str(operator.patch_external_secret(tenant, "db", {"spec": {"a": 2}}))

    # a user who is not the operator is not held by the operator's policies
    admin = impersonating(cluster, "someone-else")
    assert "ValidatingAdmissionPolicy" not in str(admin.token(tenant, "promoter", ["https://kubernetes.default.svc"]))


def test_opt_in_grants_reach_only_the_namespaces_that_bound_them(
    cluster: Cluster, crd: None, namespaces: Callable[[], str], tmp_path: Path, releases: list[tuple[str, str]]
) -> None:
    release_ns, opted_in, other = namespaces(), namespaces(), namespaces()
    release = install_chart(
        cluster,
        "oi",
        release_ns,
        "rbac.tenantAccess=optIn",
        f"serviceAccountIdentity.oidcProviderArn={PROVIDER}",
        "afterSuccess.restartWorkloads=true",
    )
    releases.append((release, release_ns))
    fullname = f"{release}-secretstage-operator"
    promotions = Promotions(cluster)
    for namespace in (opted_in, other):
        promotions.credentials_secret(namespace)
    operator = impersonating(cluster, f"system:serviceaccount:{release_ns}:{fullname}")
    assert operator.read_secret(opted_in, "kms-credentials") is not None  # nothing until a namespace opts in
    # the namespace's admin (the built-in admin role, nothing more) opts in
    cluster.kubectl("-n", opted_in, "create", "rolebinding", "alice-admin", "--clusterrole=admin", "--user=alice")
    alice = ["--as", "alice", "-n", opted_in]

    def opt_in() -> str:
        return cluster.kubectl(
            *alice,
            "create",
            "rolebinding",
            "secretstage-operator",
            f"--clusterrole={fullname}-tenant",
            f"--serviceaccount={release_ns}:{fullname}",
            check=False,
        ).stderr

    # the bind right reaches alice through the aggregated admin role, a moment after the chart created it
    deadline, answer = time.monotonic() + 30, opt_in()
    while answer and time.monotonic() < deadline:
        time.sleep(0.2)
        answer = opt_in()
    assert not answer, f"alice could not opt her namespace in: {answer}"
    assert operator.read_secret(opted_in, "kms-credentials") is None
    assert "forbidden" in str(operator.read_secret(other, "kms-credentials"))
    assert "forbidden" in str(operator.read_secret(release_ns, "kms-credentials"))

    # the operator itself, with its own token: promotes where it was let in, says why not elsewhere
    emulator = EmulatorProcess(tmp_path)
    kubeconfig = cluster.token_kubeconfig(release_ns, fullname, tmp_path / "operator.kubeconfig")
    process = OperatorProcess(tmp_path, kubeconfig, emulator.url, name="opt-in-op")
    try:
        secret = f"opt-in-{uuid.uuid4().hex[:6]}"
        emulator.seed(secret, "v1", "v2")
        for namespace in (opted_in, other):
            promotions.create(namespace, "promote", spec_for(emulator, secret, moveToVersion="v2"))
        done = promotions.wait_phase(opted_in, "promote", "Succeeded", "Failed", timeout=60)
        assert done["status"]["phase"] == "Succeeded", done["status"]
        waiting = promotions.wait_phase(other, "promote", "Pending", timeout=60)
        assert condition(waiting, "Succeeded")["reason"] == "CredentialsUnavailable", waiting["status"]
        assert f"the operator is not granted namespace {other}" in condition(waiting, "Succeeded")["message"]
        assert emulator.moves_for(secret) == 1
    finally:
        process.stop()
        emulator.stop()
    # the opt-in grants no more than the tenant rules: alice cannot hand the operator more than she may
    escalate = cluster.kubectl(
        *alice,
        "create",
        "rolebinding",
        "more",
        "--clusterrole=cluster-admin",
        f"--serviceaccount={release_ns}:{fullname}",
        check=False,
    )
    assert escalate.returncode != 0
    assert "forbidden" in escalate.stderr
