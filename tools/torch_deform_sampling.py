"""PyTorch reference for multi-scale deformable sampling, for side-by-side timing with
`cargo run --release --example bench_deform`.

Workload (keep the Rust benchmark identical): Deformable DETR's defaults, 8 heads of width 32,
4 levels, 4 points, the feature maps of an 800x1088 input (100x136, 50x68, 25x34, 13x17),
BATCH images and QUERIES queries (300: the decoder's cross-attention). The sampling is the
reference `ms_deform_attn_core_pytorch` formulation (grid_sample per level, bilinear, zeros,
align_corners=False), which is what runs on a CPU; the backward takes the gradients of
sum(output) with respect to values, locations and weights.
Prints `deform_sampling_fwd_bwd batch=B median_ms=... min_ms=... max_ms=...` and the same for
`deform_sampling_fwd` (under no_grad), medians over REPS after WARMUP.

Usage: python tools/torch_deform_sampling.py [--batch 2] [--queries 300] [--reps 5] [--threads 2]
       [--device cpu|cuda]
"""
import argparse
import statistics
import time

import torch

# The reference formulation, shared with the fixtures the parity tests read.
from make_deform_fixtures import reference

SHAPES = [(100, 136), (50, 68), (25, 34), (13, 17)]
HEADS, HEAD_DIM, POINTS = 8, 32, 4


def sample(value, locations, weights):
    return reference(value, SHAPES, locations, weights)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    tokens = sum(h * w for h, w in SHAPES)
    levels = len(SHAPES)
    value = torch.randn(a.batch, tokens, HEADS, HEAD_DIM, device=dev, requires_grad=True)
    locations = torch.rand(a.batch, a.queries, HEADS, levels, POINTS, 2, device=dev, requires_grad=True)
    weights = torch.randn(a.batch, a.queries, HEADS, levels * POINTS, device=dev).softmax(-1)
    weights = weights.view(a.batch, a.queries, HEADS, levels, POINTS).requires_grad_()

    def fwd_bwd():
        grads = torch.autograd.grad(sample(value, locations, weights).sum(), (value, locations, weights))
        sum(g.sum() for g in grads).item()

    def fwd():
        with torch.no_grad():
            sample(value, locations, weights).sum().item()

    for name, f in (("deform_sampling_fwd_bwd", fwd_bwd), ("deform_sampling_fwd", fwd)):
        for _ in range(a.warmup):
            f()
        ts = []
        for _ in range(a.reps):
            t = time.perf_counter()
            f()
            ts.append((time.perf_counter() - t) * 1e3)
        print(f"{name} batch={a.batch} median_ms={statistics.median(ts):.1f} min_ms={min(ts):.1f} max_ms={max(ts):.1f}")


if __name__ == "__main__":
    main()
