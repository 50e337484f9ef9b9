"""The control plane is a real one: status subresource, CEL, pruning and RBAC behave as in production."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from tests.cluster import Cluster

GROUP = "smoke.secretstage.io"
CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"widgets.{GROUP}"},
    "spec": {
        "group": GROUP,
        "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {"size": {"type": "integer"}, "name": {"type": "string"}},
                                "x-kubernetes-validations": [
                                    {"rule": "self.size <= 10", "message": "size must be at most 10; lower spec.size"}
                                ],
                            },
                            "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
                        },
                    }
                },
            }
        ],
    },
}


@pytest.fixture(scope="module")
def widgets(cluster: Cluster) -> k8s.CustomObjectsApi:
    cluster.apply(CRD)
    cluster.kubectl("wait", "--for=condition=Established", f"crd/widgets.{GROUP}", "--timeout=60s")
    return k8s.CustomObjectsApi(cluster.api)


def test_version_is_stamped(cluster: Cluster) -> None:
    info = k8s.VersionApi(cluster.api).get_code()
    assert info.git_version.startswith("v1.")
    assert info.git_version != "v0.0.0-master+$Format:%H$"


def test_status_update_does_not_bump_generation(widgets: k8s.CustomObjectsApi, namespace: str) -> None:
    obj = widgets.create_namespaced_custom_object(
        GROUP,
        "v1",
        namespace,
        "widgets",
        {"apiVersion": f"{GROUP}/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1}},
    )
    assert obj["metadata"]["generation"] == 1
    after = widgets.patch_namespaced_custom_object_status(
        GROUP, "v1", namespace, "widgets", "w", {"status": {"phase": "Done"}}
    )
    assert after["status"] == {"phase": "Done"}
    assert after["metadata"]["generation"] == 1
    # and a status change sent to the main resource is ignored
    main = widgets.patch_namespaced_custom_object(
        GROUP, "v1", namespace, "widgets", "w", {"spec": {"size": 2}, "status": {"phase": "Ignored"}}
    )
    assert main["metadata"]["generation"] == 2
    assert main["status"] == {"phase": "Done"}


def test_cel_rule_rejects_with_its_message(widgets: k8s.CustomObjectsApi, namespace: str) -> None:
    with pytest.raises(ApiException) as err:
        widgets.create_namespaced_custom_object(
            GROUP,
            "v1",
            namespace,
            "widgets",
            {"apiVersion": f"{GROUP}/v1", "kind": "Widget", "metadata": {"name": "big"}, "spec": {"size": 11}},
        )
    assert err.value.status == 422
    assert "size must be at most 10; lower spec.size" in err.value.body


def test_unknown_fields_are_pruned(cluster: Cluster, widgets: k8s.CustomObjectsApi, namespace: str) -> None:
    cluster.kubectl(
        "apply",
        "-n",
        namespace,
        "--validate=false",
        "-f",
        "-",
        input=(
            f'{{"apiVersion":"{GROUP}/v1","kind":"Widget","metadata":{{"name":"p"}},"spec":{{"size":1,"bogus":"x"}}}}'
        ),
    )
    obj = widgets.get_namespaced_custom_object(GROUP, "v1", namespace, "widgets", "p")
    assert obj["spec"] == {"size": 1}
    widgets.patch_namespaced_custom_object_status(
        GROUP, "v1", namespace, "widgets", "p", {"status": {"phase": "x", "kopf": {"progress": {}}}}
    )
    assert widgets.get_namespaced_custom_object(GROUP, "v1", namespace, "widgets", "p")["status"] == {"phase": "x"}


def test_serviceaccount_token_is_denied_by_rbac(cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    k8s.CoreV1Api(cluster.api).create_namespaced_service_account(
        namespace, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name="nobody"))
    )
    kubeconfig = cluster.token_kubeconfig(namespace, "nobody", tmp_path / "kubeconfig")
    whoami = cluster.kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}", kubeconfig=kubeconfig)
    assert whoami.stdout == f"system:serviceaccount:{namespace}:nobody"
    denied = cluster.kubectl("get", "secrets", "-n", namespace, kubeconfig=kubeconfig, check=False)
    assert denied.returncode != 0
    assert "Forbidden" in denied.stderr
    assert f'User "system:serviceaccount:{namespace}:nobody" cannot list resource "secrets"' in denied.stderr
