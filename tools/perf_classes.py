"""Where the time goes, per op class, from a `perf record` of a benchmark.

    perf record -F 499 -g -o step.data target/release/examples/bench_step --reps 5
    python3 tools/perf_classes.py step.data

Reads `perf report --no-children --sort symbol` and sums the self time of each symbol into the
classes of docs/benchmarks.md. Model construction (seeded initialisation) is reported apart,
since the benchmark's timings exclude it.
"""
import re
import subprocess
import sys
from collections import defaultdict

CLASSES = [
    ("model construction (not timed)", r"sample_truncated_normal|__cos|__ieee754_log|rand_chacha|SeededInit"),
    ("matmul (gemm kernels and packing)", r"gemm"),
    ("fused kernels (GELU, softmax, bias; pulp)", r"pulp"),
    ("GELU (erf)", r"erf"),
    ("softmax / exp", r"expf|exp_"),
    ("attention kernel (inference)", r"attention"),
    ("autodiff bookkeeping", r"burn_autodiff|Gradients|Checkpoint|NodeId|hashbrown|HashMap"),
    ("gather / scatter", r"gather|select|scatter|index"),
    ("layout copies (permute, reshape, cat)", r"copy_2d_tiled|memmove|memcpy|ops::cat|slice"),
    ("allocation, zeroing, page faults", r"memset|page|clear_page|malloc|free|mmap|munmap|alloc|mi_|_mm_|mem_cgroup|memcg|lruvec|folio|rcu|vma|unmap"),
    ("reductions (sum, mean, max)", r"reduce|sum_dim|mean|argmax|max_dim"),
    ("elementwise (binary, scalar, unary)", r"binary|scalar_op|unary|zip|macerator|mask|clamp|powf|sqrt"),
    ("threading (rayon, scheduler)", r"rayon|sched|futex|spin|yield|syscall|switch"),
]


def main():
    data = sys.argv[1] if len(sys.argv) > 1 else "perf.data"
    report = subprocess.run(
        ["perf", "report", "-i", data, "--no-children", "--sort", "symbol", "--stdio"],
        capture_output=True, text=True, check=True,
    ).stdout
    totals = defaultdict(float)
    for line in report.splitlines():
        m = re.match(r"\s+([\d.]+)%\s+\[[.k]\]\s+(.*)", line)
        if not m:
            continue
        share, symbol = float(m.group(1)), m.group(2)
        name = next((c for c, pat in CLASSES if re.search(pat, symbol)), "other")
        totals[name] += share
    timed = 100.0 - totals.pop("model construction (not timed)", 0.0)
    print(f"| op class | share of the timed run |")
    print("|---|---|")
    for name, share in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {100 * share / timed:.1f}% |")


if __name__ == "__main__":
    main()
