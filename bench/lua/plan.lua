-- Replays a request plan round-robin: one request per line, tab-separated
--   METHOD  PATH  TOKEN  [JSON BODY]
-- All requests are formatted once in init(), so the generator spends nothing per request.
-- usage: wrk -s plan.lua URL -- PLAN_FILE [count-cache]
dofile("report.lua")

local plan = {}
local index = 0
local count_cache = false

function init(args)
  local file = assert(io.open(args[1], "r"))
  for line in file:lines() do
    local method, path, token, body = line:match("^(%u+)\t([^\t]*)\t([^\t]*)\t?(.*)$")
    local headers = {}
    if token ~= "" then
      headers["Authorization"] = "Bearer " .. token
    end
    if body == "" then
      body = nil
    else
      headers["Content-Type"] = "application/json"
    end
    table.insert(plan, wrk.format(method, path, headers, body))
  end
  file:close()
  -- Threads start at different points of the plan.
  index = (thread_index or 0) * 7919 % #plan
  count_cache = args[2] == "count-cache"
end

function request()
  index = index % #plan + 1
  return plan[index]
end

function response(status, headers, body)
  count("status_" .. status)
  if count_cache then
    local cache = headers["x-cache"] or headers["X-Cache"]
    if cache then
      count("cache_" .. string.lower(cache))
    end
  end
end
