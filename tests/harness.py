"""Run the real emulator and the real operator as processes, for e2e, reliability and HA tests."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client as k8s

from secretstage.kms import Credentials, KmsClient, StaticProvider
from tests.cluster import Cluster
from tests.support import ROOT, SECRET_CANARIES, Process, secretstage_cmd, wait_for

GROUP, VERSION, PLURAL = "secretstage.io", "v1alpha1", "secretstagepromotions"
CRD_FILE = ROOT / "crds" / "secretstagepromotions.secretstage.io.yaml"
CHART = str(ROOT / "helm" / "secretstage-operator")

# STS-style test credentials: unique per run so any leak scan hit is a real leak.
E2E_KEY_ID = "STS.e2etestkey"
E2E_KEY_SECRET = "e2e-secret-" + uuid.uuid4().hex
E2E_TOKEN = "CAIS-e2e-token-" + uuid.uuid4().hex
E2E_SECRET_VALUE = "e2e-value-" + uuid.uuid4().hex
SECRETS = (E2E_KEY_SECRET, E2E_TOKEN, E2E_SECRET_VALUE)
SECRET_CANARIES.update(SECRETS)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# The KMS behaviours the docs leave open (docs/emulator.md): the operator's end-to-end, crash and
# reliability tests run against the emulator's documented defaults and against the strictest setting.
EMULATOR_MODES: dict[str, dict[str, Any]] = {
    "kms-documented": {"auto_previous": True, "label_held_elsewhere": "move", "remove_mismatch": "reject"},
    "kms-strictest": {"auto_previous": False, "label_held_elsewhere": "reject", "remove_mismatch": "reject"},
}


def _switch_flags(switches: dict[str, Any]) -> list[str]:
    flags = []
    for name, value in switches.items():
        flags += ["--" + name.replace("_", "-"), str(value).lower() if isinstance(value, bool) else str(value)]
    return flags


class EmulatorProcess:
    def __init__(
        self,
        workdir: Path,
        *extra: str,
        switches: dict[str, Any] | None = None,
        verify: ssl.SSLContext | bool = True,  # with --tls-cert: a context trusting its CA
        security_token: bool = True,  # False: the key is a plain AccessKey (no SecurityToken), as a RAM user's
    ) -> None:
        self.switches = dict(switches or EMULATOR_MODES["kms-documented"])
        self.verify = verify
        self.token = E2E_TOKEN if security_token else None
        self.process = Process(
            secretstage_cmd(
                "emulator", "--port", "0", "--access-key-id", E2E_KEY_ID, *_switch_flags(self.switches), *extra
            ),
            workdir / f"emulator-{uuid.uuid4().hex[:6]}.log",
            env={
                "SECRETSTAGE_EMULATOR_ACCESS_KEY_SECRET": E2E_KEY_SECRET,
                **({"SECRETSTAGE_EMULATOR_SECURITY_TOKEN": E2E_TOKEN} if security_token else {}),
            },
        )
        line = self.process.first_line()
        assert line.startswith("listening on "), line
        self.url = line.removeprefix("listening on ")
        self.http = httpx.Client(base_url=self.url, timeout=10, verify=verify)

    def calls(self) -> dict[str, Any]:
        return dict(self.http.get("/_emulator/calls").json())

    def applied(self, action: str = "UpdateSecretVersionStage") -> int:
        return int(self.calls()["applied"].get(action, 0))

    def calls_for(self, secret: str) -> dict[str, int]:
        """Authenticated calls per action that named ``secret``: what this test's own secret saw."""
        return dict(self.http.get("/_emulator/calls", params={"secret": secret}).json()["calls"])

    def applied_for(self, secret: str, action: str = "UpdateSecretVersionStage") -> int:
        return int(self.http.get("/_emulator/calls", params={"secret": secret}).json()["applied"].get(action, 0))

    def moves_for(self, secret: str, stage: str = "ACSCurrent") -> int:
        """Applied UpdateSecretVersionStage calls of ``stage`` for ``secret`` (ACSPrevious fix-ups apart)."""
        answer = self.http.get("/_emulator/calls", params={"secret": secret}).json()
        return int(answer["moves"].get(stage, 0))

    def wait_idle(self, timeout: float = 30) -> None:
        """Until no request is inside the emulator: a killed operator's requests held by a latency fault
        land (and are counted) before the next test starts, not during it."""
        wait_for(
            lambda: int(self.calls()["in_flight"]),
            lambda n: n == 0,
            timeout=timeout,
            what="requests still inside the emulator to finish",
        )

    def moves(self, secret: str | None = None, stage: str = "ACSCurrent") -> int:
        """Successful UpdateSecretVersionStage calls for ``stage`` (ACSPrevious fix-ups not counted)."""
        return sum(
            1
            for h in self.calls()["history"]
            if h["action"] == "UpdateSecretVersionStage"
            and h.get("VersionStage") == stage
            and h.get("code") == "Success"
            and (secret is None or h.get("SecretName") == secret)
        )

    def placement(self, secret: str) -> dict[str, list[str]]:
        return dict(self.http.get("/_emulator/state").json()["secrets"][secret])

    def holder(self, secret: str, stage: str) -> str | None:
        return next((v for v, stages in self.placement(secret).items() if stage in stages), None)

    def set_faults(self, faults: dict[str, dict[str, float]]) -> None:
        self.http.put("/_emulator/faults", json=faults).raise_for_status()

    def set_identity(self, config: dict[str, Any] | None) -> None:
        """Replace the emulator's OIDC providers and RAM roles (docs/emulator.md); None turns the checks off."""
        response = self.http.put("/_emulator/identity", json=config)
        assert response.status_code == 200, response.text

    def set_auto_previous(self, value: bool) -> None:
        self.http.put("/_emulator/config", json={"auto_previous": value}).raise_for_status()

    def reset_switches(self) -> None:
        """Back to the mode this emulator was started in."""
        self.http.put("/_emulator/config", json=self.switches).raise_for_status()

    def seed(self, name: str, *versions: str, pending: str | None = None) -> str:
        """Create ``name`` with versions; the first is ACSCurrent, the others carry no stage (or ``pending``)."""

        async def run() -> None:
            creds = StaticProvider(Credentials(E2E_KEY_ID, E2E_KEY_SECRET, self.token))
            async with (
                httpx.AsyncClient(verify=self.verify, timeout=10) as http,
                KmsClient(endpoint=self.url, credentials=creds, http=http) as client,
            ):
                await client.create_secret(name, versions[0], E2E_SECRET_VALUE)
                for v in versions[1:]:
                    stages = [pending] if pending and v == versions[-1] else []
                    await client.put_secret_value(name, v, E2E_SECRET_VALUE + v, version_stages=stages)

        asyncio.run(run())
        return name

    def move(self, name: str, stage: str, to: str, remove_from: str) -> None:
        """One UpdateSecretVersionStage, as another pipeline would make it (test set-up)."""

        async def run() -> None:
            creds = StaticProvider(Credentials(E2E_KEY_ID, E2E_KEY_SECRET, self.token))
            async with (
                httpx.AsyncClient(verify=self.verify, timeout=10) as http,
                KmsClient(endpoint=self.url, credentials=creds, http=http) as client,
            ):
                await client.update_secret_version_stage(
                    name, stage, move_to_version=to, remove_from_version=remove_from or None
                )

        asyncio.run(run())

    def arn(self, name: str) -> str:
        """The secret's ARN, as DescribeSecret gives it."""

        async def run() -> str:
            creds = StaticProvider(Credentials(E2E_KEY_ID, E2E_KEY_SECRET, self.token))
            async with (
                httpx.AsyncClient(verify=self.verify, timeout=10) as http,
                KmsClient(endpoint=self.url, credentials=creds, http=http) as client,
            ):
                return (await client.describe_secret(name)).arn

        return asyncio.run(run())

    def stop(self) -> None:
        self.http.close()
        self.process.stop()


