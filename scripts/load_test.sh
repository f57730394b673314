#!/usr/bin/env bash
# Bounded load test of `emofuse serve` on loopback with Debian's wrk: 3 s
# clips on /api/predict with the default model, one upload in ten garbage.
# Prints wrk's latency distribution, the count of answers by status, and the
# server's resident memory before and after.
# Usage: scripts/load_test.sh [SECONDS] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-30}
connections=${2:-8}
for tool in wrk sox; do
  command -v $tool > /dev/null || { echo "needs $tool: apt-get install -y wrk sox" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'kill $server 2> /dev/null || true; rm -rf "$work"' EXIT
sox ../shared/data/ravdess/Audio_Speech_Actors_01-24/Actor_04/03-01-04-01-02-01-04.flac \
  -b 16 "$work/clip.wav" trim 0 3
cargo build --release --quiet
port=18080
target/release/emofuse serve --addr 127.0.0.1:$port 2> "$work/server.log" &
server=$!
for _ in $(seq 50); do curl -sf http://127.0.0.1:$port/healthz > /dev/null && break; sleep 0.1; done
rss() { awk '/VmRSS/ {print $2 " kB"}' /proc/$server/status; }
echo "server RSS before: $(rss)"
cat > "$work/mixed.lua" <<LUA
local good = io.open("$work/clip.wav", "rb"):read("*a")
local bad = "this is not audio, it is a text file pretending to be one"
local counter = 0
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) ok, refused, other = 0, 0, 0 end
function request()
  counter = counter + 1
  local body = (counter % 10 == 0) and bad or good
  return wrk.format("POST", "/api/predict", { ["Content-Type"] = "application/octet-stream" }, body)
end
function response(status, headers, body)
  if status == 200 then ok = ok + 1 elseif status == 422 then refused = refused + 1 else other = other + 1 end
end
function done(summary, latency, requests)
  local o, r, x = 0, 0, 0
  for _, t in ipairs(threads) do o = o + t:get("ok"); r = r + t:get("refused"); x = x + t:get("other") end
  io.write(string.format("answers: %d × 200 (good clips), %d × 422 (garbage), %d other\n", o, r, x))
  io.write(string.format("p50 %.1f ms, p99 %.1f ms, %.1f requests/s\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.requests / (summary.duration / 1e6)))
end
LUA
wrk --latency -t 2 -c "$connections" -d "${duration}s" -s "$work/mixed.lua" http://127.0.0.1:$port
echo "server RSS after: $(rss)"
