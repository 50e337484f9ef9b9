"""What the benchmarks run on: a control plane, the emulator and the operator as real processes."""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "hack" / "control-plane.sh"
GROUP, VERSION, PLURAL = "secretstage.io", "v1alpha1", "secretstagepromotions"
AK_ID, AK_SECRET = "LTAIbenchKey", "bench-secret-not-real-0123456789"
BENCH_AGENT = "secretstage-bench"  # the load generator's own requests, left out of the cost counts
AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived, ResponseStarted]
rules:
- level: Metadata
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_local = threading.local()


@dataclass
class Plane:
    """The control plane as seen by a minimal client: one httpx.Client with the admin certificate."""

    state: Path
    kubeconfig: str
    server: str
    http: httpx.Client
    async_args: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def up(cls) -> Plane:
        """With an audit log of every request (Metadata level): the cost table counts from it."""
        state = Path(tempfile.mkdtemp(prefix="secretstage-bench-"))
        (state / "audit-policy.yaml").write_text(AUDIT_POLICY)
        audit = (
            f"--audit-policy-file {state / 'audit-policy.yaml'} --audit-log-path {state / 'audit.log'} "
            "--audit-log-format json --audit-log-maxsize 0"
        )
        env = {**os.environ, "CP_STATE_DIR": str(state / "cp"), "CP_APISERVER_EXTRA_ARGS": audit}
        out = subprocess.run(
            ["bash", str(SCRIPT), "up"], capture_output=True, text=True, env=env, check=True, timeout=3600
        ).stdout
        kubeconfig = re.search(r"export KUBECONFIG=(\S+)", out).group(1)  # type: ignore[union-attr]
        config = yaml.safe_load(Path(kubeconfig).read_text())
        files = {}
        for key, source in (
            ("ca", config["clusters"][0]["cluster"]["certificate-authority-data"]),
            ("crt", config["users"][0]["user"]["client-certificate-data"]),
            ("key", config["users"][0]["user"]["client-key-data"]),
        ):
            path = state / f"{key}.pem"
            path.write_bytes(base64.b64decode(source))
            files[key] = str(path)
        server = config["clusters"][0]["cluster"]["server"]
        context = ssl.create_default_context(cafile=files["ca"])
        context.load_cert_chain(files["crt"], files["key"])
        args = {"base_url": server, "verify": context, "timeout": 30, "headers": {"User-Agent": BENCH_AGENT}}
        plane = cls(state, kubeconfig, server, httpx.Client(**args), args)
        return plane

    def process(self, component: str) -> psutil.Process:
        """kube-apiserver or etcd, by the PID file hack/control-plane.sh keeps."""
        return psutil.Process(int((self.state / "cp" / f"{component}.pid").read_text().strip()))

    def audit_mark(self) -> int:
        return (self.state / "audit.log").stat().st_size

    def audited(self, since: int, namespace: str) -> list[dict[str, Any]]:
        """Requests in ``namespace`` completed since the mark, made by the controller under test: not the
        load generator, nor kube-controller-manager (a new namespace's default ServiceAccount)."""
        with open(self.state / "audit.log", "rb") as log:
            log.seek(since)
            events = [json.loads(line) for line in log if line.strip()]
        return [
            e
            for e in events
            if (e.get("objectRef") or {}).get("namespace") == namespace
            and not str(e.get("userAgent", "")).startswith((BENCH_AGENT, "kube-"))  # nor the control plane's own
        ]

    def down(self) -> None:
        self.http.close()
        env = {**os.environ, "CP_STATE_DIR": str(self.state / "cp")}
        subprocess.run(["bash", str(SCRIPT), "down"], env=env, capture_output=True, check=False, timeout=120)

    def kubectl(self, *args: str, input: str | None = None) -> str:
        bin_dir = subprocess.run(
            ["bash", str(SCRIPT), "bin-dir"], capture_output=True, text=True, check=True
        ).stdout.strip()
        return subprocess.run(
            [f"{bin_dir}/kubectl", "--kubeconfig", self.kubeconfig, *args],
            input=input,
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        ).stdout

    def namespace(self, name: str) -> None:
        self.http.post("/api/v1/namespaces", json={"metadata": {"name": name}}).raise_for_status()
        self.http.post(
            f"/api/v1/namespaces/{name}/secrets",
            json={
                "metadata": {"name": "kms-credentials"},
                "type": "Opaque",
                "stringData": {"AccessKeyId": AK_ID, "AccessKeySecret": AK_SECRET},
            },
        ).raise_for_status()

    def path(self, namespace: str, name: str = "") -> str:
        base = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
        return f"{base}/{name}" if name else base

    def client(self) -> httpx.Client:
        """A client of this thread's own: the load generator writes from several threads, and one
        httpx.Client shared by them mixed up TLS records under load (SSL: WRONG_VERSION_NUMBER)."""
        client: httpx.Client | None = getattr(_local, "client", None)
        if client is None:
            client = _local.client = httpx.Client(**self.async_args)
        return client

    def create(self, namespace: str, name: str, spec: dict[str, Any]) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "SecretStagePromotion",
            "metadata": {"name": name},
            "spec": spec,
        }
        self.client().post(self.path(namespace), json=body).raise_for_status()


