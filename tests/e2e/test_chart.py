"""The Helm chart, rendered and installed with the real helm binary against the real API server."""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from tests.cluster import Cluster
from tests.harness import CHART, EmulatorProcess, OperatorProcess, Promotions, install_chart, spec_for
from tests.support import ROOT

TEST_HOOK = [
    "--set",
    "tests.secretName=app/db",
    "--set",
    "tests.moveToVersion=v2",
    "--set",
    "tests.credentialsSecret=kms",
    "--set",
    "tests.regionId=cn-hangzhou",
]

OIDC_PROVIDER = "acs:ram::1234567890123456:oidc-provider/ack-rrsa-c1"


def render(cluster: Cluster, *args: str, release: str = "r") -> list[dict[str, Any]]:
    out = cluster.helm("template", release, CHART, "-n", "secretstage-system", *args).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def make_namespace(cluster: Cluster, name: str, labels: dict[str, str] | None = None) -> str:
    k8s.CoreV1Api(cluster.api).create_namespace(
        k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name, labels={"secretstage-test": "1", **(labels or {})}))
    )
    return name


@pytest.fixture
def namespaces(cluster: Cluster) -> Iterator[list[str]]:
    created: list[str] = []

    def make(labels: dict[str, str] | None = None) -> str:
        created.append(make_namespace(cluster, "t-" + uuid.uuid4().hex[:10], labels))
        return created[-1]

    yield make  # type: ignore[misc]
    for name in created:
        k8s.CoreV1Api(cluster.api).delete_namespace(name)


def test_helm_lint(cluster: Cluster) -> None:
    result = cluster.helm("lint", CHART, "--strict", *TEST_HOOK)
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize(
    "values",
    [
        pytest.param([], id="default"),
        pytest.param(["--set", "watch.namespaces={NS1,NS2}"], id="namespaced"),
        pytest.param(["--set", "replicaCount=3", "--set", "podDisruptionBudget.enabled=true"], id="ha"),
        pytest.param(
            [
                "--set",
                "rrsa.enabled=true",
                "--set",
                "rrsa.roleName=secretstage-promoter",
                "--set",
                "rrsa.allowedNamespaces={NS1}",
            ],
            id="rrsa",
        ),
        pytest.param(
            ["--set", "serviceAccountIdentity.oidcProviderArn=" + OIDC_PROVIDER, "--set", "watch.namespaces={NS1,NS2}"],
            id="service-account-identity",
        ),
        pytest.param(["--set", "metrics.enabled=false"], id="metrics-off"),
        pytest.param(
            [
                "--set",
                "rbac.tenantAccess=optIn",
                "--set",
                "serviceAccountIdentity.oidcProviderArn=" + OIDC_PROVIDER,
                "--set",
                "afterSuccess.restartWorkloads=true",
            ],
            id="tenant-opt-in",
        ),
        pytest.param(["--set", "rbac.admissionPolicies.enabled=false"], id="no-admission-policies"),
        pytest.param(
            ["--set", "networkPolicy.enabled=true", "--set", "image.digest=sha256:" + "a" * 64, *TEST_HOOK],
            id="netpol-digest-test-hook",
        ),
    ],
)
def test_rendered_manifests_pass_server_side_dry_run(
    cluster: Cluster, crd: None, namespaces: Any, values: list[str]
) -> None:
    release_ns, ns1, ns2 = namespaces(), namespaces(), namespaces()
    values = [v.replace("NS1", ns1).replace("NS2", ns2) for v in values]
    # test hooks reference their own ServiceAccount, which a dry run does not create; rendered below
    out = cluster.helm("template", "r" + uuid.uuid4().hex[:6], CHART, "-n", release_ns, "--skip-tests", *values).stdout
    result = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=out)
    assert "(server dry run)" in result.stdout
    kinds = {d["kind"] for d in yaml.safe_load_all(out) if d}
    assert {"Deployment", "ServiceAccount", "CustomResourceDefinition"} <= kinds


