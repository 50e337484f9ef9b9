"""docs/getting-started.md, run as written: every ``bash`` block, in order, in one shell.

What stands in for the world outside this machine, and only that:
* Alibaba Cloud KMS is the emulator, on the node's address over https (a plain AccessKey, as a RAM
  user's), holding ``payments/db-password`` with v1 (ACSCurrent) and v2 (ACSPending);
* ``helm`` reads the chart from this checkout instead of the OCI registry and is given the image
  built here (no registry) and the emulator as every region's endpoint (values below);
* ``pipx install`` checks the version asked for and uses the CLI of this checkout;
* ``kubectl secretstage versions --region R`` is pointed at the emulator (``--endpoint``, ``--ca-file``).
kubectl, the operator, its image, the chart and the CLI are the real ones.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.cluster import Cluster
from tests.harness import CHART, E2E_KEY_ID, E2E_KEY_SECRET, EmulatorProcess
from tests.node.conftest import Image, certificates
from tests.support import LOG_FILES, ROOT

GUIDE = ROOT / "docs" / "getting-started.md"
OCI = "oci://ghcr.io/secretstage/charts/secretstage-operator"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
PLACEHOLDERS = {"<AccessKey ID>": E2E_KEY_ID, "<AccessKey secret>": E2E_KEY_SECRET}
SECRET = "payments/db-password"


def guide_blocks() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", GUIDE.read_text(), re.S)
    assert len(blocks) >= 10, "the guide lost its runnable blocks"
    return blocks


def _executable(path: Path, source: str) -> None:
    path.write_text(source)
    path.chmod(0o755)


@pytest.fixture(scope="module")
def kms(node_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    import ssl

    workdir = tmp_path_factory.mktemp("guide-kms")
    ca, cert, key = certificates(workdir, node_cluster.env["NODE_IP"])
    emulator = EmulatorProcess(
        workdir,
        *("--host", node_cluster.env["NODE_IP"], "--tls-cert", str(cert), "--tls-key", str(key)),
        verify=ssl.create_default_context(cafile=str(ca)),
        security_token=False,
    )
    emulator.ca_file = ca  # type: ignore[attr-defined]
    emulator.seed(SECRET, "v1", "v2", pending="ACSPending")
    yield emulator
    emulator.stop()


@pytest.fixture
def world(
    node_cluster: Cluster, operator_image: Image, kms: EmulatorProcess, tmp_path: Path
) -> Iterator[dict[str, str]]:
    """PATH with the stand-ins above in front of the real tools, and the environment the guide runs in."""
    cluster, bin_dir = node_cluster, tmp_path / "bin"
    bin_dir.mkdir()
    ca = str(kms.ca_file)  # type: ignore[attr-defined]
    values = tmp_path / "test-values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "image": {"repository": operator_image.repository, "tag": operator_image.tag, "pullPolicy": "Never"},
                "operator": {"kmsEndpointTemplate": kms.url, "endpointAllow": [re.escape(kms.url)]},
                "kmsCABundle": {"configMapName": "kms-ca"},
            }
        )
    )
    helm, kubectl = os.path.join(cluster.bin_dir, "helm"), os.path.join(cluster.bin_dir, "kubectl")
    python = sys.executable
    _executable(
        bin_dir / "helm",
        f"""#!{python}
import os, subprocess, sys
argv = sys.argv[1:]
if {OCI!r} in argv:
    i = argv.index({OCI!r})
    argv[i] = {str(CHART)!r}
    if "--version" in argv:
        v = argv.index("--version")
        assert argv[v + 1] == {VERSION!r}, "the guide installs --version " + argv[v + 1]
        del argv[v : v + 2]
    if argv[:1] == ["upgrade"]:
        # the emulator's CA, as a private endpoint's would be given (docs/install.md, kmsCABundle)
        def apply(*create):
            made = subprocess.run([{kubectl!r}, *create, "--dry-run=client", "-o", "yaml"],
                                  capture_output=True, text=True, check=True).stdout
            subprocess.run([{kubectl!r}, "apply", "-f", "-"], input=made, text=True, check=True, capture_output=True)
        apply("create", "namespace", "secretstage-system")
        apply("-n", "secretstage-system", "create", "configmap", "kms-ca", "--from-file=ca.crt={ca}")
        argv += ["-f", {str(values)!r}]
