"""The chart as platform teams install it: several releases with one CRD owner, the CRD upgraded by
`helm upgrade`, and the chart as a subchart of an umbrella chart.

A control plane of this module's own: the shared one's CRD was applied by kubectl for the other tests,
and these tests are about who installs it first.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster import Cluster, dedicated_control_plane
from tests.harness import CHART as CHART_PATH

CRD = "secretstagepromotions.secretstage.io"
CHART = Path(CHART_PATH)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory, cluster: Cluster) -> Iterator[Cluster]:
    with dedicated_control_plane(tmp_path_factory.mktemp("chart-plane"), cluster.bin_dir) as (own, _):
        yield own


def crd(cluster: Cluster) -> dict[str, Any]:
    return json.loads(cluster.kubectl("get", "crd", CRD, "-o", "json").stdout)  # type: ignore[no-any-return]


def owner(cluster: Cluster) -> tuple[str, str]:
    annotations = crd(cluster)["metadata"].get("annotations", {})
    return annotations.get("meta.helm.sh/release-name", ""), annotations.get("meta.helm.sh/release-namespace", "")


def columns(cluster: Cluster) -> list[str]:
    return [c["name"] for c in crd(cluster)["spec"]["versions"][0]["additionalPrinterColumns"]]


def commands(notes: str) -> list[list[str]]:
    """The shell commands NOTES.txt shows (indented lines, backslash continuations joined)."""
    joined = notes.replace("\\\n", " ")
    return [line.split() for line in joined.splitlines() if line.startswith("  ")]


def install(cluster: Cluster, release: str, namespace: str, chart: Path = CHART, *extra: str) -> str:
    cluster.kubectl("create", "namespace", namespace, check=False)
    watch = ("--set", f"watch.namespaces={{{namespace}}}")
    return cluster.helm("upgrade", "--install", release, str(chart), "-n", namespace, *watch, *extra).stdout


def test_per_team_releases_share_the_crd_and_its_owner_upgrades_it(fresh: Cluster, tmp_path: Path) -> None:
    # team-a installs first and owns the CRD
    install(fresh, "team-a", "team-a")
    assert owner(fresh) == ("team-a", "team-a")
    # team-b: a second release needs no special value; it leaves the CRD to its owner and says so
    notes = install(fresh, "team-b", "team-b")
    assert "belongs to release team-a in namespace team-a" in notes
    assert owner(fresh) == ("team-a", "team-a")
    assert "Reason" in columns(fresh)
    # a new chart version with a changed CRD: `helm upgrade` of the owner upgrades it
    changed = tmp_path / "secretstage-operator"
    shutil.copytree(CHART, changed)
    crd_file = changed / "files" / "crds" / f"{CRD}.yaml"
    source = yaml.safe_load(crd_file.read_text())
    source["spec"]["versions"][0]["additionalPrinterColumns"].append(
        {"name": "Attempts", "type": "integer", "jsonPath": ".status.attempts", "priority": 1}
    )
    crd_file.write_text(yaml.safe_dump(source))
    fresh.helm("upgrade", "team-b", str(changed), "-n", "team-b", "--reuse-values")
    assert "Attempts" not in columns(fresh)  # not the owner: left alone
    fresh.helm("upgrade", "team-a", str(changed), "-n", "team-a", "--reuse-values")
    assert "Attempts" in columns(fresh)
    # the owner uninstalled: the CRD (and every promotion) stays
    fresh.helm("uninstall", "team-a", "-n", "team-a")
    assert owner(fresh) == ("team-a", "team-a")
    # a reinstall under another name works, and its notes say how to take the CRD over
    notes = install(fresh, "platform", "platform")
    assert "belongs to release team-a in namespace team-a" in notes
    adopt = [c for c in commands(notes) if c[:3] in (["kubectl", "annotate", "crd"], ["kubectl", "label", "crd"])]
    assert len(adopt) == 2, notes
    for command in adopt:
        fresh.kubectl(*command[1:])
    install(fresh, "platform", "platform")
    assert owner(fresh) == ("platform", "platform")
    assert "Attempts" not in columns(fresh)  # upgraded to this release's chart
    for release in ("team-b", "platform"):
        fresh.helm("uninstall", release, "-n", release)


def test_the_chart_as_a_subchart(fresh: Cluster, tmp_path: Path) -> None:
    """Helm hands every subchart the umbrella's `global` values; the strict schema takes them."""
    umbrella = tmp_path / "platform-stack"
    (umbrella / "templates").mkdir(parents=True)
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    (umbrella / "Chart.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v2",
                "name": "platform-stack",
                "version": "1.0.0",
                "dependencies": [{"name": chart["name"], "version": chart["version"], "repository": f"file://{CHART}"}],
            }
        )
    )
    (umbrella / "values.yaml").write_text(
        yaml.safe_dump(
            {
                "global": {"imageRegistry": "registry.example.com", "storageClass": "fast"},
                "secretstage-operator": {"watch": {"namespaces": ["team-x"]}, "crds": {"enabled": False}},
            }
        )
    )
    fresh.helm("dependency", "build", str(umbrella))
    assert "0 chart(s) failed" in fresh.helm("lint", str(umbrella), "--strict").stdout
    docs = [d for d in yaml.safe_load_all(fresh.helm("template", "stack", str(umbrella), "-n", "ops").stdout) if d]
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["SECRETSTAGE_NAMESPACES"] == "team-x"
    fresh.kubectl("create", "namespace", "ops")
    fresh.kubectl("create", "namespace", "team-x")
    fresh.helm("install", "stack", str(umbrella), "-n", "ops")
    assert json.loads(fresh.kubectl("-n", "ops", "get", "deployment", "-o", "json").stdout)["items"]
    fresh.helm("uninstall", "stack", "-n", "ops")
