-- POST /tasks with varied bodies (titles, priorities, tags, due dates) over many users' tokens.
-- usage: wrk -s post.lua URL -- TOKENS_FILE   (one token per line)
dofile("report.lua")

local tokens = {}
local priorities = { "low", "medium", "high" }
local sent = 0

function init(args)
  local file = assert(io.open(args[1], "r"))
  for line in file:lines() do
    if line ~= "" then
      table.insert(tokens, line)
    end
  end
  file:close()
  sent = (thread_index or 0) * 1000003
end

function request()
  sent = sent + 1
  local headers = {
    ["Authorization"] = "Bearer " .. tokens[sent % #tokens + 1],
    ["Content-Type"] = "application/json",
  }
  local body = string.format(
    '{"title": "bench task %d", "description": "created by the benchmark", ' ..
      '"priority": "%s", "due_date": "2027-%02d-%02d", "tags": ["bench", "t%d"]}',
    sent, priorities[sent % 3 + 1], sent % 12 + 1, sent % 28 + 1, sent % 7)
  return wrk.format("POST", "/tasks", headers, body)
end

function response(status, headers, body)
  count("status_" .. status)
end
