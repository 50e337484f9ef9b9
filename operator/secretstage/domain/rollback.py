"""The inverse of a succeeded promotion, from what its status recorded. Pure.

The Argo CD "rollback" action (integrations/argocd/.../actions/rollback/action.lua) computes the
same thing in Lua; tests/test_argocd_lua.py checks that both agree.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

ROLLBACK_LABEL = "secretstage.io/rollback-of"


class NotRollbackable(ValueError):
    """The promotion cannot be rolled back; the message says why."""


def rollback_spec(spec: Mapping[str, Any], status: Mapping[str, Any]) -> dict[str, Any]:
    """A spec that puts the stage back where ``status.stagesBefore`` had it, guarded by a precondition."""
    if status.get("phase") != "Succeeded":
        raise NotRollbackable(f"only a Succeeded promotion can be rolled back (phase is {status.get('phase')})")
    if spec.get("dryRun"):
        raise NotRollbackable("a dry run changed nothing; there is nothing to roll back")
    before = status.get("stagesBefore")
    after = status.get("stagesAfter") or {}
    if not isinstance(before, Mapping):
        raise NotRollbackable("status.stagesBefore was not recorded; roll back by hand")
    stage = spec["versionStage"]
    previous = before.get(stage)
    current = after.get(stage, spec.get("moveToVersion"))
    if previous == current:
        raise NotRollbackable(f"{stage} did not move ({previous}); there is nothing to roll back")
    new = copy.deepcopy(dict(spec))
    for key in ("moveToVersion", "removeFromVersion", "precondition", "dryRun", "retry"):
        new.pop(key, None)
    if previous is None:
        if stage in ("ACSCurrent", "ACSPrevious"):
            raise NotRollbackable(f"{stage} was on no version before; it cannot be removed")
        new["removeFromVersion"] = current
    else:
        new["moveToVersion"] = previous
    if current is not None:
        new["precondition"] = {"currentVersion": current}
    return new
