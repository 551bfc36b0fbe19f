-- wrk script of the benchmark (bench/run.mjs). GET by default; with BENCH_BODY set, a POST of
-- that body with Content-Type BENCH_CONTENT_TYPE (default application/x-www-form-urlencoded: the
-- token endpoint; application/json for the MCP JSON-RPC bodies). Other headers come from wrk's -H.
--
-- Latency is measured here, not taken from wrk's own statistics: Debian's wrk 4.1.0 reported
-- means ten times what the run's own throughput allows (mean latency × req/s > connections),
-- while clock_gettime(CLOCK_MONOTONIC) around each request agrees with it. run.mjs starts one
-- wrk thread per connection (-t N -c N), so in each thread's Lua state a response always
-- answers the last request, and every request's latency is exact. Each thread keeps a
-- histogram in microseconds; done() merges them and prints one line "BENCH_JSON {...}".
local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clk_id, bench_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local ts = ffi.new("bench_timespec")
local function now_us()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) * 1000000 + tonumber(ts.tv_nsec) / 1000
end

local body = os.getenv("BENCH_BODY")
if body and body ~= "" then
  wrk.method = "POST"
  wrk.body = body
  local content_type = os.getenv("BENCH_CONTENT_TYPE")
  if not content_type or content_type == "" then content_type = "application/x-www-form-urlencoded" end
  wrk.headers["Content-Type"] = content_type
end

local threads = {}
function setup(thread)
  threads[#threads + 1] = thread
end

local raw, sent
function init(args)
  hist = {} -- global: read by done() through thread:get
  raw = wrk.format()
end

function request()
  sent = now_us()
  return raw
end

function response(status, headers, body)
  local us = math.floor(now_us() - sent)
  hist[us] = (hist[us] or 0) + 1
end

done = function(summary, latency, requests)
  local merged, n, sum = {}, 0, 0
  for _, t in ipairs(threads) do
    for us, count in pairs(t:get("hist")) do
      merged[us] = (merged[us] or 0) + count
      n = n + count
      sum = sum + us * count
    end
  end
  local keys = {}
  for us in pairs(merged) do keys[#keys + 1] = us end
  table.sort(keys)
  local function percentile(p)
    local want, acc = n * p / 100, 0
    for _, us in ipairs(keys) do
      acc = acc + merged[us]
      if acc >= want then return us end
    end
    return 0
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"timed":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,' ..
      '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d}\n',
    summary.requests, summary.duration, n, percentile(50), percentile(90), percentile(99),
    n > 0 and sum / n or 0, e.connect, e.read, e.write, e.status, e.timeout))
end
