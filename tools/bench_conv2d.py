"""Benchmark: sparse3d.nn.conv2d.Conv2d (the native conv2d_nhwc: the bits of im2col + the
deterministic linear kernel, the same at any thread count, without the columns) against
torch's nn.Conv2d (oneDNN), side by side in one process.

Shapes: the embedded repair network of gaussianobject (reconstruction.repair.embedded, its
default two levels of 16 and 32 channels) on one training batch (8 crops of 32 x 32) and
on one refresh (8 renders of 128 x 128); 3 x 3 convolutions, padding 1. Both modules hold
the same weights and their outputs are checked to agree.

Timed: forward, and forward + backward of a random linear loss; median of --repeats
runs (interleaved, after one warm-up each), at --threads.

    python tools/bench_conv2d.py [--repeats 20] [--threads 2] [--json out.json]

The last printed line is a one-line summary.
"""

import sparse3d  # noqa: F401, I001  (first: it sets torch's OpenMP spin before torch loads)
import argparse
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from sparse3d.io.atomic import write_json_atomic
from sparse3d.nn.conv2d import Conv2d

# (name, batch, channels in, channels out, side)
SHAPES = [
    ("train 16->16", 8, 16, 16, 32),
    ("train 32->32", 8, 32, 32, 16),
    ("refresh 16->16", 8, 16, 16, 128),
    ("refresh 32->32", 8, 32, 32, 64),
]


def seconds(step, repeats: int) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls of ``step`` (after one warm-up)."""
    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def bench_shape(batch: int, c_in: int, c_out: int, side: int, repeats: int) -> dict[str, float]:
    """Median milliseconds of both convolutions, forward and forward + backward."""
    torch.manual_seed(0)
    ours = Conv2d(c_in, c_out, 3, padding=1)
    onednn = nn.Conv2d(c_in, c_out, 3, padding=1)
    onednn.load_state_dict(ours.state_dict())
    x = torch.randn(batch, c_in, side, side)
    probe = torch.randn(batch, c_out, side, side)
    torch.testing.assert_close(ours(x), onednn(x), rtol=1e-4, atol=1e-4)

    def forward(module):
        with torch.no_grad():
            module(x)

    def train(module):
        inp = x.clone().requires_grad_(True)
        (module(inp) * probe).sum().backward()

    result = {}
    for kind, step in (("forward", forward), ("train", train)):
        # Interleaved, so that a change of machine load hits both alike.
        times = {"ours": [], "onednn": []}
        for _ in range(repeats):
            times["ours"] += seconds(lambda: step(ours), 1)
            times["onednn"] += seconds(lambda: step(onednn), 1)
        for name, values in times.items():
            result[f"{kind}_{name}_ms"] = 1e3 * statistics.median(values)
        result[f"{kind}_ratio"] = result[f"{kind}_ours_ms"] / result[f"{kind}_onednn_ms"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    results = {}
    for name, batch, c_in, c_out, side in SHAPES:
        row = bench_shape(batch, c_in, c_out, side, args.repeats)
        results[name] = row
        print(f"{name:>15} [{batch}, {c_in}, {side}, {side}]  forward {row['forward_ours_ms']:7.2f} ms vs oneDNN "
              f"{row['forward_onednn_ms']:7.2f} ms ({row['forward_ratio']:.2f}x)   forward+backward "
              f"{row['train_ours_ms']:7.2f} vs {row['train_onednn_ms']:7.2f} ms ({row['train_ratio']:.2f}x)", flush=True)
    if args.json:
        write_json_atomic(Path(args.json), {"threads": args.threads, "repeats": args.repeats, "shapes": results})
    forward = [r["forward_ratio"] for r in results.values()]
    train = [r["train_ratio"] for r in results.values()]
    print(f"deterministic Conv2d vs oneDNN at {args.threads} threads: forward {min(forward):.2f}-{max(forward):.2f}x, "
          f"forward+backward {min(train):.2f}-{max(train):.2f}x the time (median of {args.repeats})")


if __name__ == "__main__":
    main()
