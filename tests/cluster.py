"""pytest plugin: one real control plane per session (hack/control-plane.sh), a namespace per test.

Set SECRETSTAGE_KUBECONFIG to run against an existing cluster (kind, k3d, ACK) instead.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from tests.support import ROOT

SCRIPT = ROOT / "hack" / "control-plane.sh"


@dataclass
class Cluster:
    kubeconfig: str
    bin_dir: str
    api: k8s.ApiClient
    server: str = ""
    state_dir: Path | None = None
    env: dict[str, str] = field(default_factory=dict)

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        kubeconfig: str | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [os.path.join(self.bin_dir, "kubectl"), "--kubeconfig", kubeconfig or self.kubeconfig, *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr}")
        return result

    def helm(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [os.path.join(self.bin_dir, "helm"), "--kubeconfig", self.kubeconfig, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}): {result.stderr}")
        return result

    def apply(self, manifest: dict[str, Any] | str, namespace: str | None = None) -> None:
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        args = ["apply", "-f", "-"] + (["-n", namespace] if namespace else [])
        self.kubectl(*args, input=text)

    def token_kubeconfig(self, namespace: str, service_account: str, path: Path) -> str:
        """A kubeconfig that authenticates as a ServiceAccount through a TokenRequest token."""
        token = self.kubectl("-n", namespace, "create", "token", service_account, "--duration=2h").stdout.strip()
        raw = json.loads(self.kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout)
        cluster = raw["clusters"][0]
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [cluster],
            "users": [{"name": service_account, "user": {"token": token}}],
            "contexts": [
                {"name": "sa", "context": {"cluster": cluster["name"], "user": service_account, "namespace": namespace}}
            ],
            "current-context": "sa",
        }
        path.write_text(json.dumps(kubeconfig))
        path.chmod(0o600)
        return str(path)

    def as_pod(self, namespace: str, service_account: str, workdir: Path) -> tuple[list[str], dict[str, str]]:
        """A command prefix and environment that run a process as a pod's container sees the cluster:
        ``KUBERNETES_SERVICE_HOST``/``PORT`` and a ServiceAccount token, CA and namespace at
        /var/run/secrets/kubernetes.io/serviceaccount (a private tmpfs over /run in a mount namespace of
        its own: nothing on this machine changes). No KUBECONFIG."""
        token = self.kubectl("-n", namespace, "create", "token", service_account, "--duration=1h").stdout.strip()
        raw = json.loads(self.kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout)
        cluster = raw["clusters"][0]["cluster"]
        secrets = workdir / "serviceaccount"
        secrets.mkdir(parents=True, exist_ok=True)
        (secrets / "token").write_text(token)
        (secrets / "namespace").write_text(namespace)
        if "certificate-authority-data" in cluster:
            (secrets / "ca.crt").write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
        else:
            (secrets / "ca.crt").write_bytes(Path(cluster["certificate-authority"]).read_bytes())
        server = urlsplit(cluster["server"])
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        env |= {"KUBERNETES_SERVICE_HOST": str(server.hostname), "KUBERNETES_SERVICE_PORT": str(server.port or 443)}
        mount = (
            "mount -t tmpfs tmpfs /run && mkdir -p /run/secrets/kubernetes.io/serviceaccount && "
            f'cp {secrets}/* /run/secrets/kubernetes.io/serviceaccount/ && exec "$@"'
        )
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", mount, "sh"], env


def control_plane(*args: str, env: dict[str, str], timeout: float) -> str:
    result = subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"hack/control-plane.sh {' '.join(args)} failed:\n{result.stderr[-4000:]}")
    return result.stdout


@contextlib.contextmanager
def dedicated_control_plane(
    state: Path, bin_dir: str, *up_args: str, up_timeout: float = 300, down_timeout: float = 120
) -> Iterator[tuple[Cluster, dict[str, str]]]:
    """hack/control-plane.sh up ARGS with its state in ``state``, down again afterwards, also when the body
    fails: the session's shared control plane, the node tests' (``--with-node``), or a test module's own
    (faults, or a cluster-scoped object such as the CRD). Yields the cluster and the script's env."""
    env = {**os.environ, "CP_STATE_DIR": str(state)}
    started = time.monotonic()
    exports = exported(control_plane("up", *up_args, env=env, timeout=up_timeout))
    print(f"control plane up in {time.monotonic() - started:.1f}s at {exports['K8S_SERVER']}")
    api = k8s_config.new_client_from_config(config_file=exports["KUBECONFIG"])
    try:
        yield (
            Cluster(
                kubeconfig=exports["KUBECONFIG"],
                bin_dir=bin_dir,
                api=api,
                server=exports["K8S_SERVER"],
                state_dir=state,
                env=exports,
            ),
            env,
        )
    finally:
        api.close()
        control_plane("down", env=env, timeout=down_timeout)


def exported(out: str) -> dict[str, str]:
    """The ``export NAME=value`` lines hack/control-plane.sh up prints (NODE_IP and NODE_NAME share one)."""
    exports: dict[str, str] = {}
    for line in out.splitlines():
        if line.startswith("export "):
            exports.update(pair.split("=", 1) for pair in line.removeprefix("export ").split())
    return exports


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    env = dict(os.environ)
    external = os.environ.get("SECRETSTAGE_KUBECONFIG")
    # Cold builds take minutes (measured ~5 min on 2 cores); allow far more for slow machines.
    control_plane("build", env=env, timeout=3600)
    bin_dir = control_plane("bin-dir", env=env, timeout=30).strip()
    if external:
        api = k8s_config.new_client_from_config(config_file=external)
        yield Cluster(kubeconfig=external, bin_dir=bin_dir, api=api)
        return
    state = tmp_path_factory.mktemp("control-plane")
    with dedicated_control_plane(state, bin_dir) as (shared, _):
        yield shared
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    name = "t-" + uuid.uuid4().hex[:10]
    core = k8s.CoreV1Api(cluster.api)
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name, labels={"secretstage-test": "1"})))
    yield name
    core.delete_namespace(name)  # kube-controller-manager finishes it in the background
