-- Re-run the gate of a promotion whose gate decided and did not roll back (passed, or failed and
-- held): a new generation (spec.retry + 1); the stage is still on the version, so the operator
-- restarts the consumers and gates it again (docs/gate.md, "Re-running the gate").
if obj.spec.retry == nil then
  obj.spec.retry = 1
else
  obj.spec.retry = obj.spec.retry + 1
end
return obj
