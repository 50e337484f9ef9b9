-- Create the inverse promotion: move the stage back to the version status.stagesBefore recorded,
-- guarded by a precondition on where it is now. Mirrors secretstage.domain.rollback (tested).
local os = require("os")
local spec = obj.spec
local status = obj.status
local stage = spec.versionStage
local previous = status.stagesBefore[stage]
local current = nil
if status.stagesAfter ~= nil then
  current = status.stagesAfter[stage]
end
if current == nil then
  current = spec.moveToVersion
end

local newSpec = {}
local dropped = {moveToVersion = true, removeFromVersion = true, precondition = true, dryRun = true, retry = true}
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
