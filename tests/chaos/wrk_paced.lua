-- wrk script for the soak: cycle through a file of request paths (one per line) at a paced rate.
-- Usage: wrk -t1 -c8 -d600s -s tests/chaos/wrk_paced.lua http://127.0.0.1:PORT -- paths.txt DELAY_MS
-- Each connection waits DELAY_MS before each request, so the rate is about connections / (delay +
-- latency): the harness picks DELAY_MS for its target. DELAY_MS 0 = as fast as possible.
-- At the end it prints `WRK_JSON {...}` with the counts and the latency percentiles (µs).

local paths = {}
local index = 0
local pause_ms = 0

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then
      paths[#paths + 1] = line
    end
  end
  if #paths == 0 then
    error("no paths in " .. tostring(args[1]))
  end
  pause_ms = tonumber(args[2] or "0")
  index = math.random(#paths)
end

function delay()
  return pause_ms
end

function request()
  index = index % #paths + 1
  return wrk.format("GET", paths[index])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "errors_connect": %d, "errors_read": %d, '
      .. '"errors_write": %d, "errors_status": %d, "errors_timeout": %d, '
      .. '"lat_p50_us": %d, "lat_p99_us": %d, "lat_max_us": %d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
