#!/usr/bin/env python3
"""PyTorch vs emofuse: a training step of the spectral model (the default model's architecture).

Same architecture on both sides (three conv blocks 42→64→128→128, kernel 5: conv → layer
norm over channels → GELU → dropout 0.2 → max-pool 2 with ceil mode but after the last;
padding masks applied as emofuse applies them; attentive pooling 128→64→1; classifier
128→128→8 with GELU and dropout 0.3), same fixed random batch [16, 42, 116], cross-entropy,
backward, AdamW (lr 1e-3, weight decay 0.01) with each parameter's gradient clipped to
norm 1. 2 threads each, one warm-up step, median of --steps; each side in its own process.

Dependencies: scripts/requirements-torch.txt
Run from the repository root, after `cargo build --release`:
    python3 scripts/bench_train_step.py [--steps 30]
"""
import argparse

import bench_driver


def torch_side(batch, frames, steps):
    import torch
    from torch import nn

    torch.set_num_threads(2)
    torch.manual_seed(0)

    class Block(nn.Module):
        def __init__(self, c_in, c_out, pool):
            super().__init__()
            self.conv = nn.Conv1d(c_in, c_out, 5, padding=2)
            self.norm = nn.LayerNorm(c_out)
            self.dropout = nn.Dropout(0.2)
            self.pool = nn.MaxPool1d(2, ceil_mode=True) if pool else None

        def forward(self, x, pad):
            h = self.dropout(nn.functional.gelu(self.norm(self.conv(x).transpose(1, 2)).transpose(1, 2)))
            if self.pool is None:
                return h.masked_fill(pad.unsqueeze(1), 0.0), pad
            pooled = self.pool(h.masked_fill(pad.unsqueeze(1), -1e9))
            pad = pad[:, ::2]
            return pooled.masked_fill(pad.unsqueeze(1), 0.0), pad

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList([Block(42, 64, True), Block(64, 128, True), Block(128, 128, False)])
            self.attention = nn.Linear(128, 64)
            self.context = nn.Linear(64, 1, bias=False)
            self.hidden = nn.Linear(128, 128)
            self.dropout = nn.Dropout(0.3)
            self.output = nn.Linear(128, 8)

        def forward(self, x, pad):
            for block in self.blocks:
                x, pad = block(x, pad)
            frames = x.transpose(1, 2)
            scores = self.context(torch.tanh(self.attention(frames))).squeeze(2).masked_fill(pad, -1e9)
            alpha = torch.softmax(scores, 1)
            pooled = (frames * alpha.unsqueeze(2)).sum(1)
            return self.output(self.dropout(nn.functional.gelu(self.hidden(pooled))))

    model = Model().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    x = torch.rand(batch, 42, frames) * 2 - 1
    pad = torch.zeros(batch, frames, dtype=torch.bool)
    labels = torch.arange(batch) % 8

    def step():
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x, pad), labels)
        loss.backward()
        for p in model.parameters():
            torch.nn.utils.clip_grad_norm_([p], 1.0)
        optimizer.step()

    return {"torch": torch.__version__, **bench_driver.timed(step, steps)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--frames", type=int, default=116)
    parser.add_argument("--steps", type=int, default=30)
    bench_driver.add_arguments(parser)
    args = parser.parse_args()
    common = ["--batch", str(args.batch), "--frames", str(args.frames), "--steps", str(args.steps)]
    sides = bench_driver.both_sides(__file__, args, common, lambda: torch_side(args.batch, args.frames, args.steps),
                                    ["bench", "train-step", *common])
    if sides is None:
        return
    theirs, ours = sides
    print(f"spectral training step, batch {args.batch} × 42 × {args.frames}, 2 threads each, median of {args.steps}")
    print(f"  PyTorch {theirs['torch']}: {1e3 * theirs['median_s']:.2f} ms "
          f"({args.batch / theirs['median_s']:.0f} clips/s)")
    print(f"  emofuse: {1e3 * ours['median_s']:.2f} ms ({args.batch / ours['median_s']:.0f} clips/s)")
    print(f"  emofuse throughput / PyTorch throughput: {theirs['median_s'] / ours['median_s']:.2f}x")


if __name__ == "__main__":
    main()
