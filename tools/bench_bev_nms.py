"""Benchmark: the native rotated BEV IoU / NMS (sparse3d.core.bev_nms) against its pure-torch
reference, side by side in one process, on detector-like candidate sets.

A candidate set is what a CenterHead decodes before NMS: objects of nuScenes sizes spread
over +-51.2 m with any heading, each seen by several candidates jittered around it (so
most boxes overlap a few others, as at the peaks of a heatmap). Both sides get the same
boxes; NMS keeps must be identical and IoUs equal to float32 rounding, or the run stops.

Timed: ``rotated_nms`` (no pre/post cap) and the full ``bev_iou`` matrix, median of
--repeats runs after one warm-up, at --threads.

    python tools/bench_bev_nms.py [--sizes 500 1000 4000] [--repeats 5] [--threads 2] [--json out.json]

The last printed line is a one-line summary.
"""

import sparse3d  # noqa: F401, I001  (first: it sets torch's OpenMP spin before torch loads)
import argparse
import statistics
import sys
from pathlib import Path

import torch

from sparse3d.core.bev_nms import bev_iou, bev_iou_ref, rotated_nms, rotated_nms_ref
from sparse3d.io.atomic import write_json_atomic

sys.path.insert(0, str(Path(__file__).parent))
from bench_conv2d import seconds  # noqa: E402

SIZES_LWH = torch.tensor([[4.6, 1.95, 1.73], [6.9, 2.5, 2.8], [11.0, 2.9, 3.5], [0.73, 0.67, 1.77], [0.41, 0.41, 1.07],
                          [0.5, 2.5, 0.98], [1.7, 0.6, 1.28]])
"""(dx, dy, dz) of car, truck, bus, pedestrian, cone, barrier, bicycle."""
CANDIDATES_PER_OBJECT = 8


def candidates(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 boxes [n, 7] (x, y, z, dx, dy, dz, yaw) and scores [n]: n / 8 objects, 8
    jittered candidates each."""
    g = torch.Generator().manual_seed(seed)
    objects = (n + CANDIDATES_PER_OBJECT - 1) // CANDIDATES_PER_OBJECT
    centres = (torch.rand(objects, 2, generator=g) * 2 - 1) * 51.2
    sizes = SIZES_LWH[torch.randint(len(SIZES_LWH), (objects,), generator=g)]
    yaw = (torch.rand(objects, generator=g) * 2 - 1) * torch.pi
    obj = torch.cat([centres, torch.zeros(objects, 1), sizes, yaw[:, None]], 1).repeat_interleave(CANDIDATES_PER_OBJECT, 0)[:n]
    jitter = torch.cat([0.3 * torch.randn(n, 2, generator=g), torch.zeros(n, 1), 0.1 * torch.randn(n, 3, generator=g),
                        0.2 * torch.randn(n, 1, generator=g)], 1)
    boxes = obj + jitter
    boxes[:, 3:6] = boxes[:, 3:6].clamp_min(0.1)
    return boxes.float(), torch.rand(n, generator=g)


def median_ms(fn, repeats: int) -> float:
    """Median wall-clock milliseconds of ``repeats`` calls of ``fn`` (after one warm-up)."""
    return 1e3 * statistics.median(seconds(fn, repeats))


def bench_size(n: int, repeats: int, threshold: float) -> dict[str, float]:
    boxes, scores = candidates(n, seed=n)
    keep, keep_ref = rotated_nms(boxes, scores, threshold), rotated_nms_ref(boxes, scores, threshold)
    if not torch.equal(keep, keep_ref):
        raise SystemExit(f"bench_bev_nms: {n} boxes: native NMS keeps {len(keep)} boxes, the reference {len(keep_ref)}")
    iou_diff = (bev_iou(boxes, boxes) - bev_iou_ref(boxes, boxes)).abs().max().item()
    if iou_diff > 1e-5:
        raise SystemExit(f"bench_bev_nms: {n} boxes: IoU differs from the reference by {iou_diff:.1e}")
    row = {
        "boxes": n, "kept": len(keep), "max_iou_diff": iou_diff,
        "nms_ms": median_ms(lambda: rotated_nms(boxes, scores, threshold), repeats),
        "nms_ref_ms": median_ms(lambda: rotated_nms_ref(boxes, scores, threshold), repeats),
        "iou_ms": median_ms(lambda: bev_iou(boxes, boxes), repeats),
        "iou_ref_ms": median_ms(lambda: bev_iou_ref(boxes, boxes), repeats),
    }
    row["nms_speedup"], row["iou_speedup"] = row["nms_ref_ms"] / row["nms_ms"], row["iou_ref_ms"] / row["iou_ms"]
    return row


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 1000, 4000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--threshold", type=float, default=0.2, help="NMS IoU threshold (CenterPoint's nuScenes: 0.2)")
    parser.add_argument("--json", type=str, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = [bench_size(n, args.repeats, args.threshold) for n in args.sizes]
    print(f"{'boxes':>6}{'kept':>6}{'nms ms':>10}{'ref ms':>10}{'ratio':>8}{'iou ms':>10}{'ref ms':>10}{'ratio':>8}")
    for r in rows:
        print(f"{r['boxes']:>6}{r['kept']:>6}{r['nms_ms']:>10.2f}{r['nms_ref_ms']:>10.1f}{r['nms_speedup']:>7.0f}x"
              f"{r['iou_ms']:>10.2f}{r['iou_ref_ms']:>10.1f}{r['iou_speedup']:>7.0f}x")
    if args.json:
        write_json_atomic(Path(args.json), rows, indent=2)
    print("bench_bev_nms: native NMS " + ", ".join(f"{r['nms_speedup']:.0f}x ({r['boxes']} boxes)" for r in rows)
          + f" the torch reference at {args.threads} threads, identical keeps")
    return rows


if __name__ == "__main__":
    main()
