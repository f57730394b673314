#!/usr/bin/env python3
"""PyTorch + transformers vs emofuse: Whisper encoder (front end included), in one run.

Both sides run the same converted checkpoint (`scripts/get-whisper-base.sh` writes
~/.cache/emofuse/backbones/whisper-base) on seeded white noise of each length, 2 threads
each, batch 1, returning all hidden states: one warm-up, then the median of --runs.
Modes: `padded30s` (the reference: log-mel padded to 3000 frames, transformers'
WhisperEncoder as it is) and `trimmed` (the clip's own frames; on the PyTorch side the
encoder's own modules with the position table sliced, as scripts/golden_whisper.py does).
Each side runs in its own process so that peak memory (max RSS) is its own. Beside
each forward, PyTorch times the forward's matrix products alone (same shapes, same
order): what no forward with kernels of that speed can go below, against the goal of
0.8x PyTorch's time.

Dependencies: scripts/requirements-torch.txt
Run from the repository root, after `cargo build --release`:
    python3 scripts/bench_whisper.py [--checkpoint DIR] [--seconds 3,10]
"""
import argparse
import os
import resource
from pathlib import Path

import bench_driver

DEFAULT = Path(os.environ.get("EMOFUSE_CACHE", Path.home() / ".cache" / "emofuse")) / "backbones" / "whisper-base"


def torch_side(checkpoint, seconds, runs):
    import torch

    encoder, extractor = bench_driver.whisper_encoder(checkpoint)

    def trimmed(audio):
        return bench_driver.whisper_trimmed(encoder, extractor, audio)

    def padded(audio):
        features = extractor(audio, sampling_rate=16000, return_tensors="pt").input_features
        return encoder(features, output_hidden_states=True).hidden_states

    def mel_frames(mode, audio):
        return 3000 if mode == "padded30s" else len(audio) // 160

    generator = torch.Generator().manual_seed(0)
    config = encoder.config.to_dict()
    report = {"torch": torch.__version__, "modes": []}
    for mode, forward in [("trimmed", trimmed), ("padded30s", padded)]:
        times = []
        for length in seconds:
            audio = (torch.rand(int(length * 16000), generator=generator) * 2 - 1).numpy()
            products = bench_driver.whisper_products(config, mel_frames(mode, audio))
            with torch.inference_mode():
                times.append({"seconds_of_audio": length, **bench_driver.timed(lambda: forward(audio), runs),
                              "floor": bench_driver.products_alone(products, runs)})
        report["modes"].append({"mode": mode, "times": times})
    report["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return report


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(DEFAULT))
    parser.add_argument("--seconds", default="3,10")
    parser.add_argument("--runs", type=int, default=5)
    bench_driver.add_arguments(parser)
    args = parser.parse_args()
    seconds = [float(s) for s in args.seconds.split(",")]
    forwarded = ["--checkpoint", args.checkpoint, "--seconds", args.seconds, "--runs", str(args.runs)]
    sides = bench_driver.both_sides(__file__, args, forwarded, lambda: torch_side(args.checkpoint, seconds, args.runs),
                                    ["bench", "forward", *forwarded])
    if sides is None:
        return
    theirs, ours = sides
    print(f"{args.checkpoint}: log-mel + encoder, all hidden states, batch 1, 2 threads each, median of {args.runs}")
    print(f"{'mode':>10} {'clip':>6}  {'PyTorch ' + theirs['torch']:>22}  {'emofuse':>10}  emofuse / PyTorch")
    for t_mode in theirs["modes"]:
        o_mode = next(m for m in ours["modes"] if m["mode"] == t_mode["mode"])
        for t, o in zip(t_mode["times"], o_mode["times"]):
            print(f"{t_mode['mode']:>10} {t['seconds_of_audio']:>5.1f}s  {1e3 * t['median_s']:>19.1f} ms"
                  f"  {1e3 * o['median_s']:>7.1f} ms  {o['median_s'] / t['median_s']:.2f}x")
    print(f"peak memory: PyTorch {theirs['peak_rss_mib']:.0f} MiB, emofuse {ours['peak_rss_mib']:.0f} MiB")
    print("the forward's matrix products alone, in PyTorch (the floor of a forward with kernels of this speed):")
    for t_mode in theirs["modes"]:
        o_mode = next(m for m in ours["modes"] if m["mode"] == t_mode["mode"])
        for t, o in zip(t_mode["times"], o_mode["times"]):
            bench_driver.print_floor(f"{t_mode['mode']} {t['seconds_of_audio']:.1f}s", t["median_s"], o["median_s"],
                                     t["floor"])


if __name__ == "__main__":
    main()