class OperatorProcess:
    def __init__(
        self,
        workdir: Path,
        kubeconfig: str,
        emulator_url: str,
        *extra: str,
        name: str = "operator",
        env: dict[str, str] | None = None,
        log_level: str = "DEBUG",
        allow: str | None = None,  # an --endpoint-allow regex; by default the emulator's URL exactly
    ) -> None:
        self.workdir, self.kubeconfig, self.extra, self.name = workdir, kubeconfig, extra, name
        self.log_level = log_level
        self.allow = allow or re.escape(emulator_url)
        self.env = env or {}
        self.logs: list[Path] = []
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.process: Process | None = None
        self.start()

    def start(self) -> None:
        log = self.workdir / f"{self.name}-{len(self.logs)}.log"
        self.logs.append(log)
        self.process = Process(
            secretstage_cmd(
                "--log-level",
                self.log_level,
                "run",
                "--endpoint-allow",
                self.allow,
                "--metrics-port",
                str(self.metrics_port),
                "--health-port",
                str(self.health_port),
                *self.extra,
            ),
            log,
            env={"KUBECONFIG": self.kubeconfig, **self.env},
        )
        process = self.process

        def probe() -> int:
            if not process.alive():
                raise RuntimeError(f"{self.name} exited; log tail:\n{process.log_text()[-2000:]}")
            return httpx.get(f"http://127.0.0.1:{self.health_port}/healthz", timeout=2).status_code

        wait_for(probe, lambda code: code == 200, timeout=60, what=f"{self.name} liveness", interval=0.2)

    def stop(self, sig: int = 15) -> None:
        if self.process is not None:
            self.process.stop(sig)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs if p.exists())


