#!/usr/bin/env python3
"""librosa vs emofuse feature throughput on the same clips, in one run.

Decodes every clip of a corpus (default: RAVDESS, 1440 clips), then times
librosa 0.11's MFCC (40) + zero-crossing rate + RMS with emofuse's settings
(16 kHz, n_fft 2048, hop 512, 128 Slaney mels, center=True), single-threaded:
one warm-up pass, best of --passes timed passes, audio already decoded. Then
it runs `emofuse bench features` on the same folder (which decodes first and
times the same way, on one thread and on all cores) and prints both
throughputs and the ratio.

Dependencies: scripts/requirements-golden.txt
Run from the repository root, after `cargo build --release`:
    python3 scripts/bench_features.py [--data ../shared/data/ravdess]
"""
import argparse
import json
import os
import subprocess
import time
from pathlib import Path

# One thread for numpy/scipy's FFT and BLAS: the single-threaded comparison.
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"

import librosa  # noqa: E402
import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
AUDIO = {".flac", ".wav", ".ogg", ".mp3", ".aif", ".aiff"}


def features(y):
    mfcc = librosa.feature.mfcc(y=y, sr=16000, n_mfcc=40, n_fft=2048, hop_length=512, n_mels=128)
    zcr = librosa.feature.zero_crossing_rate(y, frame_length=2048, hop_length=512)
    rms = librosa.feature.rms(y=y, frame_length=2048, hop_length=512)
    return mfcc, zcr, rms


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "ravdess"))
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--emofuse", default=str(ROOT / "target" / "release" / "emofuse"))
    args = parser.parse_args()

    files = sorted(p for p in Path(args.data).rglob("*") if p.suffix.lower() in AUDIO)
    clips = [sf.read(p, dtype="float32")[0] for p in files]
    assert all(sf.info(p).samplerate == 16000 for p in files[:10]), "the corpus must be 16 kHz"
    audio_s = sum(len(y) for y in clips) / 16000

    for y in clips[:50]:
        features(y)
    best = float("inf")
    for _ in range(args.passes):
        start = time.perf_counter()
        for y in clips:
            features(y)
        best = min(best, time.perf_counter() - start)
    librosa_rate = len(clips) / best

    out = subprocess.run(
        [args.emofuse, "bench", "features", "--data", args.data, "--passes", str(args.passes), "--json"],
        check=True, capture_output=True, text=True,
    ).stdout
    ours = json.loads(out)
    single, cores = ours["single_thread"], ours["all_cores"]
    assert single["clips"] == len(clips), "emofuse and librosa must see the same clips"

    print(f"{len(clips)} clips, {audio_s:.1f} s of audio (decoded before timing)")
    print(f"librosa {librosa.__version__} (numpy {np.__version__}), 1 thread: "
          f"{librosa_rate:8.1f} clips/s  {1e3 / librosa_rate:6.3f} ms/clip")
    print(f"emofuse, 1 thread:   {single['clips_per_s']:8.1f} clips/s  {single['ms_per_clip']:6.3f} ms/clip"
          f"  = {single['clips_per_s'] / librosa_rate:5.1f}x librosa")
    print(f"emofuse, {cores['threads']} threads:  {cores['clips_per_s']:8.1f} clips/s  {cores['ms_per_clip']:6.3f} ms/clip"
          f"  = {cores['clips_per_s'] / librosa_rate:5.1f}x librosa, scaling {ours['scaling']:.2f}x")


if __name__ == "__main__":
    main()
