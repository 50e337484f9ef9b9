#!/usr/bin/env python3
"""Build the kubectl plugin as one file, and the krew manifest that installs it.

    python3 hack/kubectl_plugin.py build WHEEL OUT.tar.gz
        kubectl-secretstage (a Python zip application: the package and the pure-Python dependencies
        of its client commands, no compiled code, so one archive serves every OS and CPU with a
        python3 >= 3.11) and LICENSE, in a .tar.gz as krew wants
    python3 hack/kubectl_plugin.py manifest VERSION URL SHA256
        the krew manifest (plugins/secretstage.yaml) on stdout

The release workflow runs both; tests/test_packaging.py builds the archive from this checkout, runs
the plugin from it against the real API server and checks the manifest.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
import zipapp
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
# What `status`, `approve`, `reject`, `rollback`, `retry`, `check`, `versions` and `promote` import (not kopf, aiohttp,
# prometheus-client: those are the operator's). Ranges as in pyproject.toml, but kubernetes below 36:
# 36 added aiohttp and pydantic (compiled code) to its requirements, for an asyncio client the plugin
# does not use.
CLIENT_DEPENDENCIES = ("kubernetes>=30,<36", "httpx>=0.27,<0.29", "PyYAML>=6,<7", "sniffio>=1.3,<2", "cronsim>=2.6,<3")
# Built from source, not taken as a platform's wheel; PyYAML's optional C binding is then removed.
FROM_SOURCE = "PyYAML,charset-normalizer"
PLATFORMS = (("linux", "amd64"), ("linux", "arm64"), ("darwin", "amd64"), ("darwin", "arm64"))


def build(wheel: Path, out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "app"
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--target", str(target)]
        subprocess.run([*pip, "--no-deps", str(wheel)], check=True)
        subprocess.run([*pip, "--no-binary", FROM_SOURCE, *CLIENT_DEPENDENCIES], check=True)
        for binding in target.glob("yaml/_yaml*"):
            binding.unlink()  # PyYAML's optional libyaml binding (built where libyaml is installed); it falls back
        compiled = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.suffix in (".so", ".pyd"))
        if compiled:
            raise SystemExit(f"compiled code would tie the plugin to one platform: {compiled}")
        for cache in target.rglob("__pycache__"):
            for item in cache.iterdir():
                item.unlink()
            cache.rmdir()
        plugin = Path(tmp) / "kubectl-secretstage"
        zipapp.create_archive(
            target, plugin, interpreter="/usr/bin/env python3", main="secretstage.cli:kubectl_main", compressed=True
        )
        with tarfile.open(out, "w:gz") as archive:
            archive.add(plugin, arcname="kubectl-secretstage")
            archive.add(ROOT / "LICENSE", arcname="LICENSE")


def manifest(version: str, url: str, sha256: str) -> str:
    plugin = {
        "apiVersion": "krew.googlecontainertools.github.com/v1alpha2",
        "kind": "Plugin",
        "metadata": {"name": "secretstage"},
        "spec": {
            "version": f"v{version.removeprefix('v')}",
            "homepage": "https://github.com/secretstage/secretstage-operator",
            "shortDescription": "Promote and roll back Alibaba Cloud KMS secret stages",
            "description": "Shows, checks, approves, rejects, rolls back and retries SecretStagePromotions "
            "(secretstage-operator), and lists a KMS secret's versions and stages. Needs python3 (3.11 or later) "
            "on PATH.",
            "caveats": "Needs python3 >= 3.11. Rollback, retry, approve and reject need RBAC on "
            "secretstagepromotions (get, list, create, patch) in the namespace.",
            "platforms": [
                {
                    "selector": {"matchLabels": {"os": os_name, "arch": arch}},
                    "uri": url,
                    "sha256": sha256,
                    "bin": "kubectl-secretstage",
                    "files": [{"from": "kubectl-secretstage", "to": "."}, {"from": "LICENSE", "to": "."}],
                }
                for os_name, arch in PLATFORMS
            ],
        },
    }
    return yaml.safe_dump(plugin, sort_keys=False)


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "build":
        build(Path(argv[1]), Path(argv[2]))
        return 0
    if len(argv) == 4 and argv[0] == "manifest":
        print(manifest(argv[1], argv[2], argv[3]), end="")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
