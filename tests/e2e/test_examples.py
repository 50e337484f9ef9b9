"""The shipped examples and integrations, exercised on the real control plane with the operator."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from tests import lua_support
from tests.cluster import Cluster
from tests.harness import EmulatorProcess, OperatorProcess, Promotions, condition, install_external_secrets_crd
from tests.support import ROOT, wait_for

EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module")
def example_operator(
    cluster: Cluster, crd: None, emulator: EmulatorProcess, workdir: Path
) -> Iterator[OperatorProcess]:
    op = OperatorProcess(workdir, cluster.kubeconfig, emulator.url, name="examples-op")
    yield op
    op.stop()


def with_endpoint(manifest: dict[str, Any], emulator: EmulatorProcess, secret: str) -> dict[str, Any]:
    out = copy.deepcopy(manifest)
    out["spec"]["endpoint"] = emulator.url
    out["spec"]["secretName"] = secret
    out["metadata"].pop("namespace", None)
    return out


def cli_env(cluster: Cluster) -> dict[str, str]:
    return {**os.environ, "KUBECONFIG": cluster.kubeconfig, "PATH": f"{cluster.bin_dir}:{os.environ['PATH']}"}


def went_live(emulator: EmulatorProcess, promotions: Promotions, ns: str, name: str = "go-live") -> str:
    """A fresh secret (v1 current, v2 new) and a promotion ``name`` that moved ACSCurrent to v2."""
    secret = emulator.seed(f"ex/{uuid.uuid4().hex[:6]}", "v1", "v2")
    spec = {
        "secretName": secret,
        "versionStage": "ACSCurrent",
        "moveToVersion": "v2",
        "endpoint": emulator.url,
        "credentials": {"secretRef": {"name": "kms-credentials"}},
    }
    promotions.create(ns, name, spec)
    promotions.wait_phase(ns, name, "Succeeded")
    return secret


def test_kubectl_example_script(
    cluster: Cluster, example_operator: OperatorProcess, emulator: EmulatorProcess, ns: str, tmp_path: Path
) -> None:
    manifest = yaml.safe_load((EXAMPLES / "kubectl" / "promotion.yaml").read_text())
    good = tmp_path / "good.yaml"
    good.write_text(
        json.dumps(with_endpoint(manifest, emulator, emulator.seed(f"ex/{uuid.uuid4().hex[:6]}", "v1", "v2")))
    )
    script = str(EXAMPLES / "kubectl" / "promote.sh")
    ok = subprocess.run(
        [script, "-n", ns, str(good)], capture_output=True, text=True, env=cli_env(cluster), timeout=180, check=False
    )
    assert ok.returncode == 0, ok.stderr
    assert "Succeeded" in ok.stdout
    bad_manifest = with_endpoint(manifest, emulator, emulator.seed(f"ex/{uuid.uuid4().hex[:6]}", "v1", "v2"))
    bad_manifest["metadata"]["name"] = "racing"
    bad_manifest["spec"]["precondition"] = {"currentVersion": "v9"}
    bad = tmp_path / "bad.yaml"
    bad.write_text(json.dumps(bad_manifest))
    failed = subprocess.run(
        [script, "-n", ns, str(bad)],
        capture_output=True,
        text=True,
        env={**cli_env(cluster), "TIMEOUT": "10s"},
        timeout=180,
        check=False,
    )
    assert failed.returncode == 1
    assert "promotion racing did not succeed: PreconditionFailed" in failed.stderr


def test_argocd_example_as_posted_hook_with_after_success(
    cluster: Cluster, example_operator: OperatorProcess, emulator: EmulatorProcess, promotions: Promotions, ns: str
) -> None:
    apps = k8s.AppsV1Api(cluster.api)
    apps.create_namespaced_deployment(
        ns,
        {
            "metadata": {"name": "payments-api"},
            "spec": {
                "selector": {"matchLabels": {"app": "api"}},
                "template": {
                    "metadata": {"labels": {"app": "api"}},
                    "spec": {"containers": [{"name": "api", "image": "registry.k8s.io/pause:3.10"}]},
                },
            },
        },
    )
    manifest = yaml.safe_load((EXAMPLES / "argocd" / "promotion.yaml").read_text())
    assert manifest["metadata"]["annotations"]["argocd.argoproj.io/hook"] == "PostSync"
    secret = emulator.seed(f"ex/{uuid.uuid4().hex[:6]}", "v1", "v2")
    manifest = with_endpoint(manifest, emulator, secret)
    manifest["spec"]["afterSuccess"]["restart"].append({"kind": "StatefulSet", "name": "absent"})
    assert (
        lua_support.health({**manifest, "metadata": {**manifest["metadata"], "generation": 1}})["status"]
        == "Progressing"
    )
    cluster.apply(manifest, namespace=ns)
    name = manifest["metadata"]["name"]
    obj = promotions.wait_phase(ns, name, "Succeeded", "Failed")
    assert lua_support.health(obj) == {
        "status": "Healthy",
        "message": "Promoted: " + condition(obj, "Succeeded")["message"],
    }
    results = {(r["kind"], r["name"]): r["result"] for r in obj["status"]["afterSuccess"]}
    assert results == {("Deployment", "payments-api"): "Restarted", ("StatefulSet", "absent"): "NotFound"}
    template = apps.read_namespaced_deployment("payments-api", ns).spec.template
    assert "kubectl.kubernetes.io/restartedAt" in template.metadata.annotations
    wanted = {("Normal", "Promoted"), ("Normal", "Restarted"), ("Warning", "AfterSuccessNotFound")}
    promotions.wait_events(ns, name, lambda events: wanted <= {(e.type, e.reason) for e in events})


def test_external_secret_refresh(
    cluster: Cluster, example_operator: OperatorProcess, emulator: EmulatorProcess, promotions: Promotions, ns: str
) -> None:
    install_external_secrets_crd(cluster)
    cluster.apply(
        {
            "apiVersion": "external-secrets.io/v1",
            "kind": "ExternalSecret",
            "metadata": {"name": "db"},
            "spec": {"refreshInterval": "1h"},
        },
        namespace=ns,
    )
    secret = emulator.seed(f"ex/{uuid.uuid4().hex[:6]}", "v1", "v2")
    promotions.create(
        ns,
        "p",
        {
            "secretName": secret,
            "versionStage": "ACSCurrent",
            "moveToVersion": "v2",
            "endpoint": emulator.url,
            "credentials": {"secretRef": {"name": "kms-credentials"}},
            "afterSuccess": {"refreshExternalSecrets": [{"name": "db"}, {"name": "gone"}]},
        },
    )
    obj = promotions.wait_phase(ns, "p", "Succeeded")
    assert [r["result"] for r in obj["status"]["afterSuccess"]] == ["Refreshed", "NotFound"]
    es = k8s.CustomObjectsApi(cluster.api).get_namespaced_custom_object(
        "external-secrets.io", "v1", ns, "externalsecrets", "db"
    )
    assert re.fullmatch(r"\d{10}", es["metadata"]["annotations"]["force-sync"])


def argo_condition_holds(condition_text: str, obj: dict[str, Any]) -> bool:
    """Argo Workflows' resource conditions: label-selector requirements over JSON paths (gjson), ANDed."""

    def get(path: str) -> str | None:
        node: Any = obj
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node if isinstance(node, str) else json.dumps(node)

    for requirement in condition_text.split(","):
        match = re.fullmatch(r"\s*([\w.]+)\s*(==|!=|=)\s*([\w.-]+)\s*", requirement)
        assert match, f"unsupported requirement {requirement!r}"
        key, op, value = match.groups()
        actual = get(key)
        if (op in ("=", "==") and actual != value) or (op == "!=" and actual == value):
            return False
    return True


