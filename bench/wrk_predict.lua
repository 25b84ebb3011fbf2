-- wrk script of the issue-23 check: POST /predict/task-NNNN, one short text per request,
-- a random task of WRK_TASKS (default 100) and a random text of the five below.
--   wrk -t2 -c32 -d10s -s bench/wrk_predict.lua http://127.0.0.1:PORT
-- (bench/http_onnx.py runs it with --wrk; the texts are bench/plain_ceiling.py's WRK_TEXTS)
-- WRK_TEXTS_FILE (one text per line) replaces the five texts (bench/http_onnx.py's short texts).
local texts = {"a gorgeous, witty film", "a dull and lifeless mess", "not bad at all",
               "the cast is wonderful but the script is thin", "I walked out halfway"}
local tasks = tonumber(os.getenv("WRK_TASKS") or "100")
local file = os.getenv("WRK_TEXTS_FILE")
if file then
  texts = {}
  for line in io.lines(file) do
    texts[#texts + 1] = line:gsub("\\", "\\\\"):gsub('"', '\\"')
  end
end

function setup(thread)
  thread:set("seed", math.random(1, 1000000))
end

function init(args)
  math.randomseed(seed or os.time())
end

request = function()
  local body = '{"inputs": "' .. texts[math.random(#texts)] .. '"}'
  local path = string.format("/predict/task-%04d", math.random(0, tasks - 1))
  return wrk.format("POST", path, {["Content-Type"] = "application/json"}, body)
end

done = function(summary, latency, requests)
  io.write(string.format('{"wrk": true, "requests": %d, "seconds": %.3f, "rps": %.2f, "p50_ms": %.2f, "p99_ms": %.2f, "errors_status": %d, "errors_socket": %d}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
