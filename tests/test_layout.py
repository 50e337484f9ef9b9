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