class Promotions:
    """Create and watch SecretStagePromotions through the admin API client."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.api = k8s.CustomObjectsApi(cluster.api)
        self.core = k8s.CoreV1Api(cluster.api)

    def credentials_secret(self, namespace: str, name: str = "kms-credentials", **overrides: str) -> None:
        data = {"AccessKeyId": E2E_KEY_ID, "AccessKeySecret": E2E_KEY_SECRET, "SecurityToken": E2E_TOKEN, **overrides}
        self.core.create_namespaced_secret(
            namespace, k8s.V1Secret(metadata=k8s.V1ObjectMeta(name=name), string_data=data, type="Opaque")
        )

    def create(self, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "SecretStagePromotion",
            "metadata": {"name": name},
            "spec": spec,
        }
        return dict(self.api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body))

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        return dict(self.api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name))

    def patch_spec(self, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return dict(self.api.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, {"spec": spec}))

    def wait_phase(
        self, namespace: str, name: str, *phases: str, timeout: float = 60, generation: int | None = None
    ) -> dict[str, Any]:
        def done(obj: dict[str, Any]) -> bool:
            status = obj.get("status") or {}
            gen = generation or obj["metadata"]["generation"]
            return status.get("phase") in phases and status.get("observedGeneration") == gen

        return wait_for(
            lambda: self.get(namespace, name), done, timeout=timeout, what=f"{namespace}/{name} phase in {phases}"
        )

    def events(self, namespace: str, name: str | None = None) -> list[k8s.CoreV1Event]:
        items = self.core.list_namespaced_event(namespace).items
        return [e for e in items if name is None or e.involved_object.name == name]

    def wait_events(
        self, namespace: str, name: str, predicate: Callable[[list[k8s.CoreV1Event]], bool], timeout: float = 30
    ) -> list[k8s.CoreV1Event]:
        """Events are posted after the status is written (kopf posts them in the background): poll."""
        return wait_for(
            lambda: self.events(namespace, name),
            predicate,
            timeout=timeout,
            what=f"events of {namespace}/{name}",
        )

    def all_text(self, namespace: str) -> str:
        """Every status and event in a namespace, as text (for leak scans)."""
        objs = self.api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
        events = [f"{e.reason} {e.message}" for e in self.events(namespace)]
        return json.dumps([o.get("status") for o in objs]) + "\n".join(events)


def spec_for(emulator: EmulatorProcess, secret: str, **fields: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "secretName": secret,
        "versionStage": "ACSCurrent",
        "endpoint": emulator.url,
        "credentials": {"secretRef": {"name": "kms-credentials"}},
    }
    spec.update(fields)
    return {k: v for k, v in spec.items() if v is not None}


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == type_)


EXTERNAL_SECRETS_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "externalsecrets.external-secrets.io"},
    "spec": {
        "group": "external-secrets.io",
        "scope": "Namespaced",
        "names": {"kind": "ExternalSecret", "plural": "externalsecrets", "singular": "externalsecret"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
            }
        ],
    },
}


def install_external_secrets_crd(cluster: Cluster) -> None:
    """External Secrets Operator's ExternalSecret kind (its CRD only: what afterSuccess patches)."""
    cluster.apply(EXTERNAL_SECRETS_CRD)
    cluster.kubectl("wait", "--for=condition=Established", "crd/externalsecrets.external-secrets.io")


