-- Argo CD health check for build.multiarch.io/MultiArchBuild.
-- Healthy: the current generation was built and pushed (Ready=True and
-- status.observedGeneration == metadata.generation).
-- Degraded: the build failed (phase Failed, Succeeded=False or Ready=False
-- with reason BuildFailed); the message is the condition's.
-- Progressing: everything else (no status yet, a generation the operator has
-- not observed, waiting for storage or nodes, building).
local hs = {}

local function findCondition(conditions, conditionType)
  if conditions == nil then
    return nil
  end
  for _, condition in ipairs(conditions) do
    if condition.type == conditionType then
      return condition
    end
  end
  return nil
end

local function messageOf(condition, fallback)
  if condition ~= nil and condition.message ~= nil and condition.message ~= "" then
    return condition.message
  end
  return fallback
end

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and observed ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local ready = findCondition(obj.status.conditions, "Ready")
local succeeded = findCondition(obj.status.conditions, "Succeeded")

-- A verdict of an older generation says nothing of this one.
if ready ~= nil and generation ~= nil and ready.observedGeneration ~= nil and ready.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the build of generation " .. tostring(generation)
  return hs
end
if succeeded ~= nil and generation ~= nil and succeeded.observedGeneration ~= nil and succeeded.observedGeneration ~= generation then
  succeeded = nil
end

if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  if obj.status.image ~= nil and obj.status.image ~= "" then
    hs.message = "Pushed " .. obj.status.image
  else
    hs.message = messageOf(ready, "Built")
  end
  return hs
end

if obj.status.phase == "Failed"
    or (succeeded ~= nil and succeeded.status == "False")
    or (ready ~= nil and ready.status == "False" and ready.reason == "BuildFailed") then
  hs.status = "Degraded"
  if succeeded ~= nil and succeeded.status == "False" then
    hs.message = messageOf(succeeded, messageOf(ready, "The build failed"))
  else
    hs.message = messageOf(ready, "The build failed")
  end
  return hs
end

hs.status = "Progressing"
if obj.status.phase ~= nil and obj.status.phase ~= "" then
  hs.message = messageOf(ready, obj.status.phase)
else
  hs.message = messageOf(ready, "Waiting for the build to start")
end
return hs
