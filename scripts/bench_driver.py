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


def transformer_products(frames: int, hidden: int, intermediate: int, heads: int, layers: int) -> list:
    """The (m, k, n) matrix products of `layers` transformer layers over `frames`
    frames: q, k, v, out projections, the feed-forward pair, and per head the
    scores and the weighted sum."""
    width = hidden // heads
    per_layer = [(frames, hidden, hidden)] * 4 + [(frames, hidden, intermediate), (frames, intermediate, hidden)]
    per_layer += [(frames, width, frames), (frames, frames, width)] * heads
    return per_layer * layers


def wav2vec2_products(config: dict, samples: int) -> list:
    """Every matrix product of a wav2vec2 forward on one clip: each convolution of the
    feature encoder as one product over its windows, the grouped positional
    convolution as one product per group, the projection and the transformer."""
    products, frames, channels = [], samples, 1
    for out, kernel, stride in zip(config["conv_dim"], config["conv_kernel"], config["conv_stride"]):
        frames = (frames - kernel) // stride + 1
        products.append((frames, channels * kernel, out))
        channels = out
    hidden, groups = config["hidden_size"], config["num_conv_pos_embedding_groups"]
    group = hidden // groups
    products += [(frames, group * config["num_conv_pos_embeddings"], group)] * groups
    products.append((frames, channels, hidden))
    return products + transformer_products(frames, hidden, config["intermediate_size"],
                                           config["num_attention_heads"], config["num_hidden_layers"])


def whisper_products(config: dict, mel_frames: int) -> list:
    """Every matrix product of a Whisper encoder forward on `mel_frames` log-mel frames:
    the two convolutions (kernel 3; the second with stride 2) and the transformer."""
    hidden = config["d_model"]
    frames = (mel_frames + 1) // 2
    products = [(mel_frames, config["num_mel_bins"] * 3, hidden), (frames, hidden * 3, hidden)]
    return products + transformer_products(frames, hidden, config["encoder_ffn_dim"],
                                           config["encoder_attention_heads"], config["encoder_layers"])


def products_alone(products: list, runs: int) -> dict:
    """PyTorch's time for `products` alone (random matrices of those shapes, one after
    another, 2 threads), timed like a forward; and their total floating-point
    operations. The floor of any forward that makes those products with kernels of
    this speed: everything else in it costs time on top."""
    import torch

    torch.set_num_threads(2)
    generator = torch.Generator().manual_seed(0)
    operands = {shape: (torch.rand(shape[0], shape[1], generator=generator),
                        torch.rand(shape[1], shape[2], generator=generator)) for shape in set(products)}

    def multiply():
        for shape in products:
            a, b = operands[shape]
            torch.mm(a, b)

    return {"flops": sum(2 * m * k * n for m, k, n in products), **timed(multiply, runs)}


def print_floor(label: str, torch_s: float, emofuse_s: float, floor: dict) -> None:
    """One line: both sides' rates over the whole forward, the products alone, and
    whether 0.8x PyTorch's time is above that floor."""
    gflops = floor["flops"] / 1e9
    goal = 0.8 * torch_s
    verdict = "above the floor" if goal > floor["median_s"] else "BELOW the products alone"
    print(f"{label:>17}  {gflops:6.1f} GFLOP  PyTorch {gflops / torch_s:5.0f} GFLOP/s  "
          f"emofuse {gflops / emofuse_s:5.0f} GFLOP/s  products alone {1e3 * floor['median_s']:6.1f} ms "
          f"({gflops / floor['median_s']:.0f} GFLOP/s)  0.8x PyTorch {1e3 * goal:6.1f} ms: {verdict}")
