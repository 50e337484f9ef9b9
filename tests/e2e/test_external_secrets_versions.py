"""afterSuccess.refreshExternalSecrets on every External Secrets Operator a cluster may run: v1 (0.17
and later), v1beta1 only (older releases), and none at all. On a control plane of this module's own,
since the ExternalSecret CRD is cluster-wide and the shared one serves v1."""

from __future__ import annotations

import copy
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from kubernetes import client as k8s

from secretstage.aftersuccess import refresh_external_secret
from secretstage.kubehttp import KubeHttp
from tests.cluster import Cluster, dedicated_control_plane
from tests.harness import EXTERNAL_SECRETS_CRD


@pytest.fixture(scope="module")
def own_plane(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with dedicated_control_plane(tmp_path_factory.mktemp("eso-plane"), cluster.bin_dir) as (own, _):
        yield own


@pytest.fixture
async def kube(own_plane: Cluster) -> AsyncIterator[KubeHttp]:
    http = KubeHttp.from_configuration(own_plane.api.configuration)
    yield http
    await http.aclose()


def crd_serving(version: str) -> dict[str, Any]:
    crd = copy.deepcopy(EXTERNAL_SECRETS_CRD)
    crd["spec"]["versions"][0]["name"] = version
    return crd


def annotations(cluster: Cluster, namespace: str, version: str, name: str) -> dict[str, str]:
    obj: dict[str, Any] = k8s.CustomObjectsApi(cluster.api).get_namespaced_custom_object(  # type: ignore[assignment]
        "external-secrets.io", version, namespace, "externalsecrets", name
    )
    return dict(obj["metadata"].get("annotations") or {})


async def test_no_eso_then_an_old_one_then_a_missing_object(own_plane: Cluster, kube: KubeHttp) -> None:
    namespace = "eso-" + uuid.uuid4().hex[:6]
    own_plane.kubectl("create", "namespace", namespace)

    none = await refresh_external_secret(kube, namespace, "db", "stamp-1")
    assert none.result == "NotFound"
    assert "serves no ExternalSecret API (external-secrets.io/v1, external-secrets.io/v1beta1)" in none.message

    own_plane.apply(crd_serving("v1beta1"))  # External Secrets Operator before 0.17
    own_plane.kubectl("wait", "--for=condition=Established", "crd/externalsecrets.external-secrets.io")
    own_plane.apply(
        {"apiVersion": "external-secrets.io/v1beta1", "kind": "ExternalSecret", "metadata": {"name": "db"}},
        namespace,
    )
    old = await refresh_external_secret(kube, namespace, "db", "stamp-2")
    assert old.result == "Refreshed", old.message
    assert annotations(own_plane, namespace, "v1beta1", "db")["force-sync"] == "stamp-2"

    missing = await refresh_external_secret(kube, namespace, "no-such", "stamp-3")
    assert missing.result == "NotFound"
    assert missing.message == f"ExternalSecret {namespace}/no-such not found; nothing restarted or refreshed"
