-- retry: run a Failed promotion again (bumps spec.retry: a new generation).
-- rollback: create a new promotion that puts the stage back where status.stagesBefore had it.
-- rerun-gate: gate the version again (a held gate after the cause was fixed, or a re-verification);
-- only where the gate decided and nothing was rolled back, so the stage is still on the version.
local actions = {}
local phase = nil
local status = obj.status or {}
phase = status.phase
local dry = obj.spec ~= nil and obj.spec.dryRun == true
local gated = obj.spec ~= nil and obj.spec.gate ~= nil
local decided = status.gate ~= nil and (status.gate.verdict == "Passed" or status.gate.verdict == "Failed")
actions["retry"] = {["disabled"] = phase ~= "Failed", ["iconClass"] = "fa fa-fw fa-redo", ["displayName"] = "Retry"}
actions["rollback"] = {
  ["disabled"] = phase ~= "Succeeded" or dry or status.stagesBefore == nil,
  ["iconClass"] = "fa fa-fw fa-undo",
  ["displayName"] = "Roll back"
}
actions["rerun-gate"] = {
  ["disabled"] = not (gated and decided and status.rollback == nil and (phase == "Succeeded" or phase == "Failed")),
  ["iconClass"] = "fa fa-fw fa-check-double",
  ["displayName"] = "Re-run gate"
}
return actions