def install_crd(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", str(CRD_FILE))
    cluster.kubectl("wait", "--for=condition=Established", f"crd/{PLURAL}.{GROUP}", "--timeout=60s")


def elapsed(since: float) -> float:
    return time.monotonic() - since


def install_chart(cluster: Cluster, prefix: str, namespace: str, *settings: str) -> str:
    """`helm install` the chart (the CRD is already installed by the tests); returns the release name.

    The operator's ServiceAccount is then ``<release>-secretstage-operator``.
    """
    release = prefix + uuid.uuid4().hex[:6]
    args = [arg for setting in ("crds.enabled=false", *settings) for arg in ("--set", setting)]
    cluster.helm("install", release, CHART, "-n", namespace, *args)
    return release


def run_check(cluster: Cluster, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """`secretstage check ARGS` as from a workstation (the kube config, not an in-cluster ServiceAccount)."""
    env = {**os.environ, "KUBECONFIG": cluster.kubeconfig}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    return subprocess.run(
        secretstage_cmd("check", *args), capture_output=True, text=True, env=env, timeout=timeout, check=False
    )


def start_analysis_controller(cluster: Cluster, workdir: Path) -> Process:
    """Argo Rollouts' analysis controller (hack/argo-rollouts.sh: built from Go modules, CRDs applied)
    out of cluster against ``cluster``, ready; its log is scanned for leaks with the others."""
    env = {**os.environ, "KUBECONFIG": cluster.kubeconfig, "PATH": f"{cluster.bin_dir}:{os.environ['PATH']}"}
    script = str(ROOT / "hack" / "argo-rollouts.sh")
    built = subprocess.run(["bash", script, "build"], timeout=1800, capture_output=True, text=True, check=False)
    assert built.returncode == 0, built.stderr[-3000:]
    crds = subprocess.run(["bash", script, "crds"], timeout=300, env=env, capture_output=True, text=True, check=False)
    assert crds.returncode == 0, crds.stderr[-3000:]
    bin_dir = subprocess.run(["bash", script, "bin-dir"], check=True, capture_output=True, text=True).stdout.strip()
    controller = Process(
        [
            f"{bin_dir}/rollouts-controller",
            *("--kubeconfig", cluster.kubeconfig, "--controllers", "analysis", "--leader-elect=false"),
            *("--healthzPort", str(free_port()), "--metricsPort", str(free_port())),
        ],
        workdir / "rollouts-controller.log",
    )
    wait_for(
        controller.log_text,
        lambda text: "analysis workers" in text,
        timeout=60,
        what="the analysis controller to start its workers",
    )
    return controller
