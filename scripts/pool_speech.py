#!/usr/bin/env python3
"""Pools per-frame Whisper hidden states over the clip's loud frames only, for
scripts/probe.py: does leaving out the silence around the speech help the probe?

Input: `emofuse embed --backbone whisper-base --layer all --pool none --npy FRAMES/`
arrays ([layers, frames, hidden], one encoder frame per 20 ms in trimmed mode).
A frame is kept when its 20 ms of audio has an RMS within --within-db dB of the
clip's loudest frame. Output, per clip, what `--pool mean-std` writes ([layers,
2 * hidden]: mean, then std over the kept frames), so probe.py reads it as it is;
with --beside-every-frame, the mean over every frame and then the mean over the kept
ones instead (probe.py's `--variant meanstd-all` then uses both).

    emofuse data folds ../shared/data/ravdess --json > ravdess.json
    emofuse embed --backbone whisper-base --layer all --pool none --npy frames/ravdess/ ../shared/data/ravdess
    python3 scripts/pool_speech.py frames/ravdess ravdess.json speech25/ravdess --within-db 25
    python3 scripts/probe.py --within ravdess.json:speech25/ravdess --variant mean-all

Needs numpy and soundfile (PyPI). Run from the repository root (the folds' paths are
relative to it).
"""
import argparse
import json
from pathlib import Path

import numpy as np
import soundfile

SAMPLES_PER_FRAME = 320  # Whisper: hop 160 at 16 kHz, then the stride-2 convolution


def loud_frames(audio, frames, within_db):
    """Which of the clip's encoder frames are within `within_db` dB of its loudest."""
    padded = np.zeros(frames * SAMPLES_PER_FRAME, dtype=np.float32)
    n = min(len(audio), len(padded))
    padded[:n] = audio[:n]
    level = 10 * np.log10((padded.reshape(frames, SAMPLES_PER_FRAME) ** 2).mean(1) + 1e-12)
    return level >= level.max() - within_db


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("frames", type=Path)
    parser.add_argument("folds", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--within-db", type=float, default=25.0)
    parser.add_argument("--beside-every-frame", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    kept = []
    for clip in json.loads(args.folds.read_text())["clips"]:
        stem = Path(clip["path"]).stem
        states = np.load(args.frames / f"{stem}.npy")  # [layers, frames, hidden]
        audio, _ = soundfile.read(clip["path"], dtype="float32")
        mask = loud_frames(audio, states.shape[1], args.within_db)
        kept.append(mask.mean())
        speech = states[:, mask, :]
        if args.beside_every_frame:
            pair = [states.mean(1), speech.mean(1)]
        else:
            pair = [speech.mean(1), speech.std(1)]
        np.save(args.out / f"{stem}.npy", np.concatenate(pair, axis=1))
    print(f"{args.out}: {np.mean(kept):.1%} of the frames kept on average")


if __name__ == "__main__":
    main()