def test_argo_workflow_conditions_match_real_statuses(
    cluster: Cluster, example_operator: OperatorProcess, emulator: EmulatorProcess, promotions: Promotions, ns: str
) -> None:
    workflow = yaml.safe_load((EXAMPLES / "argo-workflows" / "workflow.yaml").read_text())
    resource = workflow["spec"]["templates"][0]["resource"]
    manifest = yaml.safe_load(resource["manifest"])
    outcomes = {}
    for label, secret in (("ok", emulator.seed(f"ex/{uuid.uuid4().hex[:6]}", "v1", "v2")), ("bad", "no/such")):
        body = with_endpoint(manifest, emulator, secret)
        created = k8s.CustomObjectsApi(cluster.api).create_namespaced_custom_object(
            "secretstage.io", "v1alpha1", ns, "secretstagepromotions", body
        )  # generateName, as Argo creates it
        obj = promotions.wait_phase(ns, created["metadata"]["name"], "Succeeded", "Failed")
        outcomes[label] = (
            argo_condition_holds(resource["successCondition"], obj),
            argo_condition_holds(resource["failureCondition"], obj),
            obj,
        )
    assert outcomes["ok"][:2] == (True, False)
    assert outcomes["bad"][:2] == (False, True)
    assert outcomes["ok"][2]["status"]["requestId"]  # the output parameter's jsonPath


