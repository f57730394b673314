"""The shared half of the benchmarks against PyTorch (scripts/bench_*.py).

Each side runs in its own process, so that peak memory (max RSS) is its own: the
script re-runs itself with --torch-only for the PyTorch side, then runs the release
emofuse with --json on 2 threads. Both sides time the same way: one warm-up call,
then the median (and best) of the timed calls.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags every comparison has: the emofuse binary and the hidden --torch-only."""
    parser.add_argument("--emofuse", default=str(ROOT / "target" / "release" / "emofuse"))
    parser.add_argument("--torch-only", action="store_true", help=argparse.SUPPRESS)


def timed(call, runs: int) -> dict:
    """One untimed warm-up call of `call`, then `runs` timed ones: median and best, in seconds."""
    call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    times.sort()
    return {"median_s": times[len(times) // 2], "best_s": times[0]}


def run_emofuse(binary: str, arguments: list) -> dict:
    """`emofuse ARGUMENTS --json` on 2 threads, as parsed JSON."""
    out = subprocess.run([binary, *arguments, "--json"], check=True, capture_output=True, text=True,
                         env={**os.environ, "RAYON_NUM_THREADS": "2"}).stdout
    return json.loads(out)


def both_sides(script: str, args, forwarded: list, torch_side, emofuse_arguments: list):
    """With --torch-only: prints `torch_side()` as JSON and returns None (the child's
    job). Otherwise runs `script` again with `forwarded` flags and --torch-only in a new
    process, then emofuse with `emofuse_arguments`; returns (PyTorch's, emofuse's) JSON."""
    if args.torch_only:
        print(json.dumps(torch_side()))
        return None
    theirs = json.loads(subprocess.run([sys.executable, script, *forwarded, "--torch-only"],
                                       check=True, capture_output=True, text=True).stdout)
    return theirs, run_emofuse(args.emofuse, emofuse_arguments)


def whisper_encoder(checkpoint: str):
    """The converted Whisper checkpoint's encoder (transformers, eval mode) and its
    feature extractor, on 2 threads."""
    import torch
    from safetensors.torch import load_file
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    torch.set_num_threads(2)
    config = WhisperConfig.from_pretrained(checkpoint)
    model = WhisperModel(config).eval()
    state = load_file(Path(checkpoint) / "model.safetensors")
    model.load_state_dict({k.removeprefix("model."): v for k, v in state.items()}, strict=False)
    return model.encoder, WhisperFeatureExtractor(feature_size=config.num_mel_bins)


def whisper_trimmed(encoder, extractor, audio) -> list:
    """Every hidden state of `audio` (one clip, or a list padded to the longest) in trimmed
    mode: the encoder's own modules with the position table sliced, the golden files'
    forward (scripts/golden_whisper.py)."""
    import golden_whisper

    features = extractor(audio, sampling_rate=16000, padding="longest", return_tensors="pt").input_features
    return golden_whisper.encode(encoder, features)[0]
