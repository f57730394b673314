#!/usr/bin/env bash
# The whole test suite on a fresh machine with the Rust toolchain: checks the
# module layering, installs what the browser test needs (Debian's chromium,
# playwright-core from npm), then runs cargo test, the Slurm test
# (scripts/slurm-test.sh), the Python package's tests (scripts/python-test.sh)
# and schemathesis. The tests
# read the real corpora from ../shared/data.
#
# usage: scripts/test.sh [--gpu]
#   --gpu  also compiles the `gpu` feature (burn's Vulkan backend) and runs the
#          GPU-vs-CPU test, which skips, saying why, without a GPU. Not in CI's
#          run: the check alone costs ~11 min on 2 cores (BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
gpu=false
for arg in "$@"; do
  case "$arg" in
    --gpu) gpu=true ;;
    *) echo "usage: scripts/test.sh [--gpu]" >&2; exit 2 ;;
  esac
done
# The module layering (which module may name which; one place names the device).
python3 ../shared/tools/layers.py
SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
if [ ! -x /usr/bin/chromium ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium > /dev/null
fi
(cd tests/web && npm ci --no-audit --no-fund --silent)
cargo test --locked
# Sharded prediction on a real one-node Slurm (~1-2 min with its install).
$SUDO scripts/slurm-test.sh target/debug/emofuse
# The Python package: wheel built by maturin, pytest against the CLI (~1.5 min).
scripts/python-test.sh
# The server against its own OpenAPI document (schemathesis from PyPI, ~1 min).
scripts/schemathesis.sh 100
if $gpu; then
  cargo test --locked --features gpu gpu:: -- --nocapture
fi
