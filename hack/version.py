#!/usr/bin/env python3
"""The release version, from its one source (pyproject.toml), and the check that every other place agrees.

    python3 hack/version.py               prints the version
    python3 hack/version.py --check v0.2.0  exits 1 naming each place that disagrees with the tag

The release workflow runs the check on the pushed tag; tests/test_layout.py runs it on every commit
with the version itself, so a bump that misses a place fails before anything is tagged.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "secretstage-operator" / "Chart.yaml"
SEMVER = re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?")
#: Files whose install commands name the chart version a user types.
DOCS_WITH_INSTALL = ("README.md", "docs/install.md", "docs/getting-started.md", "helm/secretstage-operator/README.md")


def version() -> str:
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


def problems(expected: str) -> list[str]:
    found: list[str] = []
    if not SEMVER.fullmatch(expected):
        found.append(f"{expected!r} is not a semantic version (MAJOR.MINOR.PATCH)")
    if version() != expected:
        found.append(f"pyproject.toml [project].version is {version()}")
    chart = CHART.read_text()
    if not re.search(rf"^version: {re.escape(expected)}$", chart, re.M):
        found.append(f"{CHART.relative_to(ROOT)} version is not {expected}")
    if not re.search(rf'^appVersion: "{re.escape(expected)}"$', chart, re.M):
        found.append(f"{CHART.relative_to(ROOT)} appVersion is not {expected}")
    if not re.search(rf"^ARG VERSION={re.escape(expected)}$", (ROOT / "Dockerfile").read_text(), re.M):
        found.append(f"Dockerfile ARG VERSION is not {expected}")
    if not re.search(rf"^## {re.escape(expected)}$", (ROOT / "CHANGELOG.md").read_text(), re.M):
        found.append(f"CHANGELOG.md has no '## {expected}' section")
    for name in DOCS_WITH_INSTALL:
        path = ROOT / name
        if not path.exists():
            continue
        for other in sorted(set(re.findall(r"--version (\d[\w.+-]*)", path.read_text())) - {expected}):
            found.append(f"{name} installs --version {other}")
    return found


def main(argv: list[str]) -> int:
    if not argv:
        print(version())
        return 0
    if len(argv) != 2 or argv[0] != "--check":
        print(__doc__, file=sys.stderr)
        return 2
    tag = argv[1]
    found = problems(tag.removeprefix("v"))
    for problem in found:
        print(f"version {tag}: {problem}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