def test_extra_args_reach_the_parser_the_image_runs(cluster: Cluster) -> None:
    """`operator.extraArgs` go after `run`; the logging flags among them are accepted there (they once
    crash-looped the pod with "unrecognized arguments"), and win over the chart's logLevel."""
    from secretstage.cli import build_parser

    by_kind = {
        d["kind"]: d
        for d in render(
            cluster,
            "--set",
            "operator.logFormat=json",
            "--set-json",
            'operator.extraArgs=["--log-level=DEBUG","--kms-max-attempts=5"]',
        )
    }
    container = by_kind["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["SECRETSTAGE_LOG_FORMAT"] == "json"
    assert env["SECRETSTAGE_LOG_LEVEL"] == "INFO"
    args = build_parser().parse_args(container["args"])
    assert (args.command, args.log_level, args.kms_max_attempts) == ("run", "DEBUG", 5)


def test_kms_proxy_value(cluster: Cluster) -> None:
    """operator.kmsProxy becomes SECRETSTAGE_KMS_PROXY and, with a NetworkPolicy, an egress port; a
    proxy URL with a password is refused by the schema (it would sit in the pod spec)."""
    docs = render(cluster, "--set", "operator.kmsProxy=http://10.0.0.8:3128", "--set", "networkPolicy.enabled=true")
    by_kind = {d["kind"]: d for d in docs}
    container = by_kind["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "SECRETSTAGE_KMS_PROXY", "value": "http://10.0.0.8:3128"} in container["env"]
    ports = [p["port"] for rule in by_kind["NetworkPolicy"]["spec"]["egress"] for p in rule["ports"]]
    assert 3128 in ports
    plain = {d["kind"]: d for d in render(cluster)}
    plain_env = plain["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert "SECRETSTAGE_KMS_PROXY" not in {e["name"] for e in plain_env}
    refused = cluster.helm("template", "r", CHART, "--set", "operator.kmsProxy=http://u:p@proxy:3128", check=False)
    assert refused.returncode != 0
    assert "/operator/kmsProxy" in refused.stderr


def test_rendering_choices(cluster: Cluster) -> None:
    by_kind = {(d["kind"], d["metadata"]["name"]): d for d in render(cluster)}
    deployment = by_kind[("Deployment", "r-secretstage-operator")]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    app_version = yaml.safe_load((ROOT / "helm/secretstage-operator/Chart.yaml").read_text())["appVersion"]
    assert container["image"] == f"ghcr.io/secretstage/secretstage-operator:{app_version}"
    crd = by_kind[("CustomResourceDefinition", "secretstagepromotions.secretstage.io")]
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    source = yaml.safe_load((ROOT / "crds" / "secretstagepromotions.secretstage.io.yaml").read_text())
    assert crd["spec"] == source["spec"]
    no_keep = {d["kind"]: d for d in render(cluster, "--set", "crds.keep=false")}
    assert "annotations" not in no_keep["CustomResourceDefinition"]["metadata"]
    assert "CustomResourceDefinition" not in {d["kind"] for d in render(cluster, "--set", "crds.enabled=false")}
    digest = render(cluster, "--set", "image.digest=sha256:" + "b" * 64)
    image = next(d for d in digest if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.endswith("@sha256:" + "b" * 64)
    ha = {d["kind"]: d for d in render(cluster, "--set", "replicaCount=2")}
    env = {e["name"]: e for e in ha["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["SECRETSTAGE_LEADER_ELECTION"]["value"] == "true"
    assert ha["Deployment"]["spec"]["strategy"]["type"] == "RollingUpdate"
    hook = next(d for d in render(cluster, *TEST_HOOK) if d["kind"] == "Pod")
    assert hook["metadata"]["annotations"]["helm.sh/hook"] == "test"
    test_container = hook["spec"]["containers"][0]
    assert test_container["image"] == container["image"]  # the operator's own image: nothing else to pull
    assert test_container["args"][:2] == ["check", "--name=r-secretstage-operator-helm-test"]
    assert "--credentials-secret=kms" in test_container["args"]
    assert not [d for d in render(cluster) if d["kind"] == "Pod"]
    rrsa = {
        d["kind"]: d
        for d in render(
            cluster,
            "--set",
            "rrsa.enabled=true",
            "--set",
            "rrsa.roleName=role1",
            "--set",
            "rrsa.allowedNamespaces={a,b}",
        )
    }
    assert rrsa["ServiceAccount"]["metadata"]["annotations"] == {"pod-identity.alibabacloud.com/role-name": "role1"}
    env = {e["name"]: e.get("value") for e in rrsa["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["SECRETSTAGE_OPERATOR_IDENTITY_NAMESPACES"] == "a,b"
    assert "SECRETSTAGE_OPERATOR_IDENTITY_NAMESPACES" not in {
        e["name"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }


def token_rules(docs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Role/ClusterRole (by namespace, "" = cluster) -> its rules about ServiceAccounts."""
    return {
        d["metadata"].get("namespace", ""): [r for r in d["rules"] if "serviceaccounts" in str(r["resources"])]
        for d in docs
        if d["kind"] in ("Role", "ClusterRole") and d["metadata"]["name"] == "r-secretstage-operator"
    }


def test_service_account_tokens_only_with_service_account_identity_and_only_where_watched(cluster: Cluster) -> None:
    assert token_rules(render(cluster)) == {"": []}
    assert token_rules(render(cluster, "--set", "watch.namespaces={a,b}")) == {"a": [], "b": []}
    on = ("--set", "serviceAccountIdentity.oidcProviderArn=" + OIDC_PROVIDER)
    expected = [
        {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]},
    ]
    assert token_rules(render(cluster, *on, "--set", "watch.namespaces={a,b}")) == {"a": expected, "b": expected}
    docs = render(cluster, *on, "--set", "stsEndpoint=https://sts-vpc.cn-hangzhou.aliyuncs.com")
    assert token_rules(docs) == {"": expected}
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["SECRETSTAGE_OIDC_PROVIDER_ARN"] == OIDC_PROVIDER
    assert env["ALIBABA_CLOUD_STS_ENDPOINT"] == "https://sts-vpc.cn-hangzhou.aliyuncs.com"


def rules_of(docs: list[dict[str, Any]], kind: str, name: str) -> list[dict[str, Any]]:
    return list(next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)["rules"])


TENANT_RULES = [
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]},
    {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "daemonsets"], "verbs": ["patch"]},
    {"apiGroups": ["external-secrets.io"], "resources": ["externalsecrets"], "verbs": ["patch"]},
]
ALL_TENANT_FEATURES = (
    "--set",
    "serviceAccountIdentity.oidcProviderArn=" + OIDC_PROVIDER,
    "--set",
    "afterSuccess.restartWorkloads=true",
    "--set",
    "afterSuccess.refreshExternalSecrets=true",
)


def test_rbac_modes(cluster: Cluster) -> None:
    # cluster (default): the chart grants the tenant rules with the promotion rules; patch only, never get
    docs = render(cluster, *ALL_TENANT_FEATURES)
    operator_rules = rules_of(docs, "ClusterRole", "r-secretstage-operator")
    assert operator_rules[3:] == TENANT_RULES
    assert not [d for d in docs if d["metadata"]["name"].endswith("-tenant")]
    # optIn: the chart's own binding carries no tenant rule; they wait, unbound, in <fullname>-tenant
    docs = render(cluster, *ALL_TENANT_FEATURES, "--set", "rbac.tenantAccess=optIn")
    operator_rules = rules_of(docs, "ClusterRole", "r-secretstage-operator")
    assert [r["resources"] for r in operator_rules] == [
        ["secretstagepromotions"],
        ["secretstagepromotions/status"],
        ["events"],
    ]
    assert rules_of(docs, "ClusterRole", "r-secretstage-operator-tenant") == TENANT_RULES
    bound = {d["roleRef"]["name"] for d in docs if d["kind"] in ("RoleBinding", "ClusterRoleBinding")}
    assert "r-secretstage-operator-tenant" not in bound
    bind = next(d for d in docs if d["metadata"]["name"] == "r-secretstage-operator-tenant-bind")
    assert bind["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-admin"] == "true"
    assert bind["rules"] == [
        {
            "apiGroups": ["rbac.authorization.k8s.io"],
            "resources": ["clusterroles"],
            "resourceNames": ["r-secretstage-operator-tenant"],
            "verbs": ["bind"],
        }
    ]
    # optIn with a watch list: the Roles in those namespaces carry the promotion rules only
    docs = render(cluster, *ALL_TENANT_FEATURES, "--set", "rbac.tenantAccess=optIn", "--set", "watch.namespaces={a}")
    role = next(d for d in docs if d["kind"] == "Role" and d["metadata"]["namespace"] == "a")
    assert [r["resources"] for r in role["rules"]] == [r["resources"] for r in operator_rules]


def test_gate_rbac_only_with_gate_enabled(cluster: Cluster) -> None:
    off = rules_of(render(cluster), "ClusterRole", "r-secretstage-operator")
    assert not [r for r in off if r["apiGroups"] in (["batch"], ["argoproj.io"]) or "pods" in r["resources"]]
    on = rules_of(render(cluster, "--set", "gate.enabled=true"), "ClusterRole", "r-secretstage-operator")
    assert on[-7:] == [
        {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "daemonsets"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "create"]},
        {"apiGroups": ["argoproj.io"], "resources": ["analysistemplates"], "verbs": ["get"]},
        {"apiGroups": ["argoproj.io"], "resources": ["analysisruns"], "verbs": ["get", "create"]},
        {"apiGroups": ["secretstage.io"], "resources": ["secretstagepromotions"], "verbs": ["create"]},
    ]
    opt_in = render(cluster, "--set", "gate.enabled=true", "--set", "rbac.tenantAccess=optIn")
    assert "jobs" in str(rules_of(opt_in, "ClusterRole", "r-secretstage-operator-tenant"))
    assert "jobs" not in str(rules_of(opt_in, "ClusterRole", "r-secretstage-operator"))


def test_admission_policies(cluster: Cluster) -> None:
    docs = render(cluster, *ALL_TENANT_FEATURES, "--set", "rbac.admissionPolicies.tokenDeniedNamespaces={kube-system}")
    policies = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ValidatingAdmissionPolicy"}
    bindings = {d["spec"]["policyName"]: d for d in docs if d["kind"] == "ValidatingAdmissionPolicyBinding"}
    approvals = "r-secretstage-operator-approvals"
    assert (
        set(policies)
        == set(bindings)
        == {"r-secretstage-operator-tokens", "r-secretstage-operator-after-success", approvals}
    )
    assert all(b["spec"]["validationActions"] == ["Deny"] for b in bindings.values())
    assert policies[approvals]["spec"]["failurePolicy"] == "Fail"
    for name, policy in policies.items():
        if name == approvals:
            continue  # it holds everyone who writes a promotion to the truth about who they are, not the operator
        assert policy["spec"]["failurePolicy"] == "Fail"
        assert policy["spec"]["matchConditions"] == [
            {
                "name": "the-operator",
                "expression": "request.userInfo.username == "
                "'system:serviceaccount:secretstage-system:r-secretstage-operator'",
            }
        ]
    tokens = policies["r-secretstage-operator-tokens"]["spec"]["validations"]
    assert tokens[0]["expression"] == "object.spec.audiences == ['sts.aliyuncs.com']"
    assert tokens[2]["expression"] == '!(request.namespace in ["kube-system"])'
    without = render(cluster, "--set", "rbac.admissionPolicies.enabled=false")
    assert [d["metadata"]["name"] for d in without if "Admission" in d["kind"]] == [approvals, approvals]
    off = render(
        cluster, "--set", "rbac.admissionPolicies.enabled=false", "--set", "approvals.admissionPolicy.enabled=false"
    )
    assert not [d for d in off if "Admission" in d["kind"]]
    # the operator is told its name, and may read it and list its bindings (nothing more)
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["SECRETSTAGE_APPROVAL_POLICY"] == approvals
    assert rules_of(docs, "ClusterRole", "r-secretstage-operator-approval-policy") == [
        {
            "apiGroups": ["admissionregistration.k8s.io"],
            "resources": ["validatingadmissionpolicies"],
            "resourceNames": [approvals],
            "verbs": ["get"],
        },
        {
            "apiGroups": ["admissionregistration.k8s.io"],
            "resources": ["validatingadmissionpolicybindings"],
            "verbs": ["list"],
        },
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "replicaCount=two"], "at '/replicaCount': got string, want integer"),
        (["--set", "bogus=1"], "additional properties 'bogus' not allowed"),
        (["--set", "operator.logformat=json"], "additional properties 'logformat' not allowed"),
        (["--set", "operator.logFormat=xml"], "/operator/logFormat"),
        (["--set", "image.digest=latest"], "/image/digest"),
        (["--set", "rrsa.enabled=true", "--set", "rrsa.allowedNamespaces={*}"], "rrsa.roleName is required"),
        (["--set", "rrsa.enabled=true", "--set", "rrsa.roleName=r"], "rrsa.allowedNamespaces: list the namespaces"),
        (
            ["--set", "serviceAccountIdentity.oidcProviderArn=acs:ram::1:role/x"],
            "/serviceAccountIdentity/oidcProviderArn",
        ),
        (["--set", "operator.maxWorkers=100"], "additional properties 'maxWorkers' not allowed"),
        (
            ["--set", r"operator.endpointAllow={https://kms\.cn-hangzhou\.aliyuncs\.com}"],  # --set eats the \
            "operator.endpointAllow: \"https://kms.cn-hangzhou.aliyuncs.com\" has an unescaped '.'",
        ),
        (["--set", "operator.kmsEndpointTemplate=ftp://kms"], "/operator/kmsEndpointTemplate"),
        (["--set", "rbac.tenantAccess=perNamespace"], "/rbac/tenantAccess"),
        (["--set", "operator.defaultRegion=oss-cn-hangzhou"], "/operator/defaultRegion"),
        (["--set", "operator.extraArgs={-v}"], "/operator/extraArgs/0"),
        (
            [*TEST_HOOK, "--set", "watch.namespaces={a}", "--set", "tests.namespace=b"],
            "tests.namespace b is not watched",
        ),
        (["--set", "tests.secretName=s", "--set", "tests.moveToVersion=v2"], "tests: set exactly one of"),
        ([*TEST_HOOK, "--set", "tests.operatorIdentity=true"], "tests: set exactly one of"),
    ],
)
def test_bad_values_fail_with_a_clear_message(cluster: Cluster, args: list[str], message: str) -> None:
    result = cluster.helm("template", "r", CHART, *args, check=False)
    assert result.returncode != 0
    assert message in result.stderr


def test_pod_passes_restricted_pod_security(cluster: Cluster, namespaces: Any) -> None:
    ns = namespaces({"pod-security.kubernetes.io/enforce": "restricted"})
    deployment = next(d for d in render(cluster) if d["kind"] == "Deployment")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "operator"},
        "spec": deployment["spec"]["template"]["spec"],
    }
    pod["spec"]["serviceAccountName"] = "default"
    ok = cluster.kubectl("create", "--dry-run=server", "-n", ns, "-f", "-", input=json.dumps(pod))
    assert "created (server dry run)" in ok.stdout
    del pod["spec"]["containers"][0]["securityContext"]
    bad = cluster.kubectl("create", "--dry-run=server", "-n", ns, "-f", "-", input=json.dumps(pod), check=False)
    assert bad.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in bad.stderr


def can_i(cluster: Cluster, user: str, *args: str) -> bool:
    result = cluster.kubectl("auth", "can-i", *args, "--as", user, check=False)
    return result.stdout.strip() == "yes"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    emu = EmulatorProcess(tmp_path_factory.mktemp("chart"))
    yield emu
    emu.stop()


def test_namespaced_rbac_is_enough_and_no_more(
    cluster: Cluster, crd: None, namespaces: Any, emulator: EmulatorProcess, tmp_path: Path
) -> None:
    release_ns, watched, other = namespaces(), namespaces(), namespaces()
    release = install_chart(
        cluster, "rbac", release_ns, f"watch.namespaces={{{watched}}}", "rbac.aggregateToDefaultRoles=false"
    )
    sa = f"{release}-secretstage-operator"
    user = f"system:serviceaccount:{release_ns}:{sa}"
    kubeconfig = cluster.token_kubeconfig(release_ns, sa, tmp_path / "sa.kubeconfig")
    promotions = Promotions(cluster)
    promotions.credentials_secret(watched)
    secret = emulator.seed(f"chart/{release}", "v1", "v2")
    op = OperatorProcess(tmp_path, kubeconfig, emulator.url, "--namespace", watched, name="chart-op")
    try:
        promotions.create(watched, "p", spec_for(emulator, secret, moveToVersion="v2"))
        obj = promotions.wait_phase(watched, "p", "Succeeded", "Failed", timeout=90)
        assert obj["status"]["phase"] == "Succeeded", obj["status"]
        promotions.wait_events(watched, "p", lambda events: any(e.reason == "Promoted" for e in events))
    finally:
        op.stop()
    log = op.log_text()
    # A missing grant shows as a 403 answer to one of our API calls (kubehttp's debug line ends with
    # the status) or as kopf's APIForbiddenError. Matching a bare "403" also matched timestamps
    # ("09:03:46,403"): a flake, not a finding.
    assert re.search(r" -> HTTP 200$", log, re.M)  # the check below reads real request lines
    assert not re.search(r" -> HTTP 403$", log, re.M)
    assert "Forbidden" not in log
    # ... and no more than needed
    assert can_i(cluster, user, "get", "secrets", "-n", watched)
    assert not can_i(cluster, user, "list", "secrets", "-n", watched)
    assert not can_i(cluster, user, "delete", "secrets", "-n", watched)
    assert not can_i(cluster, user, "get", "secrets", "-n", other)
    assert not can_i(cluster, user, "get", "secrets", "-n", release_ns)
    assert not can_i(cluster, user, "patch", "secretstagepromotions", "-n", other)
    assert not can_i(cluster, user, "patch", "secretstagepromotions", "-n", watched)  # only their status
    assert not can_i(cluster, user, "create", "secretstagepromotions", "-n", watched)
    assert not can_i(cluster, user, "delete", "secretstagepromotions", "-n", watched)
    assert not can_i(cluster, user, "update", "customresourcedefinitions")
    assert not can_i(cluster, user, "list", "namespaces")
    assert not can_i(cluster, user, "create", "leases", "-n", release_ns)  # one replica: no leader election
    assert not can_i(cluster, user, "patch", "deployments", "-n", watched)  # afterSuccess not enabled
    assert not can_i(cluster, user, "patch", "externalsecrets.external-secrets.io", "-n", watched)
    cluster.helm("uninstall", release, "-n", release_ns)


def test_clusterwide_rbac(cluster: Cluster, crd: None, namespaces: Any) -> None:
    release_ns, anywhere = namespaces(), namespaces()
    release = install_chart(cluster, "cw", release_ns, "replicaCount=2", "afterSuccess.restartWorkloads=true")
    user = f"system:serviceaccount:{release_ns}:{release}-secretstage-operator"
    assert can_i(cluster, user, "watch", "secretstagepromotions", "--all-namespaces")
    # --subresource: "secretstagepromotions/status" would ask about the object named "status"
    assert can_i(cluster, user, "patch", "secretstagepromotions", "--subresource=status", "-n", anywhere)
    assert not can_i(cluster, user, "patch", "secretstagepromotions", "-n", anywhere)  # only their status
    assert can_i(cluster, user, "get", "secrets", "-n", anywhere)
    assert not can_i(cluster, user, "list", "secrets", "--all-namespaces")
    assert not can_i(cluster, user, "delete", "secrets", "-n", anywhere)
    assert can_i(cluster, user, "update", f"leases/{release}-secretstage-operator", "-n", release_ns)
    assert not can_i(cluster, user, "update", "leases/kube-scheduler", "-n", release_ns)
    assert not can_i(cluster, user, "update", "leases", "-n", anywhere)
    assert can_i(cluster, user, "patch", "deployments", "-n", anywhere)
    assert not can_i(cluster, user, "delete", "deployments", "-n", anywhere)
    assert not can_i(cluster, user, "patch", "externalsecrets.external-secrets.io", "-n", anywhere)
    cluster.helm("uninstall", release, "-n", release_ns)


def env_of(docs: list[dict[str, Any]]) -> dict[str, str | None]:
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    return {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_the_endpoint_example_in_the_docs_reaches_the_operator_as_written(cluster: Cluster, tmp_path: Path) -> None:
    """docs/install.md's values file, rendered: the patterns the operator gets admit exactly the endpoints meant."""
    install_md = (ROOT / "docs" / "install.md").read_text()
    example = next(b for b in re.findall(r"```yaml\n(.*?)```", install_md, re.S) if "# values-endpoints.yaml" in b)
    values = tmp_path / "values-endpoints.yaml"
    values.write_text(example)
    env = env_of(render(cluster, "-f", str(values)))
    patterns = str(env["SECRETSTAGE_ENDPOINT_ALLOW"]).split()
    assert env["SECRETSTAGE_KMS_ENDPOINT_TEMPLATE"] == "vpc"

    def allowed(url: str) -> bool:
        return any(re.fullmatch(p, url) for p in patterns)

    assert allowed("https://kms-vpc.cn-hangzhou.aliyuncs.com")
    assert not allowed("https://kms-vpc.cn-hangzhouxaliyuncs.com")
    assert not allowed("https://kms-vpcxcn-hangzhou.aliyuncs.com")
    assert not allowed("https://kms.cn-hangzhou.aliyuncs.com")  # public: not in this list
    assert allowed("https://kms-vpc.cn-shanghai.aliyuncs.com")
    assert not allowed("https://kms-vpc.cn-shanghaixaliyuncs.com")
    # the same list through --set-json keeps the backslashes too
    as_json = json.dumps(yaml.safe_load(example)["operator"]["endpointAllow"])
    assert env_of(render(cluster, "--set-json", f"operator.endpointAllow={as_json}"))[
        "SECRETSTAGE_ENDPOINT_ALLOW"
    ] == " ".join(patterns)


def test_values_platform_teams_expect(cluster: Cluster) -> None:
    docs = render(
        cluster,
        *("--set", "commonLabels.team=platform", "--set", "deploymentAnnotations.owner=sre"),
        *("--set", "revisionHistoryLimit=3", "--set", "operator.extraArgs={--kms-max-attempts=5}"),
        "--set-json",
        'topologySpreadConstraints=[{"maxSkew":1,"topologyKey":"topology.kubernetes.io/zone",'
        '"whenUnsatisfiable":"ScheduleAnyway","labelSelector":{"matchLabels":{"app":"x"}}}]',
        *("--set-json", 'dnsConfig={"options":[{"name":"ndots","value":"2"}]}'),
        *("--set-json", 'extraVolumes=[{"name":"extra","emptyDir":{}}]'),
        *("--set-json", 'extraVolumeMounts=[{"name":"extra","mountPath":"/extra"}]'),
        *("--set", "podDisruptionBudget.enabled=true", "--set", "podDisruptionBudget.minAvailable=1"),
        *("--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.serviceMonitor.namespace=monitoring"),
        *("--set", "metrics.serviceMonitor.scrapeTimeout=10s"),
        *("--set-json", 'metrics.serviceMonitor.relabelings=[{"action":"labeldrop","regex":"pod"}]'),
        *("--set", "networkPolicy.enabled=true"),
        *("--set", "crds.annotations.argocd\\.argoproj\\.io/sync-options=ServerSideApply=true"),
        *("--set", "operator.kmsEndpointTemplate=vpc"),
    )
    by_kind = {d["kind"]: d for d in docs}
    assert all(d["metadata"]["labels"]["team"] == "platform" for d in docs)
    deployment = by_kind["Deployment"]
    assert deployment["metadata"]["annotations"] == {"owner": "sre"}
    assert deployment["spec"]["revisionHistoryLimit"] == 3
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["template"]["metadata"]["labels"]["team"] == "platform"
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone"
    assert pod["dnsConfig"] == {"options": [{"name": "ndots", "value": "2"}]}
    assert {"name": "extra", "emptyDir": {}} in pod["volumes"]
    container = pod["containers"][0]
    assert {"name": "extra", "mountPath": "/extra"} in container["volumeMounts"]
    assert container["args"][-2:] == ["run", "--kms-max-attempts=5"]
    assert env_of(docs)["SECRETSTAGE_KMS_ENDPOINT_TEMPLATE"] == "vpc"
    assert by_kind["PodDisruptionBudget"]["spec"]["minAvailable"] == 1
    assert "maxUnavailable" not in by_kind["PodDisruptionBudget"]["spec"]
    monitor = by_kind["ServiceMonitor"]
    assert monitor["metadata"]["namespace"] == "monitoring"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["secretstage-system"]}
    assert monitor["spec"]["endpoints"][0]["scrapeTimeout"] == "10s"
    assert monitor["spec"]["endpoints"][0]["relabelings"] == [{"action": "labeldrop", "regex": "pod"}]
    egress_ports = [p["port"] for rule in by_kind["NetworkPolicy"]["spec"]["egress"] for p in rule["ports"]]
    assert egress_ports.count(443) == 1
    other_port = render(cluster, "--set", "networkPolicy.enabled=true", "--set", "networkPolicy.apiServerPort=6443")
    policy = next(d for d in other_port if d["kind"] == "NetworkPolicy")
    assert sorted(p["port"] for p in policy["spec"]["egress"][1]["ports"]) == [443, 6443]
    crd = by_kind["CustomResourceDefinition"]["metadata"]["annotations"]
    assert crd["argocd.argoproj.io/sync-options"] == "ServerSideApply=true"
    assert crd["helm.sh/resource-policy"] == "keep"


def hook_pod_args(docs: list[dict[str, Any]]) -> tuple[list[str], dict[str, str]]:
    """The `helm test` Pod's args, and where its Role and RoleBinding are."""
    pod = next(d for d in docs if d["kind"] == "Pod")
    where = {d["kind"]: d["metadata"]["namespace"] for d in docs if d["kind"] in ("Role", "RoleBinding", "Pod")}
    return pod["spec"]["containers"][0]["args"], where


def test_helm_test_lands_where_the_operator_looks_with_the_configured_identity(cluster: Cluster) -> None:
    hook = [
        *("--set", "tests.secretName=app/db", "--set", "tests.moveToVersion=v2"),
        *("--set", "tests.regionId=cn-hangzhou"),
    ]
    args, where = hook_pod_args(render(cluster, *hook, "--set", "tests.credentialsSecret=kms"))
    assert "--namespace=secretstage-system" in args  # all namespaces watched: the release's own
    assert "--credentials-secret=kms" in args
    assert set(where.values()) == {"secretstage-system"}
    namespaced = ["--set", "watch.namespaces={team-a,team-b}"]
    args, where = hook_pod_args(render(cluster, *hook, *namespaced, "--set", "tests.credentialsSecret=kms"))
    assert "--namespace=team-a" in args  # the release namespace is not watched
    assert where == {"Role": "team-a", "RoleBinding": "team-a", "Pod": "secretstage-system"}
    rrsa = ["--set", "rrsa.enabled=true", "--set", "rrsa.roleName=r", "--set", "rrsa.allowedNamespaces={team-b}"]
    args, _ = hook_pod_args(render(cluster, *hook, *namespaced, *rrsa, "--set", "tests.namespace=team-b"))
    assert "--operator-identity" in args  # RRSA-only: no AccessKey Secret needed
    assert "--namespace=team-b" in args
    identity = ["--set", "serviceAccountIdentity.oidcProviderArn=" + OIDC_PROVIDER]
    args, _ = hook_pod_args(render(cluster, *hook, *namespaced, *identity, "--set", "tests.serviceAccount=promoter"))
    assert "--service-account=promoter" in args


def test_the_chart_readme_is_current(cluster: Cluster) -> None:
    """helm/secretstage-operator/README.md is helm-docs' rendering of values.yaml (make chart-docs)."""
    chart = Path(CHART)
    result = subprocess.run(
        [f"{cluster.bin_dir}/helm-docs", "--dry-run", "--skip-version-footer", "--chart-search-root", str(chart)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == (chart / "README.md").read_text().strip(), "stale chart README: make chart-docs"
    values = yaml.safe_load((chart / "values.yaml").read_text())

    def leaves(node: Any, path: str) -> Iterator[str]:
        if isinstance(node, dict) and node and path not in UNDOCUMENTED_OBJECTS:
            for key, sub in node.items():
                yield from leaves(sub, f"{path}.{key}" if path else key)
        else:
            yield path

    rows = set(re.findall(r"^\| (\S+) \|", result.stdout, re.M))
    assert [leaf for leaf in leaves(values, "") if leaf not in rows] == []


UNDOCUMENTED_OBJECTS = {"resources", "podSecurityContext", "securityContext"}  # documented as whole objects


def test_the_release_workflow_passes_actionlint(cluster: Cluster) -> None:
    workflow = ROOT / ".github" / "workflows" / "release.yaml"
    result = subprocess.run(
        [f"{cluster.bin_dir}/actionlint", "-no-color", str(workflow)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = yaml.safe_load(workflow.read_text())["jobs"]
    build = next(s for s in jobs["image"]["steps"] if s.get("id") == "build")["with"]
    assert build["platforms"] == "linux/amd64,linux/arm64"
    assert build["provenance"] == "mode=max"
    assert "REVISION=" in build["build-args"]
    assert "CREATED=" in build["build-args"]
    pushed = " ".join(s.get("run", "") for s in jobs["chart"]["steps"])
    assert 'helm push "secretstage-operator-' in pushed
