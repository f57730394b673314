#!/usr/bin/env bash
# Property-based testing of `emofuse serve` from its own OpenAPI document
# with schemathesis (PyPI): every operation gets generated and boundary-case
# requests; each answer must be documented, schema-valid and not a 5xx, and
# the server must still be up (and its memory bounded) afterwards.
#
# usage: scripts/schemathesis.sh [EXAMPLES_PER_OPERATION]   (default 100)
# EMOFUSE_BIN picks the binary (default target/debug/emofuse, as `cargo test` builds it).
#
# The check `positive_data_acceptance` is left out on purpose: the schema
# says an upload is any bytes (`format: binary`), and bytes that are not audio
# are rightly refused with 422; no OpenAPI schema can say "must be audio".
set -euo pipefail
cd "$(dirname "$0")/.."
examples=${1:-100}
bin=${EMOFUSE_BIN:-target/debug/emofuse}
venv=target/schemathesis-venv
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check schemathesis==4.32.5
fi
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin" serve --addr "127.0.0.1:$port" > target/schemathesis-serve.log 2>&1 &
server=$!
trap 'kill $server 2> /dev/null || true' EXIT
healthy() {
  python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)' \
    "http://127.0.0.1:$port/healthz" 2> /dev/null
}
for _ in $(seq 100); do
  healthy && break
  sleep 0.1
done
rss() { awk '/VmRSS/ {print $2}' "/proc/$server/status"; }
before=$(rss)
"$venv/bin/schemathesis" run "http://127.0.0.1:$port/api/openapi.json" \
  --checks all --exclude-checks positive_data_acceptance \
  --max-examples "$examples" --seed 1
healthy || { echo "the server is down after the run" >&2; exit 1; }
after=$(rss)
echo "server RSS: ${before} kB before, ${after} kB after"
