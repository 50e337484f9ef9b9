"""The operator as users run it, on this machine (`make demo-node`; root).

A control plane with a real node (containerd, kubelet, kube-proxy, kube-scheduler), the operator
image built from the Dockerfile and imported into the node, the chart installed with helm as
docs/install.md says, the KMS emulator on the host over https, examples/promotion.yaml promoted by
the operator pod, and `helm test`. Leaves everything running until Ctrl-C (or exits at once when
stdin is not a terminal, as in CI), then uninstalls and stops the node, restoring the host.
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

import yaml
from demo import ROOT, SECRET, run, say

STATE = ROOT / ".demo-node"
NAMESPACE, RELEASE_NS, RELEASE = "secretstage-demo", "secretstage-system", "secretstage-operator"
AK_ID = "LTAIdemoAccessKey"
PORT = int(os.environ.get("SECRETSTAGE_DEMO_PORT", "8443"))
TAG = "demo"


def main() -> int:
    if os.geteuid() != 0:
        sys.exit("demo-node: a real node needs root (kubelet, containerd, iptables)")
    STATE.mkdir(exist_ok=True)
    cp_env = {"CP_STATE_DIR": str(STATE / "control-plane"), "IMAGE_DIR": str(STATE / "image")}
    processes: list[subprocess.Popen[bytes]] = []
    bin_dir = run("bash", str(ROOT / "hack/control-plane.sh"), "bin-dir").strip()
    secretstage = [sys.executable, "-m", "secretstage.cli"]
    kubectl = [os.path.join(bin_dir, "kubectl")]
    helm = [os.path.join(bin_dir, "helm")]

    def cleanup() -> None:
        say("cleaning up: helm uninstall, emulator, node and control plane (the host is restored)")
        subprocess.run([*helm, "uninstall", RELEASE, "-n", RELEASE_NS], check=False, capture_output=True)
        for p in processes:
            p.terminate()
            p.wait(20)
        subprocess.run(["bash", str(ROOT / "hack/control-plane.sh"), "down"], env={**os.environ, **cp_env}, check=False)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        say("starting the control plane and a real node (first run builds and installs what they need)")
        out = run("bash", str(ROOT / "hack/control-plane.sh"), "up", "--with-node", env=cp_env)
        kubeconfig = re.search(r"export KUBECONFIG=(\S+)", out).group(1)  # type: ignore[union-attr]
        node_ip = re.search(r"NODE_IP=(\S+)", out).group(1)  # type: ignore[union-attr]
        kubectl += ["--kubeconfig", kubeconfig]
        helm += ["--kubeconfig", kubeconfig]

        say("building the operator image from the Dockerfile (buildah, on a Python base made from Debian packages)")
        archive = run("bash", str(ROOT / "hack/image.sh"), "build", TAG, env=cp_env).strip().splitlines()[-1]
        run("bash", str(ROOT / "hack/node.sh"), "import", archive, env={**cp_env, "BIN": bin_dir})

        say(f"starting the KMS emulator on {node_ip}:{PORT} over https (pods reach it there)")
        pki = STATE / "pki"
        pki.mkdir(exist_ok=True)
        for args in (
            ("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{pki}/ca.key"),
            (
                "req",
                "-x509",
                "-new",
                "-key",
                f"{pki}/ca.key",
                "-subj",
                "/CN=demo-ca",
                "-days",
                "2",
                "-out",
                f"{pki}/ca.crt",
            ),
            ("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{pki}/tls.key"),
            ("req", "-new", "-key", f"{pki}/tls.key", "-subj", "/CN=kms-emulator", "-out", f"{pki}/tls.csr"),
        ):
            run("openssl", *args)
        (pki / "ext.cnf").write_text(f"subjectAltName=IP:{node_ip}\nextendedKeyUsage=serverAuth\n")
        run(
            "openssl",
            "x509",
            "-req",
            "-in",
            f"{pki}/tls.csr",
            "-CA",
            f"{pki}/ca.crt",
            "-CAkey",
            f"{pki}/ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            f"{pki}/ext.cnf",
            "-out",
            f"{pki}/tls.crt",
        )
        demo_secret = secrets.token_urlsafe(24)
        emulator = subprocess.Popen(
            [
                *secretstage,
                "emulator",
                "--host",
                node_ip,
                "--port",
                str(PORT),
                "--access-key-id",
                AK_ID,
                "--tls-cert",
                f"{pki}/tls.crt",
                "--tls-key",
                f"{pki}/tls.key",
            ],
            stdout=subprocess.PIPE,
            stderr=open(STATE / "emulator.log", "wb"),  # noqa: SIM115
            env={**os.environ, "SECRETSTAGE_EMULATOR_ACCESS_KEY_SECRET": demo_secret},
        )
        processes.append(emulator)
        assert emulator.stdout is not None
        url = emulator.stdout.readline().decode().strip().removeprefix("listening on ")
        if not url.startswith("https://"):
            sys.exit(f"demo-node: the emulator did not start (port {PORT} busy?); see {STATE / 'emulator.log'}")
        creds_env = {
            "ALIBABA_CLOUD_ACCESS_KEY_ID": AK_ID,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": demo_secret,
            "SSL_CERT_FILE": f"{pki}/ca.crt",
        }
        seed = (
            "import asyncio, httpx, ssl\nfrom secretstage.kms import KmsClient, default_provider\n"
            "async def main():\n"
            f"    http = httpx.AsyncClient(verify=ssl.create_default_context(cafile={str(pki / 'ca.crt')!r}))\n"
            f"    async with KmsClient(endpoint={url!r}, credentials=default_provider(), http=http) as c:\n"
            f"        await c.create_secret({SECRET!r}, 'v1', 'old-password-' + 'x' * 8)\n"
            f"        await c.put_secret_value({SECRET!r}, 'v2', 'rotated-password-' + 'y' * 8,"
            " version_stages=['ACSPending'])\n"
            "    await http.aclose()\n"
            "asyncio.run(main())\n"
        )
        run(sys.executable, "-c", seed, env=creds_env)

        say("namespaces (Pod Security: restricted), credentials, the emulator's CA")
        for ns in (RELEASE_NS, NAMESPACE):
            run(*kubectl, "create", "namespace", ns)
            run(*kubectl, "label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
            run(
                *kubectl,
                "-n",
                ns,
                "create",
                "secret",
                "generic",
                "kms-credentials",
                f"--from-literal=AccessKeyId={AK_ID}",
                f"--from-literal=AccessKeySecret={demo_secret}",
            )
        run(*kubectl, "-n", RELEASE_NS, "create", "configmap", "kms-ca", f"--from-file=ca.crt={pki}/ca.crt")
        values = STATE / "values.yaml"
        values.write_text(
            yaml.safe_dump(
                {
                    "image": {
                        "repository": "localhost/secretstage/secretstage-operator",
                        "tag": TAG,
                        "pullPolicy": "Never",
                    },
                    "operator": {"endpointAllow": [re.escape(url)], "logFormat": "text"},
                    "kmsCABundle": {"configMapName": "kms-ca"},
                    "tests": {
                        "secretName": SECRET,
                        "moveToVersion": "v2",
                        "endpoint": url,
                        "credentialsSecret": "kms-credentials",
                    },
                }
            )
        )
        say("helm install (the operator pod starts on the node)")
        run(
            *helm,
            "install",
            RELEASE,
            str(ROOT / "helm/secretstage-operator"),
            "-n",
            RELEASE_NS,
            "-f",
            str(values),
            "--wait",
            "--timeout",
            "3m",
        )
        print(run(*kubectl, "-n", RELEASE_NS, "get", "pods", "-o", "wide"))

        say("applying examples/promotion.yaml")
        promotion = yaml.safe_load((ROOT / "examples/promotion.yaml").read_text())
        promotion["spec"]["endpoint"] = url
        promotion["metadata"]["namespace"] = NAMESPACE
        run(*kubectl, "apply", "-f", "-", input=json.dumps(promotion))
        name = promotion["metadata"]["name"]
        run(*kubectl, "-n", NAMESPACE, "wait", "--for=condition=Succeeded", f"ssp/{name}", "--timeout=120s")
        print(run(*kubectl, "-n", NAMESPACE, "get", "ssp"))
        say("helm test (a dry run from a pod of the operator's own image)")
        print(run(*helm, "test", RELEASE, "-n", RELEASE_NS, "--logs", "--timeout", "3m"))
        say("look around:")
        print(
            f"  export KUBECONFIG={kubeconfig}\n  {kubectl[0]} -n {RELEASE_NS} logs deploy/{RELEASE}\n"
            f"  {kubectl[0]} -n {NAMESPACE} describe ssp {name}"
        )
        if sys.stdin.isatty() and not os.environ.get("CI"):
            say("everything keeps running; press Ctrl-C to stop and clean up")
            while emulator.poll() is None:
                time.sleep(1)
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        cleanup()


if __name__ == "__main__":
    sys.exit(main())
