-- Create the inverse promotion: move the stage back to the version status.stagesBefore recorded,
-- guarded by a precondition on where it is now. Refuses (an error Argo CD shows) where
-- secretstage.domain.rollback refuses. Remember to revert the change in Git as well (docs/operator.md,
-- "Rolling back with GitOps"), or the next sync promotes the version again.
local os = require("os")
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

local spec = obj.spec
local status = obj.status or {}
local refusal, previous, current = rollbackRefusal(obj.metadata or {}, spec, status)
if refusal ~= nil then
  error("cannot roll back " .. obj.metadata.namespace .. "/" .. obj.metadata.name .. ": " .. refusal, 0)
end

local newSpec = {}
local dropped = {
  moveToVersion = true, removeFromVersion = true, precondition = true, dryRun = true, retry = true, canary = true
}
for key, value in pairs(spec) do
  if not dropped[key] then
    newSpec[key] = value
  end
end
if previous == nil then
  newSpec.removeFromVersion = current
else
  newSpec.moveToVersion = previous
end
if current ~= nil then
  newSpec.precondition = {currentVersion = current}
end

local promotion = {}
promotion.apiVersion = obj.apiVersion
promotion.kind = obj.kind
promotion.metadata = {}
promotion.metadata.name = obj.metadata.name .. "-rollback-" .. os.date("!%Y%m%d%H%M%S")
promotion.metadata.namespace = obj.metadata.namespace
promotion.metadata.labels = {}
promotion.metadata.labels["secretstage.io/rollback-of"] = obj.metadata.name
promotion.spec = newSpec

local impacted = {}
impacted.operation = "create"
impacted.resource = promotion
local result = {}
result[1] = impacted
return result
