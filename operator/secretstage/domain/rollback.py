"""The inverse of a succeeded promotion, from what its status recorded. Pure.

The Argo CD "rollback" action and its discovery (integrations/argocd/.../actions/) compute the same
thing in Lua; tests/test_rollback_cases.py runs one table of cases (tests/rollback_cases.yaml)
through this module and through both Lua scripts in a real Lua, so the three cannot drift apart.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from secretstage.domain.status import succeeded_condition

ROLLBACK_LABEL = "secretstage.io/rollback-of"
_PERMANENT_STAGES = ("ACSCurrent", "ACSPrevious")


class NotRollbackable(ValueError):
    """The promotion cannot be rolled back; the message says why."""


def rollback_refusal(promotion: Mapping[str, Any]) -> str | None:
    """Why the promotion cannot be rolled back, or None when it can (the action is then offered)."""
    spec: Mapping[str, Any] = promotion.get("spec") or {}
    status: Mapping[str, Any] = promotion.get("status") or {}
    generation = (promotion.get("metadata") or {}).get("generation")
    if status.get("phase") != "Succeeded":
        return f"only a Succeeded promotion can be rolled back (phase is {status.get('phase') or 'unset'})"
    if generation is not None and status.get("observedGeneration") != generation:
        # The spec was edited after the status was written: the status does not describe this spec.
        return "the spec changed since the status was written; wait until the operator has processed it"
    if spec.get("dryRun"):
        return "a dry run changed nothing; there is nothing to roll back"
    if succeeded_condition(status).get("reason") == "AlreadyInPlace":
        # The state of an Argo CD hook after every later sync: this generation moved nothing, so its
        # inverse would "succeed" moving nothing either. Roll back the promotion that moved it.
        return "it moved nothing (AlreadyInPlace); roll back the promotion that moved the stage"
    before = status.get("stagesBefore")
    after = status.get("stagesAfter") or {}
    if not isinstance(before, Mapping):
        return "status.stagesBefore was not recorded; roll back by hand"
    stage = spec["versionStage"]
    previous = before.get(stage)
    current = after.get(stage, spec.get("moveToVersion"))
    if previous == current:
        return f"{stage} did not move ({previous}); there is nothing to roll back"
    if previous is None and stage in _PERMANENT_STAGES:
        return f"{stage} was on no version before; it cannot be removed"
    return None


def rollback_spec(promotion: Mapping[str, Any]) -> dict[str, Any]:
    """A spec that puts the stage back where ``status.stagesBefore`` had it, guarded by a precondition."""
    refusal = rollback_refusal(promotion)
    if refusal is not None:
        raise NotRollbackable(refusal)
    spec, status = promotion["spec"], promotion["status"]
    stage = spec["versionStage"]
    previous = status["stagesBefore"].get(stage)
    current = (status.get("stagesAfter") or {}).get(stage, spec.get("moveToVersion"))
    new = copy.deepcopy(dict(spec))
    # The canary went before the move being undone; undoing it is urgent, so it goes straight to the
    # stage (a gate, if any, still checks the consumers on the version rolled back to).
    for key in ("moveToVersion", "removeFromVersion", "precondition", "dryRun", "retry", "canary"):
        new.pop(key, None)
    if previous is None:
        new["removeFromVersion"] = current
    else:
        new["moveToVersion"] = previous
    if current is not None:
        new["precondition"] = {"currentVersion": current}
    return new
