#!/usr/bin/env bash
# Runs the Rust benchmarks and their PyTorch counterparts one after the other on this machine
# and prints every figure with each process's peak resident memory (the Rust programs print
# their own; GNU time measures the Python ones). The numbers in
# docs/benchmarks.md come from this script.
#
#   tools/bench_compare.sh [PYTHON]        # PYTHON: an interpreter with torch and timm
#
# Environment: BACKEND (flex), BATCH (8), REPS (5), THREADS (2, PyTorch's intra-op threads).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${1:-python3}
backend=${BACKEND:-flex}
batch=${BATCH:-8}
reps=${REPS:-5}
threads=${THREADS:-2}
target=${CARGO_TARGET_DIR:-target}

cargo build --release --example bench_step --example bench_deform >&2
peak() { /usr/bin/time -f "peak_rss_mib=%M" "$@" 2>&1 | sed -E 's/peak_rss_mib=([0-9]+)$/echo peak_rss_mib=$((\1 \/ 1024))/e'; }

echo "# gs-lora ($backend), ViT-S/16 GS-LoRA step"
"$target/release/examples/bench_step" --backend "$backend" --batch "$batch" --reps "$reps"
echo "# PyTorch $("$python" -c 'import torch; print(torch.__version__)'), same workload"
peak "$python" tools/torch_gslora_step.py --batch "$batch" --reps "$reps" --threads "$threads"
echo "# gs-lora ($backend), deformable sampling"
"$target/release/examples/bench_deform" --backend "$backend" --reps "$reps"
echo "# gs-lora ($backend), deformable sampling through grid_sample_2d"
"$target/release/examples/bench_deform" --backend "$backend" --reps "$reps" --impl grid-sample
echo "# PyTorch, deformable sampling"
peak "$python" tools/torch_deform_sampling.py --reps "$reps" --threads "$threads"
