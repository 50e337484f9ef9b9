-- Argo CD health check for secretstage.io/SecretStagePromotion.
-- Healthy: the promotion of the current generation succeeded. Degraded: it failed (the reason and
-- message of the Succeeded condition say why; a failed gate that rolled back is RolledBack).
-- Progressing: not handled yet, in flight, its gate checking the consumers (Verifying), waiting
-- for credentials or a window, or the status belongs to an older generation (a spec edit is a new
-- promotion). Suspended: waiting for approvers (AwaitingApproval), as a paused Argo Rollout is.
local hs = {}
if obj.status == nil or obj.status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the secretstage operator to pick up this promotion"
  return hs
end
local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to handle generation " .. tostring(generation)
  return hs
end
local message = ""
local reason = nil
if obj.status.conditions ~= nil then
  for _, condition in ipairs(obj.status.conditions) do
    if condition.type == "Succeeded" then
      reason = condition.reason
      message = tostring(condition.reason or "") .. ": " .. tostring(condition.message or "")
    end
  end
end
local phase = obj.status.phase
if phase == "Succeeded" then
  hs.status = "Healthy"
elseif phase == "Failed" then
  hs.status = "Degraded"
elseif phase == "Pending" and reason == "AwaitingApproval" then
  hs.status = "Suspended"
elseif phase == "Pending" or phase == "InProgress" or phase == "Verifying" then
  hs.status = "Progressing"
else
  hs.status = "Unknown"
  message = "Unknown phase " .. tostring(phase)
end
hs.message = message
return hs
