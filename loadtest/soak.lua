-- wrk script of loadtest/soak.sh: rotates over the soak's HTTP routes (the JWT one with
-- SOAK_TOKEN as bearer token), counts the answers by status, and writes the totals as
-- JSON to SOAK_OUT when done. Run with -t1 (one thread: one set of counters).
local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

local paths = {}
for path in string.gmatch(os.getenv("SOAK_PATHS") or "/plain,/jwt,/limited,/cached", "[^,]+") do
   table.insert(paths, path)
end
local token = os.getenv("SOAK_TOKEN") or ""
local n = 0
statuses = {}

function request()
   n = n + 1
   local path = paths[(n % #paths) + 1]
   if path == "/jwt" then
      return wrk.format("GET", path, { ["Authorization"] = "Bearer " .. token })
   end
   return wrk.format("GET", path)
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
   local counts = {}
   for _, thread in ipairs(threads) do
      for status, count in pairs(thread:get("statuses")) do
         counts[status] = (counts[status] or 0) + count
      end
   end
   local parts = {}
   for status, count in pairs(counts) do
      table.insert(parts, string.format('"%d": %d', status, count))
   end
   local e = summary.errors
   local out = io.open(os.getenv("SOAK_OUT"), "w")
   out:write(string.format(
      '{"requests": %d, "statuses": {%s}, "socket_errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}, "p50_ms": %.3f, "p99_ms": %.3f}',
      summary.requests, table.concat(parts, ", "), e.connect, e.read, e.write, e.timeout,
      latency:percentile(50) / 1000, latency:percentile(99) / 1000))
   out:close()
end
