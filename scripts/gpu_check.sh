#!/usr/bin/env bash
# On a machine with a GPU: the checks behind BENCHMARKS.md's GPU section.
# 1. the GPU-vs-CPU test (built-in model and tiny Whisper within 1e-3), failing
#    unless the adapter's name contains $EMOFUSE_EXPECT_GPU (default NVIDIA);
# 2. one training epoch of the spectral model on the CPU and on the GPU, timed.
# Needs only the checkout (the bundled clips); builds with the `gpu` feature.
#
# usage: scripts/gpu_check.sh [DATA]   (DATA: a corpus for the timed epoch,
#                                       default examples/ravdess-mini)
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-examples/ravdess-mini}
export EMOFUSE_EXPECT_GPU=${EMOFUSE_EXPECT_GPU:-NVIDIA}
cargo test --locked --release --features gpu gpu:: -- --nocapture
cargo build --locked --release --features gpu
out=$(mktemp -d)
for device in cpu gpu; do
  target/release/emofuse train --data "$data" --model spectral --epochs 1 --validation 0 \
    --device "$device" --out "$out/$device" --cache-dir "$out/cache" > /dev/null
  # The epoch's own time, from the run's log (decoding and saving left out).
  seconds=$(python3 -c 'import json, sys; print(json.loads(open(sys.argv[1]).readline())["seconds"])' \
    "$out/$device/train_log.jsonl")
  echo "one training epoch on $device: $seconds s (corpus $data)"
done
