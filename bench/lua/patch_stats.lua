-- PATCH a task, then, once that PATCH has answered, GET /tasks/stats for the same user: the
-- write bumped the user's data version, so the stats are recomputed (X-Cache: MISS). Counts
-- HIT/MISS so the report can show the stats really missed.
-- usage: wrk -s patch_stats.lua URL -- PLAN_FILE THREADS
-- PLAN_FILE lines: USER_ID  TOKEN  TASK_ID (tab-separated); each thread takes its own users,
-- so one user's PATCH and stats never race on two threads.
dofile("report.lua")

local users = {}
local stats_requests = {}
local patches = {}
local ready = {}
local next_user = 0
local flip = false

function init(args)
  local threads = tonumber(args[2] or "1")
  local mine = thread_index or 0
  local file = assert(io.open(args[1], "r"))
  local line_number = 0
  for line in file:lines() do
    local user_id, token, task_id = line:match("^(%d+)\t([^\t]+)\t(%d+)$")
    if line_number % threads == mine then
      local headers = { ["Authorization"] = "Bearer " .. token }
      table.insert(users, user_id)
      stats_requests[user_id] = wrk.format("GET", "/tasks/stats", headers)
      headers["Content-Type"] = "application/json"
      patches[user_id] = {
        wrk.format("PATCH", "/tasks/" .. task_id, headers, '{"completed": true}'),
        wrk.format("PATCH", "/tasks/" .. task_id, headers, '{"completed": false}'),
      }
    end
    line_number = line_number + 1
  end
  file:close()
end

function request()
  local user_id = table.remove(ready)
  if user_id then
    return stats_requests[user_id]
  end
  next_user = next_user % #users + 1
  if next_user == 1 then
    flip = not flip
  end
  return patches[users[next_user]][flip and 1 or 2]
end

function response(status, headers, body)
  count("status_" .. status)
  local cache = headers["x-cache"] or headers["X-Cache"]
  if cache then
    count("cache_" .. string.lower(cache))
  elseif status == 200 then
    local user_id = body:match('"user_id":%s*(%d+)')
    if user_id and stats_requests[user_id] then
      table.insert(ready, user_id)
    end
  end
end
