-- wrk script: POST a rotating set of real request bodies, then print the results as one JSON line.
--
--   wrk -t1 -c16 -d10s -s benchmarks/wrk/rotate.lua http://127.0.0.1:PORT -- BODIES.jsonl /infer
--
-- BODIES.jsonl holds one complete JSON request body per line (benchmarks/http_load.py writes it into a temp dir).
-- Every wrk thread builds its own table of pre-formatted requests at start-up and walks it from its own offset,
-- so no two threads send the same sequence and no time is spent formatting requests during the run.
-- done() prints `WRK_JSON {...}`: request count, duration, bytes, socket and status errors (status = HTTP >= 400),
-- and latency in microseconds (min, mean, stdev, max, p50, p90, p99, p99.9).

local threads = {}
local counter = 0

function setup(thread)
   thread:set("thread_id", counter)
   counter = counter + 1
   table.insert(threads, thread)
end

local requests = {}
local position = 1

function init(args)
   local path = args[1]
   local target = args[2] or "/infer"
   if path == nil then
      error("usage: wrk ... -s rotate.lua URL -- BODIES.jsonl [PATH]")
   end
   local file = assert(io.open(path, "r"))
   local headers = { ["Content-Type"] = "application/json" }
   for line in file:lines() do
      if #line > 0 then
         table.insert(requests, wrk.format("POST", target, headers, line))
      end
   end
   file:close()
   if #requests == 0 then
      error("no request bodies in " .. path)
   end
   -- spread the threads' starting points over the table
   local id = tonumber(thread_id) or 0  -- set as a global of this thread's state by setup()
   position = (id * 7919) % #requests + 1
end

function request()
   local req = requests[position]
   position = position % #requests + 1
   return req
end

function done(summary, latency, _requests)
   local e = summary.errors
   io.write(string.format(
      'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,'
         .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
         .. '"latency_us":{"min":%d,"mean":%.1f,"stdev":%.1f,"max":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d}}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.min, latency.mean, latency.stdev, latency.max,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9)
   ))
end