def test_argo_workflow_service_account_may_promote_and_nothing_more(cluster: Cluster, crd: None, ns: str) -> None:
    """examples/argo-workflows/rbac.yaml as shipped: the workflow's ServiceAccount creates and follows
    promotions, and reads no Secret; the step's wait is bounded."""
    cluster.kubectl("-n", ns, "apply", "-f", str(EXAMPLES / "argo-workflows" / "rbac.yaml"))
    who = f"--as=system:serviceaccount:{ns}:secretstage-promoter"

    def can(verb: str, resource: str) -> bool:
        answer = cluster.kubectl("-n", ns, "auth", "can-i", verb, resource, who, check=False).stdout.strip()
        return answer == "yes"

    for verb in ("create", "get", "watch", "patch"):
        assert can(verb, "secretstagepromotions.secretstage.io"), verb
    assert not can("get", "secrets")
    assert not can("delete", "secretstagepromotions.secretstage.io")
    workflow = yaml.safe_load((EXAMPLES / "argo-workflows" / "workflow.yaml").read_text())
    assert workflow["spec"]["serviceAccountName"] == "secretstage-promoter"
    assert workflow["spec"]["templates"][0]["activeDeadlineSeconds"] > 0


def test_rollback_and_retry_commands(
    cluster: Cluster, example_operator: OperatorProcess, emulator: EmulatorProcess, promotions: Promotions, ns: str
) -> None:
    secret = went_live(emulator, promotions, ns)
    cmd = [sys.executable, "-m", "secretstage.cli"]
    out = subprocess.run(
        [*cmd, "rollback", "go-live", "-n", ns, "--new-name", "undo"],
        capture_output=True,
        text=True,
        env=cli_env(cluster),
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "ACSCurrent back to v1" in out.stdout
    undo = promotions.wait_phase(ns, "undo", "Succeeded")
    assert undo["spec"]["precondition"] == {"currentVersion": "v2"}
    assert undo["metadata"]["labels"] == {"secretstage.io/rollback-of": "go-live"}
    assert emulator.placement(secret) == {"v1": ["ACSCurrent"], "v2": ["ACSPrevious"]}
    applied = emulator.applied_for(secret)
    again = subprocess.run(
        [*cmd, "rollback", "go-live", "-n", ns, "--new-name", "undo2"],
        capture_output=True,
        text=True,
        env=cli_env(cluster),
        timeout=60,
        check=False,
    )
    assert again.returncode == 0
    # rolling back twice is idempotent: the asked placement already holds, nothing is sent
    twice = promotions.wait_phase(ns, "undo2", "Succeeded")
    assert condition(twice, "Succeeded")["reason"] == "AlreadyInPlace"
    assert emulator.applied_for(secret) == applied

    missing = f"ex/{uuid.uuid4().hex[:6]}"
    promotions.create(
        ns,
        "early",
        {
            "secretName": missing,
            "versionStage": "ACSCurrent",
            "moveToVersion": "v2",
            "endpoint": emulator.url,
            "credentials": {"secretRef": {"name": "kms-credentials"}},
        },
    )
    promotions.wait_phase(ns, "early", "Failed")
    emulator.seed(missing, "v1", "v2")
    retry = subprocess.run(
        [*cmd, "retry", "early", "-n", ns],
        capture_output=True,
        text=True,
        env=cli_env(cluster),
        timeout=60,
        check=False,
    )
    assert retry.returncode == 0, retry.stderr
    done = promotions.wait_phase(ns, "early", "Succeeded", generation=2)
    assert done["spec"]["retry"] == 1
    assert wait_for(lambda: emulator.holder(missing, "ACSCurrent"), lambda h: h == "v2", timeout=10, what="v2")


def test_cli_in_a_pod_with_a_service_account(
    cluster: Cluster,
    example_operator: OperatorProcess,
    emulator: EmulatorProcess,
    promotions: Promotions,
    ns: str,
    tmp_path: Path,
) -> None:
    """An Argo Workflows step runs `secretstage status` and `rollback` in a pod: no kube config, only
    the pod's ServiceAccount token (in-cluster configuration), with the Role docs/getting-started.md
    gives it. The same commands, run as a ServiceAccount without that Role, are refused by RBAC."""
    cluster.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "promotion-operator", "namespace": ns},
            "rules": [
                {
                    "apiGroups": ["secretstage.io"],
                    "resources": ["secretstagepromotions"],
                    "verbs": ["get", "list", "watch", "create", "patch"],
                }
            ],
        }
    )
    for account in ("workflow-step", "nobody"):
        cluster.kubectl("-n", ns, "create", "serviceaccount", account)
    cluster.kubectl(
        "-n",
        ns,
        "create",
        "rolebinding",
        "workflow-step",
        "--role=promotion-operator",
        f"--serviceaccount={ns}:workflow-step",
    )
    secret = went_live(emulator, promotions, ns)
    prefix, env = cluster.as_pod(ns, "workflow-step", tmp_path / "step")
    cmd = [*prefix, sys.executable, "-m", "secretstage.cli"]

    def in_pod(*args: str, env: dict[str, str] = env) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, timeout=60, check=False)

    status = in_pod("status", "go-live")  # the namespace comes from the pod's ServiceAccount
    assert status.returncode == 0, status.stderr
    assert f"Promotion:  {ns}/go-live" in status.stdout
    assert "Reason:     Promoted" in status.stdout
    assert "Before:     ACSCurrent=v1" in status.stdout
    listed = in_pod("status", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    assert [row["name"] for row in json.loads(listed.stdout)] == ["go-live"]
    missing = in_pod("status", "no-such")
    assert missing.returncode == 1
    assert f"SecretStagePromotion {ns}/no-such not found" in missing.stderr

    undo = in_pod("rollback", "go-live", "--new-name", "undo")
    assert undo.returncode == 0, undo.stderr
    promotions.wait_phase(ns, "undo", "Succeeded")
    assert emulator.holder(secret, "ACSCurrent") == "v1"
    refused = in_pod("rollback", "undo-of-nothing")
    assert refused.returncode == 1

    nobody_prefix, nobody_env = cluster.as_pod(ns, "nobody", tmp_path / "nobody")
    forbidden = subprocess.run(
        [*nobody_prefix, sys.executable, "-m", "secretstage.cli", "rollback", "go-live"],
        capture_output=True,
        text=True,
        env=nobody_env,
        timeout=60,
        check=False,
    )
    assert forbidden.returncode == 1
    assert "HTTP 403" in forbidden.stderr


def test_kubectl_plugin_from_the_krew_archive(
    cluster: Cluster,
    example_operator: OperatorProcess,
    emulator: EmulatorProcess,
    promotions: Promotions,
    ns: str,
    tmp_path: Path,
) -> None:
    """The archive the release publishes for krew, built from this checkout, unpacked on PATH and run
    by the real kubectl as `kubectl secretstage` (kubectl's plugin discovery)."""
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(dist), str(ROOT)],
        check=True,
        timeout=600,
    )
    [wheel] = dist.glob("secretstage_operator-*.whl")
    archive = tmp_path / "kubectl-secretstage.tar.gz"
    subprocess.run(
        [sys.executable, str(ROOT / "hack/kubectl_plugin.py"), "build", str(wheel), str(archive)], check=True
    )
    plugins = tmp_path / "plugins"
    with tarfile.open(archive) as tar:
        tar.extractall(plugins, filter="data")
    assert sorted(p.name for p in plugins.iterdir()) == ["LICENSE", "kubectl-secretstage"]
    (plugins / "kubectl-secretstage").chmod(0o755)

    went_live(emulator, promotions, ns)
    env = {**cli_env(cluster), "PATH": f"{plugins}:{cluster.bin_dir}:/usr/bin:/bin"}  # no venv on PATH
    env.pop("VIRTUAL_ENV", None)
    plugin_list = subprocess.run(["kubectl", "plugin", "list"], capture_output=True, text=True, env=env, check=False)
    assert str(plugins / "kubectl-secretstage") in plugin_list.stdout, plugin_list.stderr
    shown = subprocess.run(
        ["kubectl", "secretstage", "status", "go-live", "-n", ns],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert "Reason:     Promoted" in shown.stdout
    assert "After:      ACSCurrent=v2, ACSPrevious=v1" in shown.stdout


def test_gated_example_is_admitted(crd: None, promotions: Promotions, ns: str) -> None:
    """examples/gated/promotion.yaml as shipped passes the CRD's schema and rules (a server-side dry
    run: nothing is created). It runs for real on the node: tests/node/test_gate.py."""
    manifest = yaml.safe_load((EXAMPLES / "gated" / "promotion.yaml").read_text())
    manifest["metadata"].pop("namespace")
    created = promotions.api.create_namespaced_custom_object(
        "secretstage.io", "v1alpha1", ns, "secretstagepromotions", manifest, dry_run="All"
    )
    assert created["spec"]["gate"]["jobs"][0]["name"] == "login-check"


def test_scheduled_example_is_admitted_and_waits_for_its_window(crd: None, promotions: Promotions, ns: str) -> None:
    """examples/scheduled/promotion.yaml as shipped passes the CRD's schema and rules (a server-side
    dry run), and its schedule, evaluated now, keeps it waiting until a weekday 02:00 in Shanghai."""
    from datetime import UTC, datetime

    from secretstage.domain.schedule import parse_schedule

    manifest = yaml.safe_load((EXAMPLES / "scheduled" / "promotion.yaml").read_text())
    manifest["metadata"].pop("namespace")
    created = promotions.api.create_namespaced_custom_object(
        "secretstage.io", "v1alpha1", ns, "secretstagepromotions", manifest, dry_run="All"
    )
    plan = parse_schedule(created["spec"]["schedule"])
    assert plan is not None
    wait = plan.wait(datetime(2026, 12, 20, tzinfo=UTC))
    assert wait is not None
    assert wait.until == datetime(2026, 12, 23, 18, 0, tzinfo=UTC)  # Thursday 24 December, 02:00 in Shanghai


def test_approval_example_is_admitted_and_asks_for_an_approver(crd: None, promotions: Promotions, ns: str) -> None:
    """examples/approval/promotion.yaml as shipped passes the CRD's schema and rules (a server-side dry
    run), and the operator reads from it an approval rule with its approvers."""
    from secretstage.domain.approval import REQUESTED_BY_ANNOTATION, parse_approval

    manifest = yaml.safe_load((EXAMPLES / "approval" / "promotion.yaml").read_text())
    manifest["metadata"].pop("namespace")
    created = promotions.api.create_namespaced_custom_object(
        "secretstage.io", "v1alpha1", ns, "secretstagepromotions", manifest, dry_run="All"
    )
    rule = parse_approval(created["spec"]["approval"])
    assert rule is not None
    assert (rule.users, rule.groups, rule.min_approvals) == (("bob@example.com",), ("payments-leads",), 1)
    assert created["metadata"]["annotations"][REQUESTED_BY_ANNOTATION] == "alice@example.com"