class Watcher:
    """Records, from one watch stream, when each promotion first reached phase Succeeded (or Failed)."""

    def __init__(self, plane: Plane, namespace: str) -> None:
        self.done: dict[str, float] = {}
        self.failed: dict[str, Any] = {}
        self._cond = threading.Condition()
        self._stop = False
        self._client = httpx.Client(**{**plane.async_args, "timeout": httpx.Timeout(10, read=None)})
        self._url = plane.path(namespace)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        rv = None
        while rv is None and not self._stop:  # a CRD just Established can still answer 404 for a moment
            rv = self._list()
            if rv is None:
                time.sleep(0.1)
        while not self._stop:
            try:
                # The server ends each watch after a second, so that stop() can wait for this thread
                # instead of closing the client under it: a socket closed while this thread reads it
                # lets TLS read from whatever connection gets its descriptor number next (another
                # thread's handshake then failed with SSL WRONG_VERSION_NUMBER).
                params = {"watch": "1", "resourceVersion": rv, "allowWatchBookmarks": "true", "timeoutSeconds": "1"}
                with self._client.stream("GET", self._url, params=params) as r:
                    for line in r.iter_lines():
                        if self._stop:
                            return
                        event = json.loads(line)
                        obj = event["object"]
                        if event.get("type") == "ERROR":  # 410 Gone: too far behind; list again
                            rv = self._list()
                            break
                        rv = obj["metadata"].get("resourceVersion", rv)
                        self._record(obj)
            except (httpx.HTTPError, json.JSONDecodeError):
                time.sleep(0.1)

    def _list(self) -> str | None:
        """Record what is already final; the resourceVersion to watch from (None: not listable yet)."""
        listed = self._client.get(self._url).json()
        for obj in listed.get("items") or []:
            self._record(obj)
        rv = listed.get("metadata", {}).get("resourceVersion")
        return str(rv) if rv is not None else None

    def _record(self, obj: dict[str, Any]) -> None:
        phase = (obj.get("status") or {}).get("phase")
        name = obj["metadata"].get("name")
        if phase in ("Succeeded", "Failed") and name not in self.done:
            with self._cond:
                self.done[name] = time.monotonic()
                if phase == "Failed":
                    self.failed[name] = obj["status"].get("lastError")
                self._cond.notify_all()

    def wait(self, names: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not all(n in self.done for n in names):
                left = deadline - time.monotonic()
                if left <= 0:
                    missing = [n for n in names if n not in self.done]
                    raise TimeoutError(f"{len(missing)} promotions not finished, e.g. {missing[:3]}")
                self._cond.wait(left)

    def stop(self) -> None:
        self._stop = True
        self._thread.join(30)
        self._client.close()


class Proc:
    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = open(log, "ab")  # noqa: SIM115
        self.popen = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log, env={**os.environ, **(env or {})})
        self.ps = psutil.Process(self.popen.pid)
        self.started = time.monotonic()
        self.healthy_s: float | None = None  # process start to /healthz answering (the operator)

    def rss_mib(self) -> float:
        return self.ps.memory_info().rss / (1024 * 1024)

    def cpu_s(self) -> float:
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def stop(self) -> None:
        self.popen.terminate()
        try:
            self.popen.wait(20)
        except subprocess.TimeoutExpired:
            self.popen.kill()
        if self.popen.stdout:
            self.popen.stdout.close()
        self.log.close()


def emulator(state: Path) -> tuple[Proc, str, httpx.Client]:
    proc = Proc(
        [
            sys.executable,
            "-m",
            "secretstage.cli",
            "--log-level",
            "WARNING",
            "emulator",
            "--port",
            "0",
            "--access-key-id",
            AK_ID,
        ],
        state / "emulator.log",
        {"SECRETSTAGE_EMULATOR_ACCESS_KEY_SECRET": AK_SECRET},
    )
    assert proc.popen.stdout is not None
    url = proc.popen.stdout.readline().decode().strip().removeprefix("listening on ")
    return proc, url, httpx.Client(base_url=url, timeout=30)


def operator(
    plane: Plane, url: str, namespace: str, name: str, *extra: str, source: Path | None = None, **env: str
) -> Proc:
    """The operator as a process, watching ``namespace`` (comma-separated for several, "" for all); ``extra`` flags
    come last (they win). ``source``: run the package from that folder instead (another revision's
    ``operator/``, for a before/after)."""
    health = free_port()
    if source is not None:
        env = {**env, "PYTHONPATH": str(source)}
    watch = [arg for ns in namespace.split(",") if ns for arg in ("--namespace", ns)]  # "": all namespaces
    proc = Proc(
        [
            sys.executable,
            "-m",
            "secretstage.cli",
            "--log-level",
            "WARNING",
            "run",
            *watch,
            "--endpoint-allow",
            re.escape(url),
            "--metrics-port",
            "0",
            "--health-port",
            str(health),
            "--kms-rate-limit",
            "100000",
            "--kms-burst",
            "1000",
            *extra,
        ],
        plane.state / f"{name}.log",
        {"KUBECONFIG": plane.kubeconfig, **env},
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{health}/healthz", timeout=1).status_code == 200:
                proc.healthy_s = time.monotonic() - proc.started
                return proc
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"operator did not start; see {plane.state / f'{name}.log'}")
