#!/usr/bin/env python3
"""PyTorch + transformers vs emofuse: wav2vec2-base encoder forward time, in one run.

Both run the same checkpoint (random-initialised wav2vec2-base made by
`scripts/golden_wav2vec2.py --full-size DIR`, or any HF wav2vec2/HuBERT folder) on
seeded white noise of each length, with 2 threads each, batch 1: one warm-up forward,
then the median of --runs timed forwards. Each side runs in its own process so that
peak memory (max RSS) is its own. Beside each forward, PyTorch times the forward's
matrix products alone (same shapes, same order): what no forward with kernels of that
speed can go below, against the goal of 0.8x PyTorch's time.

Dependencies: scripts/requirements-torch.txt
Run from the repository root, after `cargo build --release`:
    python3 scripts/bench_wav2vec2.py --checkpoint DIR [--seconds 3,10]
"""
import argparse
import resource

import bench_driver


def torch_side(checkpoint, seconds, runs):
    import torch
    from transformers import AutoModel

    torch.set_num_threads(2)
    model = AutoModel.from_pretrained(checkpoint).eval()
    generator = torch.Generator().manual_seed(0)
    config = model.config.to_dict()
    times = []
    for length in seconds:
        x = torch.rand(1, int(length * 16000), generator=generator) * 2 - 1
        with torch.inference_mode():
            times.append({"seconds_of_audio": length, **bench_driver.timed(lambda: model(x), runs),
                          "floor": bench_driver.products_alone(bench_driver.wav2vec2_products(config, x.shape[1]),
                                                               runs)})
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"torch": torch.__version__, "times": times, "peak_rss_mib": peak}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
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
    print(f"{args.checkpoint}, batch 1, 2 threads each, median of {args.runs}")
    print(f"{'clip':>6}  {'PyTorch ' + theirs['torch']:>22}  {'emofuse':>10}  emofuse / PyTorch")
    for t, o in zip(theirs["times"], ours["modes"][0]["times"]):
        print(f"{t['seconds_of_audio']:>5.1f}s  {1e3 * t['median_s']:>19.1f} ms  {1e3 * o['median_s']:>7.1f} ms"
              f"  {o['median_s'] / t['median_s']:.2f}x")
    print(f"peak memory: PyTorch {theirs['peak_rss_mib']:.0f} MiB, emofuse {ours['peak_rss_mib']:.0f} MiB")
    print("the forward's matrix products alone, in PyTorch (the floor of a forward with kernels of this speed):")
    for t, o in zip(theirs["times"], ours["modes"][0]["times"]):
        bench_driver.print_floor(f"{t['seconds_of_audio']:.1f}s", t["median_s"], o["median_s"], t["floor"])


if __name__ == "__main__":
    main()
