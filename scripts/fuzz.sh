#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer through cargo-fuzz) of every parser of
# outside bytes: audio decoding, manifests, model folders, checkpoints,
# CTranslate2 files and server uploads. cargo-fuzz needs nightly features;
# RUSTC_BOOTSTRAP=1 enables them on the stable toolchain that is here.
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
# A crash leaves its input in fuzz/artifacts/<target>/ and fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(audio_bytes manifest model_files checkpoint ctranslate2 upload)
command -v cargo-fuzz > /dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O
bin=fuzz/target/x86_64-unknown-linux-gnu/release
status=0
for target in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$target"
  log=$(mktemp)
  mkdir -p "fuzz/artifacts/$target"
  if "$bin/$target" -artifact_prefix="fuzz/artifacts/$target/" "fuzz/corpus/$target" "fuzz/seeds/$target" \
      -max_total_time="$seconds" -rss_limit_mb=4096 -timeout=30 -print_final_stats=1 > "$log" 2>&1; then
    result="no crash"
  else
    result="CRASH (see fuzz/artifacts/$target and $log)"
    status=1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  corpus=$(ls "fuzz/corpus/$target" | wc -l)
  printf '%-12s %6s s  %10s executions  corpus %5s  %s\n' "$target" "$seconds" "$runs" "$corpus" "$result"
done
exit $status
