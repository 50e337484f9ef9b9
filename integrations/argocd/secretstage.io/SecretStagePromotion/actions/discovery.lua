-- retry: run a Failed promotion again (bumps spec.retry: a new generation).
-- rollback: create a new promotion that puts the stage back where status.stagesBefore had it; offered
-- only where the action would succeed (not on an AlreadyInPlace hook, a dry run, an unmoved stage).
-- approve / reject: as Argo CD's own user (approve/action.lua says why); offered while the generation
-- waits for approval.
-- rerun-gate: gate the version again (a held gate after the cause was fixed, or a re-verification);
-- only where the gate decided and nothing was rolled back, so the stage is still on the version.
-- BEGIN rollback refusal: the same block in discovery.lua and rollback/action.lua, the same rules as
-- secretstage.domain.rollback; tests/test_rollback_cases.py runs one table of cases through all three.
local function rollbackRefusal(metadata, spec, status)
  if status.phase ~= "Succeeded" then
    return "only a Succeeded promotion can be rolled back (phase is " .. tostring(status.phase or "unset") .. ")"
  end
  if metadata.generation ~= nil and status.observedGeneration ~= metadata.generation then
    return "the spec changed since the status was written; wait until the operator has processed it"
  end
  if spec.dryRun == true then
    return "a dry run changed nothing; there is nothing to roll back"
  end
  local reason = nil
  for _, condition in ipairs(status.conditions or {}) do
    if condition.type == "Succeeded" then
      reason = condition.reason
      break
    end
  end
  if reason == "AlreadyInPlace" then
    return "it moved nothing (AlreadyInPlace); roll back the promotion that moved the stage"
  end
  if type(status.stagesBefore) ~= "table" then
    return "status.stagesBefore was not recorded; roll back by hand"
  end
  local stage = spec.versionStage
  local previous = status.stagesBefore[stage]
  local current = nil
  if status.stagesAfter ~= nil then
    current = status.stagesAfter[stage]
  end
  if current == nil then
    current = spec.moveToVersion
  end
  if previous == current then
    return stage .. " did not move (" .. tostring(previous) .. "); there is nothing to roll back"
  end
  if previous == nil and (stage == "ACSCurrent" or stage == "ACSPrevious") then
    return stage .. " was on no version before; it cannot be removed"
  end
  return nil, previous, current  -- rollbackable: the version to go back to, and where the stage is now
end
-- END rollback refusal

local actions = {}
local spec = obj.spec or {}
local status = obj.status or {}
local phase = status.phase
local gated = spec.gate ~= nil
local decided = status.gate ~= nil and (status.gate.verdict == "Passed" or status.gate.verdict == "Failed")
actions["retry"] = {["disabled"] = phase ~= "Failed", ["iconClass"] = "fa fa-fw fa-redo", ["displayName"] = "Retry"}
actions["rollback"] = {
  ["disabled"] = rollbackRefusal(obj.metadata or {}, spec, status) ~= nil,
  ["iconClass"] = "fa fa-fw fa-undo",
  ["displayName"] = "Roll back"
}
actions["rerun-gate"] = {
  ["disabled"] = not (gated and decided and status.rollback == nil and (phase == "Succeeded" or phase == "Failed")),
  ["iconClass"] = "fa fa-fw fa-check-double",
  ["displayName"] = "Re-run gate"
}
local awaiting = false
for _, condition in ipairs(status.conditions or {}) do
  if condition.type == "Succeeded" and condition.reason == "AwaitingApproval" then
    awaiting = status.observedGeneration == (obj.metadata or {}).generation
  end
end
actions["approve"] = {["disabled"] = not awaiting, ["iconClass"] = "fa fa-fw fa-thumbs-up", ["displayName"] = "Approve"}
actions["reject"] = {["disabled"] = not awaiting, ["iconClass"] = "fa fa-fw fa-thumbs-down", ["displayName"] = "Reject"}
return actions
