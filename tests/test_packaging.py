"""The Dockerfile cannot be built here (no Docker engine), so: lint it, and run what it would run."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

from tests.support import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_hadolint_is_clean() -> None:
    hadolint = shutil.which("hadolint") or os.path.join(os.path.dirname(sys.executable), "hadolint")
    result = subprocess.run(
        [hadolint, "--failure-threshold", "info", str(ROOT / "Dockerfile")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _instruction(name: str) -> list[str]:
    match = re.search(rf"^{name} (\[.*\])$", DOCKERFILE, re.M)
    assert match, f"no exec-form {name} in the Dockerfile"
    return list(json.loads(match.group(1)))


def test_image_settings_match_the_chart() -> None:
    user = re.findall(r"^USER (\d+):(\d+)$", DOCKERFILE, re.M)
    assert user == [("65532", "65532")]
    values = yaml.safe_load((ROOT / "helm/secretstage-operator/values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == 65532
    assert values["podSecurityContext"]["runAsGroup"] == 65532
    assert values["securityContext"]["readOnlyRootFilesystem"] is True
    assert "PYTHONDONTWRITEBYTECODE=1" in DOCKERFILE
    assert re.search(r"^FROM \$\{PYTHON_IMAGE\}$", DOCKERFILE, re.M)  # final stage: no build tools added
    # pinned patch version, slim, and by digest: a re-pushed tag cannot change what a build gets
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}$", DOCKERFILE, re.M)
    for label in ("version", "revision", "created", "source", "licenses"):
        assert f"org.opencontainers.image.{label}=" in DOCKERFILE
    assert "--require-hashes -r /tmp/requirements.lock" in DOCKERFILE
    assert "ARG PIP_INDEX_URL=" in DOCKERFILE  # a PyPI mirror can be chosen at build time


def test_the_lock_pins_every_runtime_dependency_with_hashes() -> None:
    lock = (ROOT / "requirements.lock").read_text()
    pinned = dict(re.findall(r"^([a-z0-9][a-z0-9._-]*)==(\S+) \\$", lock, re.M | re.I))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"]:
        name = re.split(r"[\[<>=!~ ]", requirement, maxsplit=1)[0].lower()
        assert name in {n.lower() for n in pinned}, f"{name} is not in requirements.lock; run make lock"
    for block in re.split(r"\n(?=[a-z0-9])", lock, flags=re.I):
        if "==" in block:
            assert "--hash=sha256:" in block, block.splitlines()[0]


def test_wheel_installs_into_a_fresh_venv_and_the_entrypoint_starts(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(dist), str(ROOT)],
        check=True,
        timeout=600,
    )
    wheels = list(dist.glob("secretstage_operator-*.whl"))
    assert len(wheels) == 1
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # as the Dockerfile does: the locked dependencies, hashes checked, then the wheel alone; pip check
    # fails when pyproject.toml asks for something requirements.lock does not pin (run `make lock`)
    pip = str(venv / "bin/pip")
    lock = str(ROOT / "requirements.lock")
    subprocess.run([pip, "install", "--quiet", "--require-hashes", "-r", lock], check=True, timeout=900)
    subprocess.run([pip, "install", "--quiet", "--no-deps", str(wheels[0])], check=True, timeout=300)
    checked = subprocess.run([pip, "check"], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, f"requirements.lock does not satisfy the package; run make lock: {checked.stdout}"
    command = [str(venv / "bin" / _instruction("ENTRYPOINT")[0]), *_instruction("CMD")]
    env = {"PATH": str(venv / "bin"), "PYTHONDONTWRITEBYTECODE": "1", "HOME": str(tmp_path)}
    result = subprocess.run(
        [*command, "--help"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "--endpoint-allow" in result.stdout
    # a dry start with no cluster: fails fast and says why, instead of hanging
    result = subprocess.run(
        [*command, "--metrics-port", "0", "--health-port", "0"],
        capture_output=True,
        text=True,
        env={**env, "KUBECONFIG": str(tmp_path / "missing")},
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "no Kubernetes configuration" in result.stderr
    # nothing from the source tree leaks in: the package runs from the venv
    version = subprocess.run(
        [str(venv / "bin/secretstage"), "--version"], capture_output=True, text=True, env=env, cwd=tmp_path, check=True
    )
    assert version.stdout.strip() == f"secretstage {VERSION}"
    # pipx install puts kubectl-secretstage on PATH as well: kubectl finds it as the plugin
    plugin = subprocess.run(
        [str(venv / "bin/kubectl-secretstage"), "status", "--help"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert plugin.returncode == 0, plugin.stderr
    assert plugin.stdout.startswith("usage: kubectl secretstage status")


def test_krew_manifest_names_every_platform_and_the_archive() -> None:
    manifest = yaml.safe_load(
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "hack/kubectl_plugin.py"),
                "manifest",
                VERSION,
                "https://x/p.tar.gz",
                "ab" * 32,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert manifest["apiVersion"] == "krew.googlecontainertools.github.com/v1alpha2"
    assert manifest["metadata"]["name"] == "secretstage"  # kubectl secretstage
    assert manifest["spec"]["version"] == f"v{VERSION}"
    platforms = manifest["spec"]["platforms"]
    assert {(p["selector"]["matchLabels"]["os"], p["selector"]["matchLabels"]["arch"]) for p in platforms} == {
        ("linux", "amd64"),
        ("linux", "arm64"),
        ("darwin", "amd64"),
        ("darwin", "arm64"),
    }
    assert {(p["uri"], p["sha256"], p["bin"]) for p in platforms} == {
        ("https://x/p.tar.gz", "ab" * 32, "kubectl-secretstage")
    }


def test_versions_agree_everywhere() -> None:
    # the release workflow runs the same check on the tag (hack/version.py --check vX.Y.Z)
    result = subprocess.run(
        [sys.executable, str(ROOT / "hack/version.py"), "--check", f"v{VERSION}"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    wrong = subprocess.run(
        [sys.executable, str(ROOT / "hack/version.py"), "--check", "v9.9.9"], capture_output=True, text=True
    )
    assert wrong.returncode == 1
    assert "Chart.yaml version is not 9.9.9" in wrong.stderr


def test_the_plugin_bundles_every_dependency_but_the_operator_s_own() -> None:
    """hack/kubectl_plugin.py lists the dependencies of the client commands by hand (a zipapp with no
    compiled code): a new runtime dependency must be bundled there or named as the operator's only."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("kubectl_plugin", ROOT / "hack" / "kubectl_plugin.py")
    assert spec is not None
    assert spec.loader is not None
    plugin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plugin)

    def name(requirement: str) -> str:
        return re.split(r"[<>=!\[ ;]", requirement, maxsplit=1)[0].lower()

    runtime = {name(r) for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    operator_only = {"kopf", "aiohttp", "prometheus-client", "pyjwt"}  # imported by `run` alone, lazily
    bundled = {name(r) for r in plugin.CLIENT_DEPENDENCIES}
    assert runtime - operator_only - bundled == set(), "add them to CLIENT_DEPENDENCIES"