os.execv({helm!r}, [{helm!r}, *argv])
""",
    )
    real_cli = str(Path(python).parent / "kubectl-secretstage")
    _executable(
        bin_dir / "kubectl-secretstage",
        f"""#!{python}
import os, sys
argv = sys.argv[1:]
if "--region" in argv:
    i = argv.index("--region")
    argv[i : i + 2] = ["--endpoint", {kms.url!r}, "--ca-file", {ca!r}]
os.execv({real_cli!r}, [{real_cli!r}, *argv])
""",
    )
    _executable(
        bin_dir / "pipx",
        f"""#!/bin/sh
[ "$*" = "install secretstage-operator=={VERSION}" ] || {{ echo "pipx stand-in: unexpected: $*" >&2; exit 2; }}
echo "installed package secretstage-operator {VERSION} (the CLI of this checkout)"
""",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALIBABA_CLOUD_", "SECRETSTAGE_"))}
    env |= {
        "PATH": f"{bin_dir}:{cluster.bin_dir}:/usr/bin:/bin",
        "KUBECONFIG": cluster.kubeconfig,
        "HOME": str(tmp_path),
    }
    namespaces = ["payments", "secretstage-system"]  # the guide's; tests/node/test_node.py creates them afresh
    delete = [kubectl, "delete", "namespace", *namespaces, "--ignore-not-found", "--wait", "--timeout=180s"]
    subprocess.run(delete, env=env, check=True)
    yield env
    # what the guide left, also when it stopped half-way: the release, then both namespaces, gone
    subprocess.run(
        [helm, "uninstall", "secretstage-operator", "-n", "secretstage-system", "--wait"], env=env, check=False
    )
    subprocess.run(delete, env=env, check=True)


def test_the_getting_started_guide_runs_as_written(
    world: dict[str, str], kms: EmulatorProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = ["set -euo pipefail"]
    for number, block in enumerate(guide_blocks(), 1):
        for placeholder, value in PLACEHOLDERS.items():
            block = block.replace(placeholder, value)
        script += [f"echo '### block {number}'", block]
    log = tmp_path / "guide.log"
    LOG_FILES.append(log)  # the leak scan reads it: the AccessKey secret must not show
    with open(log, "w") as out:
        result = subprocess.run(
            ["bash", "-c", "\n".join(script)],
            cwd=tmp_path,
            env=world,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=900,
            check=False,
        )
    output = log.read_text()
    with capsys.disabled():
        print(f"\n--- docs/getting-started.md as run ---\n{output[-6000:]}")
    assert result.returncode == 0, f"the guide stopped: {output[-3000:]}"

    def block(number: int) -> str:
        start = output.index(f"### block {number}\n")
        end = output.find("### block ", start + 1)
        return output[start : end if end != -1 else None]

    assert f"secretstage {VERSION}" in block(2)  # the plugin answers as kubectl secretstage
    assert "ok: move ACSCurrent from v1 to v2" in block(4)  # the dry run planned it, nothing moved then
    assert re.search(r"v1\s+\S+\s+ACSCurrent", block(5))
    assert re.search(r"v2\s+\S+\s+ACSPending", block(5))
    assert "Reason:     Promoted" in block(7)
    assert re.search(r"v2\s+\S+\s+ACSCurrent", block(7))  # read back from KMS
    assert re.search(r"v1\s+\S+\s+ACSCurrent", block(8))  # rolled back
    assert block(9).strip().endswith("AlreadyInPlace")
    assert kms.holder(SECRET, "ACSCurrent") == "v1"
    assert kms.applied_for(SECRET) == 2  # the promotion and its rollback; the re-apply sent nothing
