-- retry: run a Failed promotion again (bumps spec.retry: a new generation).
-- rollback: create a new promotion that puts the stage back where status.stagesBefore had it.
local actions = {}
local phase = nil
if obj.status ~= nil then
  phase = obj.status.phase
end
local dry = obj.spec ~= nil and obj.spec.dryRun == true
actions["retry"] = {["disabled"] = phase ~= "Failed", ["iconClass"] = "fa fa-fw fa-redo", ["displayName"] = "Retry"}
actions["rollback"] = {
  ["disabled"] = phase ~= "Succeeded" or dry or obj.status.stagesBefore == nil,
  ["iconClass"] = "fa fa-fw fa-undo",
  ["displayName"] = "Roll back"
}
return actions
