-- wrk script: cycle through a file of request paths (one per line), so every request of a run is
-- one of thousands of distinct pre-signed URLs rather than one URL served from warm caches.
-- Usage: wrk -t1 -c16 -d10s -s bench/wrk_paths.lua http://127.0.0.1:PORT -- /path/to/paths.txt
-- At the end it prints one line `WRK_JSON {...}` with the counts and the latency percentiles (µs).

local paths = {}
local index = 0

function init(args)
  local file = args[1]
  for line in io.lines(file) do
    if #line > 0 then
      paths[#paths + 1] = line
    end
  end
  if #paths == 0 then
    error("no paths in " .. tostring(file))
  end
end

function request()
  index = index % #paths + 1
  return wrk.format("GET", paths[index])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "errors_connect": %d, "errors_read": %d, '
      .. '"errors_write": %d, "errors_status": %d, "errors_timeout": %d, "lat_mean_us": %.1f, '
      .. '"lat_p50_us": %d, "lat_p90_us": %d, "lat_p99_us": %d, "lat_p999_us": %d, "lat_max_us": %d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max))
end
