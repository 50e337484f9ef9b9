"""Argo CD health check and resource actions, run in a real Lua against every sample."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from secretstage.domain.approval import parse_entries
from tests import lua_support
from tests.lua_support import ARGOCD

HEALTH_TESTS = yaml.safe_load((ARGOCD / "health_test.yaml").read_text())["tests"]
ACTION_TESTS = yaml.safe_load((ARGOCD / "actions" / "action_test.yaml").read_text())


def load(path: str, base: str = "") -> dict[str, Any]:
    return dict(yaml.safe_load((ARGOCD / base / path).resolve().read_text()))


@pytest.mark.parametrize("case", HEALTH_TESTS, ids=[c["inputPath"] for c in HEALTH_TESTS])
def test_health(case: dict[str, Any]) -> None:
    assert lua_support.health(load(case["inputPath"])) == case["healthStatus"]


def test_every_sample_has_a_health_case() -> None:
    samples = {f"testdata/{p.name}" for p in (ARGOCD / "testdata").glob("*.yaml")}
    assert samples == {c["inputPath"] for c in HEALTH_TESTS}


@pytest.mark.parametrize(
    "case", ACTION_TESTS["discoveryTests"], ids=[c["inputPath"] for c in ACTION_TESTS["discoveryTests"]]
)
def test_discovery(case: dict[str, Any]) -> None:
    actions = lua_support.run(ARGOCD / "actions" / "discovery.lua", load(case["inputPath"], "actions"))
    for expected in case["result"]:
        assert actions[expected["name"]]["disabled"] is expected["disabled"], expected["name"]


def test_retry_action() -> None:
    case = next(c for c in ACTION_TESTS["actionTests"] if c["action"] == "retry")
    out = lua_support.run(ARGOCD / "actions" / "retry" / "action.lua", load(case["inputPath"], "actions"))
    assert out == load(case["expectedOutputPath"], "actions")
    again = lua_support.run(ARGOCD / "actions" / "retry" / "action.lua", out)
    assert again["spec"]["retry"] == 2


def test_rollback_action_creates_the_inverse_promotion() -> None:
    case = next(c for c in ACTION_TESTS["actionTests"] if c["action"] == "rollback")
    out = lua_support.run(ARGOCD / "actions" / "rollback" / "action.lua", load(case["inputPath"], "actions"))
    assert len(out) == 1
    assert out[0]["operation"] == "create"
    created = out[0]["resource"]
    expected = load(case["expectedOutputPath"], "actions")
    assert re.fullmatch(r"db-password-v2-rollback-\d{14}", created["metadata"].pop("name"))
    expected["metadata"].pop("name")
    assert created == expected


def test_sandbox_has_no_string_library() -> None:
    from lupa import lua51

    with pytest.raises(lua51.LuaError):
        lua_support.run("return string.format('%s', 'x')", {})


def test_argocd_cm_patch_is_current() -> None:
    import importlib.util

    from tests.support import ROOT

    spec = importlib.util.spec_from_file_location("argocd_cm", ROOT / "hack" / "argocd_cm.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    committed = (ROOT / "integrations" / "argocd" / "argocd-cm-patch.yaml").read_text()
    assert committed == module.render(), "stale: run python hack/argocd_cm.py"
    data = yaml.safe_load(committed)["data"]
    actions = yaml.safe_load(data["resource.customizations.actions.secretstage.io_SecretStagePromotion"])
    assert [d["name"] for d in actions["definitions"]] == ["retry", "rollback"]


@pytest.mark.parametrize("verb", ["approve", "reject"])
def test_approve_and_reject_append_one_line_as_argo_cd(verb: str) -> None:
    """The line the admission policy admits from Argo CD's user: first line, then appended after another."""
    case = next(c for c in ACTION_TESTS["actionTests"] if c["action"] == verb)
    out = lua_support.run(ARGOCD / "actions" / verb / "action.lua", load(case["inputPath"], "actions"))
    expected = load(case["expectedOutputPath"], "actions")
    # (status is left alone; compared without it, as Lua turns its empty lists into empty tables)
    assert (out["metadata"], out["spec"]) == (expected["metadata"], expected["spec"])
    lines = out["metadata"]["annotations"]["secretstage.io/approvals"].split("\n")
    assert lines[-1] == f"{verb} 1 system:serviceaccount:argocd:argocd-server"
    assert [e.generation for e in parse_entries("\n".join(lines))] == [1] * len(lines)  # the operator reads them
