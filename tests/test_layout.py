"""Repository invariants: one CRD source, no `operator` package, patterns in sync."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from secretstage.domain import promotion

ROOT = Path(__file__).resolve().parent.parent


def test_operator_folder_is_not_a_package() -> None:
    assert not (ROOT / "operator" / "__init__.py").exists()


def test_crds_folder_holds_only_crds() -> None:
    files = sorted((ROOT / "crds").glob("*.yaml"))
    assert files
    for f in files:
        for doc in yaml.safe_load_all(f.read_text()):
            assert doc["kind"] == "CustomResourceDefinition", f


def _schema() -> dict:  # type: ignore[type-arg]
    crd = yaml.safe_load((ROOT / "crds" / "secretstagepromotions.secretstage.io.yaml").read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]  # type: ignore[no-any-return]


def test_crd_patterns_match_the_domain() -> None:
    spec = _schema()
    assert spec["versionStage"]["pattern"] == promotion.STAGE
    assert spec["moveToVersion"]["pattern"] == promotion.VERSION_ID
    assert spec["removeFromVersion"]["pattern"] == promotion.VERSION_ID
    assert spec["regionId"]["pattern"] == promotion.REGION_ID
    assert spec["endpoint"]["pattern"] == promotion.ENDPOINT
    assert spec["credentials"]["properties"]["secretRef"]["properties"]["name"]["pattern"] == promotion.K8S_NAME
    assert spec["precondition"]["properties"]["currentVersion"]["pattern"] == promotion.VERSION_ID
    rule = spec["secretName"]["x-kubernetes-validations"][0]["rule"]
    assert promotion.SECRET_NAME in rule
    assert promotion.SECRET_ARN in rule
    assert spec["signature"]["enum"] == list(promotion.SIGNATURES)


def test_no_defaults_in_the_crd() -> None:
    """Server-side defaults show up as drift in Argo CD; the operator applies defaults itself."""
    text = (ROOT / "crds" / "secretstagepromotions.secretstage.io.yaml").read_text()
    assert not re.search(r"^\s*default:", text, re.M)


CHART = ROOT / "helm" / "secretstage-operator"


def test_chart_crds_are_byte_copies() -> None:
    source = {p.name: p.read_bytes() for p in (ROOT / "crds").glob("*.yaml")}
    copy = {p.name: p.read_bytes() for p in (CHART / "files" / "crds").glob("*.yaml")}
    assert copy == source, "chart CRDs drifted; run: cp crds/*.yaml helm/secretstage-operator/files/crds/"


def test_chart_app_version_matches_package() -> None:
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == version


def test_every_value_is_commented() -> None:
    """Each key has a comment right above it, or sits inside a block whose key has one."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    stack: list[tuple[int, bool]] = []  # (indent, documented) of the enclosing keys
    uncommented = []
    for i, line in enumerate(lines):
        match = re.match(r"^(\s*)([A-Za-z][\w]*):", line)
        if not match:
            continue
        indent = len(match.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        documented = i > 0 and lines[i - 1].strip().startswith("#")
        inherited = any(doc for _, doc in stack)
        if not documented and not inherited:
            uncommented.append(match.group(2))
        stack.append((indent, documented or inherited))
    assert not uncommented, uncommented


def test_every_crd_field_is_described() -> None:
    """`kubectl explain ssp.spec` / `.status` describe every field (metadata cannot carry one)."""
    crd = yaml.safe_load((ROOT / "crds" / "secretstagepromotions.secretstage.io.yaml").read_text())
    version = crd["spec"]["versions"][0]
    missing: list[str] = []

    def walk(node: dict, path: str) -> None:  # type: ignore[type-arg]
        for name, sub in (node.get("properties") or {}).items():
            if not sub.get("description") and f"{path}.{name}" != ".metadata":
                missing.append(f"{path}.{name}")
            walk(sub, f"{path}.{name}")
        if "items" in node:
            walk(node["items"], f"{path}[]")

    walk(version["schema"]["openAPIV3Schema"], "")
    assert not missing, f"fields without a description: {missing}"
    reason = next(c for c in version["additionalPrinterColumns"] if c["name"] == "Reason")
    assert reason["priority"] == 1  # shown with -o wide


def test_the_chart_and_the_operator_refuse_the_same_endpoint_patterns() -> None:
    from secretstage.domain import policy

    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    in_chart = re.search(r"regexMatch `\^(.*)\$` \.", helpers)
    assert in_chart is not None
    assert in_chart.group(1) == policy._DOTS_MEANT.pattern


def test_the_flags_table_names_every_flag_of_secretstage_run_and_no_other() -> None:
    import argparse

    from secretstage.cli import build_parser

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    run = commands.choices["run"]
    flags = {o for a in run._actions for o in a.option_strings if o.startswith("--") and o != "--help"}
    table = set(re.findall(r"^\| `(--[a-z-]+)", (ROOT / "docs" / "operator.md").read_text(), re.M))
    assert flags - table == set(), "flags docs/operator.md does not name"
    assert table - flags == set(), "flags docs/operator.md names that `secretstage run` does not have"
