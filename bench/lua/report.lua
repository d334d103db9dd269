-- Shared by every scenario script (loaded with dofile; wrk runs with bench/lua as its cwd).
-- Gives each thread its index, lets scripts count things per thread in the global `counts`,
-- and prints one JSON line, prefixed BENCH_JSON, that bench/run.py parses.

local threads = {}

function setup(thread)
  thread:set("thread_index", #threads)
  table.insert(threads, thread)
end

counts = {}

function count(key)
  counts[key] = (counts[key] or 0) + 1
end

local function number(value)
  return string.format("%.3f", value)
end

function done(summary, latency, requests)
  local merged = {}
  for _, thread in ipairs(threads) do
    local theirs = thread:get("counts")
    if type(theirs) == "table" then
      for key, value in pairs(theirs) do
        merged[key] = (merged[key] or 0) + value
      end
    end
  end
  local counted = {}
  for key, value in pairs(merged) do
    table.insert(counted, string.format('"%s":%d', key, value))
  end
  local errors = summary.errors
  local parts = {
    '"duration_us":' .. summary.duration,
    '"requests":' .. summary.requests,
    '"bytes":' .. summary.bytes,
    '"errors":{"connect":' .. errors.connect .. ',"read":' .. errors.read ..
      ',"write":' .. errors.write .. ',"status":' .. errors.status ..
      ',"timeout":' .. errors.timeout .. '}',
    '"latency_us":{"mean":' .. number(latency.mean) .. ',"stdev":' .. number(latency.stdev) ..
      ',"max":' .. latency.max .. ',"p50":' .. latency:percentile(50) ..
      ',"p90":' .. latency:percentile(90) .. ',"p99":' .. latency:percentile(99) ..
      ',"p999":' .. latency:percentile(99.9) .. '}',
    '"counts":{' .. table.concat(counted, ",") .. '}',
  }
  io.write("BENCH_JSON {" .. table.concat(parts, ",") .. "}\n")
end
