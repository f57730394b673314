#!/usr/bin/env python3
"""Does a model change its answer when the recording is quieter?

Writes every audio file of a corpus folder as float WAVs at its own level and
turned down by each gain (float samples: no clamping, no requantisation, so
only the level changes), runs `emofuse predict --json` on each set, and
prints how many labels changed against the original level and the largest
change of one class's probability. RESULTS.md's level checks of the built-in
models were made this way:

    python3 scripts/level_check.py --model whisper --data ../shared/data/emodb
    python3 scripts/level_check.py --model default --data ../shared/data/emodb --gains-db 6,12

Needs numpy and soundfile (scripts/requirements-fixtures.txt) and a release
build of emofuse (`--emofuse` to name another binary).
"""
import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import soundfile as sf

AUDIO = {".flac", ".wav", ".ogg", ".mp3"}


def write_copies(files, gain_db, out_dir):
    """Each file at `gain_db` below its level, as a float WAV in out_dir; returns the list file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    scale = 10 ** (-gain_db / 20)
    paths = []
    for i, path in enumerate(files):
        samples, rate = sf.read(path, dtype="float32")
        # The index keeps names apart where two folders hold the same file name.
        target = out_dir / f"{i:06d}-{path.stem}.wav"
        sf.write(target, samples * scale, rate, subtype="FLOAT")
        paths.append(str(target))
    listing = out_dir / "files.txt"
    listing.write_text("\n".join(paths) + "\n")
    return listing


def predict(emofuse, model, listing):
    """{file name: (label, {class: probability})} from `emofuse predict --json`."""
    run = subprocess.run(
        [emofuse, "predict", "--model", model, "--json", str(listing)],
        capture_output=True,
        text=True,
    )
    if run.returncode != 0:
        sys.exit(f"emofuse predict failed on {listing}:\n{run.stderr}")
    rows = {}
    for line in run.stdout.splitlines():
        row = json.loads(line)
        rows[Path(row["path"]).name] = (row["label"], dict(zip(row["labels"], row["probabilities"])))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default", help="what `emofuse predict --model` takes")
    parser.add_argument("--data", required=True, type=Path, help="a folder of audio files (searched recursively)")
    parser.add_argument("--gains-db", default="6,12", help="how far to turn each file down, in dB")
    parser.add_argument("--emofuse", default="target/release/emofuse")
    args = parser.parse_args()

    files = sorted(p for p in args.data.rglob("*") if p.suffix.lower() in AUDIO)
    if not files:
        sys.exit(f"{args.data}: no audio files")
    gains = [float(g) for g in args.gains_db.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        base = predict(args.emofuse, args.model, write_copies(files, 0.0, Path(tmp) / "0"))
        for gain in gains:
            quieter = predict(args.emofuse, args.model, write_copies(files, gain, Path(tmp) / str(gain)))
            changed = sum(base[name][0] != quieter[name][0] for name in base)
            worst = max(
                abs(base[name][1][c] - quieter[name][1][c]) for name in base for c in base[name][1]
            )
            print(
                f"-{gain:g} dB: {changed} of {len(base)} labels changed ({100 * changed / len(base):.1f} %), "
                f"largest change of one class's probability {worst:.3f}"
            )


if __name__ == "__main__":
    main()
