#!/usr/bin/env bash
# The whole test suite on a fresh machine with the Rust toolchain: installs
# what the browser test needs (Debian's chromium, playwright-core from npm),
# then runs cargo test. The tests read the real corpora from ../shared/data.
set -euo pipefail
cd "$(dirname "$0")/.."
# The module layering (which module may name which; one place names the device).
python3 ../shared/tools/layers.py
if [ ! -x /usr/bin/chromium ]; then
  SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium > /dev/null
fi
(cd tests/web && npm ci --no-audit --no-fund --silent)
cargo test --locked
# The server against its own OpenAPI document (schemathesis from PyPI, ~1 min).
scripts/schemathesis.sh 100
