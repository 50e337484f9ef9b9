"""The main job: control plane + KMS emulator + operator + a sample promotion (`make demo`).

Starts everything on this machine, applies examples/promotion.yaml, waits for it, prints the final
status and the stage placement read from the emulator, then leaves everything running until Ctrl-C
(or exits at once when stdin is not a terminal, as in CI) and cleans up.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / ".demo"
NAMESPACE = "secretstage-demo"
SECRET = "demo/db-password"
AK_ID = "LTAIdemoAccessKey"
PORT = int(os.environ.get("SECRETSTAGE_DEMO_PORT", "8079"))


def say(message: str) -> None:
    print(f"\033[1m==> {message}\033[0m" if sys.stdout.isatty() else f"==> {message}", flush=True)


def run(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> str:
    result = subprocess.run(
        args, capture_output=True, text=True, env={**os.environ, **(env or {})}, input=input, check=False, timeout=600
    )
    if result.returncode != 0:
        sys.exit(f"demo: {' '.join(args[:3])} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def wait_until(what: str, check: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:
            last = exc
        time.sleep(0.2)
    sys.exit(f"demo: timed out waiting for {what} (last error: {last})")


def main() -> int:
    STATE.mkdir(exist_ok=True)
    processes: list[subprocess.Popen[bytes]] = []
    external = os.environ.get("SECRETSTAGE_KUBECONFIG")
    cp_env = {"CP_STATE_DIR": str(STATE / "control-plane")}
    bin_dir = run("bash", str(ROOT / "hack/control-plane.sh"), "bin-dir").strip()
    kubectl = [os.path.join(bin_dir, "kubectl")]
    secretstage = [sys.executable, "-m", "secretstage.cli"]

    def cleanup(*_: object) -> None:
        say("cleaning up")
        for p in reversed(processes):
            p.terminate()
        for p in processes:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        if not external:
            subprocess.run(
                ["bash", str(ROOT / "hack/control-plane.sh"), "down"],
                env={**os.environ, **cp_env},
                check=False,
                capture_output=True,
            )

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        if external:
            say(f"using the cluster in SECRETSTAGE_KUBECONFIG={external}")
            kubeconfig = external
        else:
            say("starting the control plane (kube-apiserver + etcd + kube-controller-manager; first run builds them)")
            out = run("bash", str(ROOT / "hack/control-plane.sh"), "up", env=cp_env)
            kubeconfig = re.search(r"export KUBECONFIG=(\S+)", out).group(1)  # type: ignore[union-attr]
        kubectl += ["--kubeconfig", kubeconfig]

        demo_secret = secrets.token_urlsafe(24)
        emu_env = {"SECRETSTAGE_EMULATOR_ACCESS_KEY_SECRET": demo_secret}
        say(f"starting the KMS emulator on 127.0.0.1:{PORT}")
        emulator = subprocess.Popen(
            [*secretstage, "emulator", "--port", str(PORT), "--access-key-id", AK_ID],
            stdout=subprocess.PIPE,
            stderr=open(STATE / "emulator.log", "wb"),  # noqa: SIM115
            env={**os.environ, **emu_env},
        )
        processes.append(emulator)
        assert emulator.stdout is not None
        line = emulator.stdout.readline().decode().strip()
        if not line.startswith("listening on "):
            sys.exit(
                f"demo: the emulator did not start (port {PORT} busy? set SECRETSTAGE_DEMO_PORT); "
                f"see {STATE / 'emulator.log'}"
            )
        url = line.removeprefix("listening on ")
        creds_env = {"ALIBABA_CLOUD_ACCESS_KEY_ID": AK_ID, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": demo_secret}
        seed = (
            "import asyncio\nfrom secretstage.kms import KmsClient, default_provider\n"
            "async def main():\n"
            f"    async with KmsClient(endpoint={url!r}, credentials=default_provider()) as c:\n"
            f"        await c.create_secret({SECRET!r}, 'v1', 'old-password-' + 'x' * 8)\n"
            f"        await c.put_secret_value({SECRET!r}, 'v2', 'rotated-password-' + 'y' * 8,"
            " version_stages=['ACSPending'])\n"
            "asyncio.run(main())\n"
        )
        run(sys.executable, "-c", seed, env=creds_env)
        say(f"secret {SECRET} in the emulator, before the promotion:")
        print(run(*secretstage, "versions", SECRET, "--endpoint", url, env=creds_env))

        say("installing the CRD, the namespace and the credentials Secret")
        run(*kubectl, "apply", "-f", str(ROOT / "crds"))
        run(*kubectl, "wait", "--for=condition=Established", "crd/secretstagepromotions.secretstage.io")
        run(
            *kubectl,
            "apply",
            "-f",
            "-",
            input=run(*kubectl, "create", "namespace", NAMESPACE, "--dry-run=client", "-o", "yaml"),
        )
        secret_manifest = run(
            *kubectl,
            "-n",
            NAMESPACE,
            "create",
            "secret",
            "generic",
            "kms-credentials",
            f"--from-literal=AccessKeyId={AK_ID}",
            f"--from-literal=AccessKeySecret={demo_secret}",
            "--dry-run=client",
            "-o",
            "yaml",
        )
        run(*kubectl, "apply", "-f", "-", input=secret_manifest)

        say("starting the operator")
        operator = subprocess.Popen(
            [
                *secretstage,
                "run",
                "--namespace",
                NAMESPACE,
                "--endpoint-allow",
                re.escape(url),
                "--metrics-port",
                "0",
                "--health-port",
                "0",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(STATE / "operator.log", "wb"),  # noqa: SIM115
            env={**os.environ, "KUBECONFIG": kubeconfig},
        )
        processes.append(operator)

        say("applying examples/promotion.yaml")
        promotion = yaml.safe_load((ROOT / "examples/promotion.yaml").read_text())
        promotion["spec"]["endpoint"] = url
        run(*kubectl, "apply", "-f", "-", input=json.dumps(promotion))
        name = promotion["metadata"]["name"]
        run(*kubectl, "-n", NAMESPACE, "wait", "--for=condition=Succeeded", f"ssp/{name}", "--timeout=120s")
        print(run(*kubectl, "-n", NAMESPACE, "get", "ssp"))
        status = json.loads(run(*kubectl, "-n", NAMESPACE, "get", "ssp", name, "-o", "json"))["status"]
        say("final status:")
        print(yaml.safe_dump(status, sort_keys=False))
        say(f"secret {SECRET} in the emulator, after the promotion:")
        print(run(*secretstage, "versions", SECRET, "--endpoint", url, env=creds_env))
        say("look around:")
        print(
            f"  export KUBECONFIG={kubeconfig}\n  {kubectl[0]} get ssp -n {NAMESPACE}\n"
            f"  {kubectl[0]} describe ssp {name} -n {NAMESPACE}\n  logs: {STATE}/operator.log, {STATE}/emulator.log"
        )
        if sys.stdin.isatty() and not os.environ.get("CI"):
            say("everything keeps running; press Ctrl-C to stop and clean up")
            while all(p.poll() is None for p in processes):
                time.sleep(1)
            say("a process exited; see the logs above")
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        cleanup()


if __name__ == "__main__":
    sys.exit(main())
