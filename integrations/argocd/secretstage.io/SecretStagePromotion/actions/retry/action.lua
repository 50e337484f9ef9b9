-- A new generation of the same promotion: the operator runs it again from a fresh read of KMS.
if obj.spec.retry == nil then
  obj.spec.retry = 1
else
  obj.spec.retry = obj.spec.retry + 1
end
return obj
