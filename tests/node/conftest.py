"""A control plane with a real node (kubelet, containerd, kube-proxy, kube-scheduler), and the operator image.

One node per machine: these fixtures are session-scoped, so the node tests of a run share one node,
and hack/node.sh refuses a second node while another run's is up. The host is compared before
bringing the node up and after tearing it down: nothing may be left running or changed.
"""

from __future__ import annotations

import os
import re
import ssl
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cluster import Cluster, control_plane, dedicated_control_plane
from tests.harness import EmulatorProcess
from tests.support import ROOT


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/node/" in str(item.fspath):
            item.add_marker(pytest.mark.k8s)
            item.add_marker(pytest.mark.node)


def host_footprint() -> dict[str, object]:
    """What the node may change on the host, as comparable text (iptables without counters)."""

    def run(*args: str) -> str:
        result = subprocess.run(args, capture_output=True, text=True, check=False)
        return result.stdout

    # Rules and chains of our own only: a table with nothing but its built-in chains at policy ACCEPT
    # is what iptables-save prints once the kernel has loaded it at all (the first node run after a
    # boot loads it), not a change the node left.
    builtin = re.compile(r"^:(INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) ACCEPT$")
    iptables = sorted(
        line.split(" [")[0]
        for line in run("iptables-save").splitlines()
        if line.startswith(("-A", ":")) and not builtin.match(line.split(" [")[0])
    )
    links = sorted(line.split(":")[1].strip().split("@")[0] for line in run("ip", "-o", "link").splitlines())
    mounts = sorted(line.split()[1] for line in Path("/proc/mounts").read_text().splitlines())
    cgroups = sorted(str(p) for p in Path("/sys/fs/cgroup").glob("*/kubepods"))
    processes = sorted(
        name
        for name in ("kubelet", "containerd", "kube-proxy", "kube-scheduler", "containerd-shim-runc-v2")
        if subprocess.run(["pgrep", "-x", name], capture_output=True, check=False).returncode == 0
    )
    sysctls = {
        key: run("sysctl", "-n", key).strip()
        for key in ("net.ipv4.ip_forward", "vm.overcommit_memory", "kernel.panic", "kernel.panic_on_oops")
    }
    paths = {p: os.path.exists(p) for p in ("/var/lib/kubelet", "/var/log/containers", "/var/lib/cni")}
    return {
        "iptables": iptables,
        "links": links,
        "mounts": mounts,
        "cgroups": cgroups,
        "processes": processes,
        "sysctls": sysctls,
        "paths": paths,
    }


@pytest.fixture(scope="session")
def node_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if os.geteuid() != 0:
        pytest.skip("a real node needs root (kubelet, containerd, iptables); CI runs as root")
    env = dict(os.environ)
    state = tmp_path_factory.mktemp("node-plane")
    env["CP_STATE_DIR"] = str(state)
    control_plane("build", "--with-node", env=env, timeout=3600)
    bin_dir = control_plane("bin-dir", env=env, timeout=30).strip()
    subprocess.run(["bash", str(ROOT / "hack" / "node.sh"), "deps"], check=True, capture_output=True, timeout=900)
    # a node an earlier, killed run abandoned would otherwise count as this one's footprint
    subprocess.run(["bash", str(ROOT / "hack" / "node.sh"), "reclaim"], check=True, env=env, timeout=300)
    before = host_footprint()
    with dedicated_control_plane(state, bin_dir, "--with-node", up_timeout=600, down_timeout=300) as (node, _):
        yield node
    after = host_footprint()
    changed = {key: (before[key], after[key]) for key in before if before[key] != after[key]}
    assert not changed, f"the node left the host changed: {changed}"


@dataclass
class Image:
    repository: str
    tag: str
    archive: Path
    size: str


@pytest.fixture(scope="session")
def operator_image(node_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Image]:
    """The repository's Dockerfile built here (hack/image.sh) and imported into the node's containerd."""
    tag = "test-" + uuid.uuid4().hex[:8]
    env = {**os.environ, "IMAGE_DIR": str(tmp_path_factory.mktemp("image"))}
    build = subprocess.run(
        ["bash", str(ROOT / "hack" / "image.sh"), "build", tag],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
        check=False,
    )
    assert build.returncode == 0, build.stderr[-4000:]
    archive = Path(build.stdout.strip().splitlines()[-1])
    size = next((line.split(": ")[-1] for line in build.stderr.splitlines() if "built localhost/" in line), "?")
    print(f"operator image {tag}: {size}")
    import_image(node_cluster, archive)
    yield Image("localhost/secretstage/secretstage-operator", tag, archive, size)
    # this run's images (and retagged copies) out of the buildah storage: each is a full copy there
    subprocess.run(
        ["bash", str(ROOT / "hack" / "image.sh"), "rm", tag, *RETAGGED],
        capture_output=True,
        timeout=300,
        check=False,
    )


RETAGGED: list[str] = []  # tags made by retag(), removed with the image


def import_image(cluster: Cluster, archive: Path) -> None:
    assert cluster.state_dir is not None
    subprocess.run(
        ["bash", str(ROOT / "hack" / "node.sh"), "import", str(archive)],
        env={**os.environ, "CP_STATE_DIR": str(cluster.state_dir), "BIN": cluster.bin_dir},
        check=True,
        capture_output=True,
        timeout=300,
    )


def retag(image: Image, tag: str, workdir: Path) -> Image:
    out = subprocess.run(
        ["bash", str(ROOT / "hack" / "image.sh"), "retag", image.tag, tag],
        capture_output=True,
        text=True,
        env={**os.environ, "IMAGE_DIR": str(workdir)},
        timeout=600,
        check=True,
    )
    RETAGGED.append(tag)
    return Image(image.repository, tag, Path(out.stdout.strip().splitlines()[-1]), image.size)


def certificates(directory: Path, ip: str) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate for ``ip`` signed by it (for the emulator's https)."""
    ca_key, ca, key, csr, cert = (directory / n for n in ("ca.key", "ca.crt", "tls.key", "tls.csr", "tls.crt"))

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(ca_key))
    openssl("req", "-x509", "-new", "-key", str(ca_key), "-subj", "/CN=emulator-ca", "-days", "1", "-out", str(ca))
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key))
    openssl("req", "-new", "-key", str(key), "-subj", "/CN=kms-emulator", "-out", str(csr))
    ext = directory / "ext.cnf"
    ext.write_text(f"subjectAltName=IP:{ip}\nextendedKeyUsage=serverAuth\n")
    openssl(
        *("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial"),
        *("-days", "1", "-extfile", str(ext), "-out", str(cert)),
    )
    return ca, cert, key


@pytest.fixture(scope="module")
def tls_emulator(node_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    workdir = tmp_path_factory.mktemp("tls-emulator")
    node_ip = node_cluster.env["NODE_IP"]
    ca, cert, key = certificates(workdir, node_ip)
    emulator = EmulatorProcess(
        workdir,
        *("--host", node_ip, "--tls-cert", str(cert), "--tls-key", str(key)),
        verify=ssl.create_default_context(cafile=str(ca)),
    )
    emulator.ca_file = ca  # type: ignore[attr-defined]
    yield emulator
    emulator.stop()
