#!/usr/bin/env python3
"""PyTorch + transformers vs emofuse: Whisper hidden states of real clips, batched, in one run.

What building the training cache costs: the first --limit clips of a corpus (path order),
decoded before the clock, sorted by length and encoded --batch at a time in trimmed mode
(log-mel padded to the batch's longest clip, the position table sliced to it), every
hidden state read back. clips/s on 2 threads each, each side in its own process. The
PyTorch side runs transformers' feature extractor and the encoder's own modules, with
no attention mask (transformers' Whisper encoder has none); emofuse masks each clip's
padding, so its batched states equal its single-clip ones.

Dependencies: scripts/requirements-torch.txt
Run from the repository root, after `cargo build --release`:
    python3 scripts/bench_encode.py --data ../shared/data/ravdess [--limit 200] [--batch 8]
"""
import argparse
import os
import resource
import time
from pathlib import Path

import bench_driver

DEFAULT = Path(os.environ.get("EMOFUSE_CACHE", Path.home() / ".cache" / "emofuse")) / "backbones" / "whisper-base"


def torch_side(checkpoint, data, limit, batch):
    import soundfile
    import torch

    encoder, extractor = bench_driver.whisper_encoder(checkpoint)

    start = time.perf_counter()
    clips = [soundfile.read(path, dtype="float32")[0] for path in sorted(Path(data).rglob("*.flac"))[:limit]]
    decode_seconds = time.perf_counter() - start
    clips.sort(key=len)
    batches = [clips[i:i + batch] for i in range(0, len(clips), batch)]

    def encode(audio):
        return [s.numpy() for s in bench_driver.whisper_trimmed(encoder, extractor, audio)]

    with torch.inference_mode():
        encode(batches[0])
        start = time.perf_counter()
        for audio in batches:
            encode(audio)
        seconds = time.perf_counter() - start
    return {
        "torch": torch.__version__,
        "clips": len(clips),
        "audio_seconds": sum(len(c) for c in clips) / 16000,
        "decode_seconds": decode_seconds,
        "seconds": seconds,
        "clips_per_s": len(clips) / seconds,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(DEFAULT))
    parser.add_argument("--data", required=True)
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--batch", type=int, default=8)
    bench_driver.add_arguments(parser)
    args = parser.parse_args()
    forwarded = ["--checkpoint", args.checkpoint, "--data", args.data, "--limit", str(args.limit),
                 "--batch", str(args.batch)]
    sides = bench_driver.both_sides(__file__, args, forwarded,
                                    lambda: torch_side(args.checkpoint, args.data, args.limit, args.batch),
                                    ["bench", "encode", *forwarded])
    if sides is None:
        return
    theirs, ours = sides
    if abs(theirs["audio_seconds"] - ours["audio_seconds"]) > 0.01:
        raise SystemExit(f"the sides read different clips: {theirs['audio_seconds']:.2f} s of audio "
                         f"vs {ours['audio_seconds']:.2f} s")
    print(f"{args.checkpoint}: hidden states of {ours['clips']} clips of {args.data} "
          f"({ours['audio_seconds']:.0f} s of audio), batches of {args.batch} by length, 2 threads each")
    print(f"  PyTorch {theirs['torch']}: {theirs['seconds']:.1f} s, {theirs['clips_per_s']:.1f} clips/s, "
          f"peak {theirs['peak_rss_mib']:.0f} MiB")
    print(f"  emofuse: {ours['seconds']:.1f} s, {ours['clips_per_s']:.1f} clips/s, peak {ours['peak_rss_mib']:.0f} MiB")
    print(f"  emofuse clips/s / PyTorch clips/s: {ours['clips_per_s'] / theirs['clips_per_s']:.2f}x")


if __name__ == "__main__":
    main()
