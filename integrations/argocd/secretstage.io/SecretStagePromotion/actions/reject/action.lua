-- reject: append "reject GENERATION USER" to the annotation secretstage.io/approvals, as kubectl secretstage
-- reject does. The chart's admission policy admits the line only when USER is the user the API server
-- authenticated for the request, and through Argo CD that is Argo CD itself, not the person who clicked:
-- Argo CD's RBAC decides who may run this action (docs/change-control.md, "Through Argo CD").
-- Where Argo CD talks to the cluster as another user than argocd-server's ServiceAccount, set it here.
local argocdUser = "system:serviceaccount:argocd:argocd-server"
local key = "secretstage.io/approvals"
local metadata = obj.metadata
if metadata.annotations == nil then
  metadata.annotations = {}
end
local line = "reject " .. tostring(metadata.generation) .. " " .. argocdUser
local old = metadata.annotations[key]
if old == nil or old == "" then
  metadata.annotations[key] = line
else
  metadata.annotations[key] = old .. "\n" .. line
end
return obj
