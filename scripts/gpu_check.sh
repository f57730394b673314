#!/usr/bin/env bash
# On a machine with a GPU: the checks behind BENCHMARKS.md's GPU section.
# 1. the GPU-vs-CPU test (built-in model and tiny Whisper within 1e-3), failing
#    unless the adapter's name contains $EMOFUSE_EXPECT_GPU (default NVIDIA);
# 2. three training epochs of the spectral model on the CPU and on the GPU, each
#    timed (the GPU's first epoch includes compiling its kernels).
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
  target/release/emofuse train --data "$data" --model spectral --epochs 3 --validation 0 \
    --device "$device" --out "$out/$device" --cache-dir "$out/cache" > /dev/null
  # The epochs' own times, from the run's log (decoding and saving left out).
  seconds=$(python3 -c 'import json, sys; print(" / ".join("%.3f" % json.loads(l)["seconds"] for l in open(sys.argv[1])))' \
    "$out/$device/train_log.jsonl")
  echo "training epochs on $device: $seconds s (corpus $data)"
done
