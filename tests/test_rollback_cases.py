"""One table of rollback cases, run through the Python rule (the CLI) and both Argo CD Lua scripts."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa import lua51

from secretstage.domain.rollback import ROLLBACK_LABEL, NotRollbackable, rollback_refusal, rollback_spec
from tests import lua_support
from tests.lua_support import ARGOCD

CASES: list[dict[str, Any]] = yaml.safe_load((Path(__file__).parent / "rollback_cases.yaml").read_text())
DISCOVERY = ARGOCD / "actions" / "discovery.lua"
ACTION = ARGOCD / "actions" / "rollback" / "action.lua"


def _overlay(base: dict[str, Any], changes: dict[str, Any] | None) -> dict[str, Any]:
    merged = dict(base)
    for key, value in (changes or {}).items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def promotion(case: dict[str, Any]) -> dict[str, Any]:
    obj = copy.deepcopy(yaml.safe_load((ARGOCD / "testdata" / case["object"]).read_text()))
    obj["spec"] = _overlay(obj["spec"], case.get("spec"))
    obj["status"] = _overlay(obj.get("status") or {}, case.get("status"))
    return dict(obj)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_python(case: dict[str, Any]) -> None:
    obj = promotion(case)
    refusal = rollback_refusal(obj)
    assert (refusal is None) is case["offered"], refusal
    if case["offered"]:
        assert rollback_spec(obj) == case["expectSpec"]
    else:
        assert case["refusal"] in str(refusal)
        with pytest.raises(NotRollbackable):
            rollback_spec(obj)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_lua_discovery(case: dict[str, Any]) -> None:
    actions = lua_support.run(DISCOVERY, promotion(case))
    assert actions["rollback"]["disabled"] is not case["offered"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_lua_action(case: dict[str, Any]) -> None:
    obj = promotion(case)
    if not case["offered"]:
        with pytest.raises(lua51.LuaError) as refused:
            lua_support.run(ACTION, obj)
        assert case["refusal"] in str(refused.value)
        return
    [created] = lua_support.run(ACTION, obj)
    assert created["operation"] == "create"
    resource = created["resource"]
    assert resource["spec"] == case["expectSpec"]
    assert resource["metadata"]["labels"] == {ROLLBACK_LABEL: obj["metadata"]["name"]}
    assert re.fullmatch(rf"{obj['metadata']['name']}-rollback-\d{{14}}", resource["metadata"]["name"])


def _refusal_block(path: Path) -> str:
    text = path.read_text()
    return text[text.index("-- BEGIN rollback refusal") : text.index("-- END rollback refusal")]


def test_both_lua_scripts_carry_the_same_refusal_rules() -> None:
    # Argo CD loads each script alone (no shared Lua modules), so the rules are written twice.
    assert _refusal_block(DISCOVERY) == _refusal_block(ACTION)


def test_every_sample_is_a_case() -> None:
    samples = {p.name for p in (ARGOCD / "testdata").glob("*.yaml")}
    covered = {c["object"] for c in CASES}
    # The samples that are not a case cannot be rolled back for a reason a case covers already.
    assert covered <= samples
    for name in sorted(samples - covered):
        obj = yaml.safe_load((ARGOCD / "testdata" / name).read_text())
        assert rollback_refusal(obj) is not None, name
        assert lua_support.run(DISCOVERY, obj)["rollback"]["disabled"] is True, name
