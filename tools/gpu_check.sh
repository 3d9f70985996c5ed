#!/usr/bin/env bash
# Everything a GPU machine should check, in one command (under ten minutes on a machine with
# many cores): build the GPU backend, run the core tests on it, run both benchmarks on it and
# their PyTorch counterparts on CUDA, and print the rows for docs/benchmarks.md.
#
#   tools/gpu_check.sh [PYTHON]     # PYTHON: an interpreter with torch (CUDA) and timm
#
# Environment: BACKEND (wgpu; cuda where burn-cuda builds), BATCH (8), REPS (5).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${1:-python3}
backend=${BACKEND:-wgpu}
batch=${BATCH:-8}
reps=${REPS:-5}
target=${CARGO_TARGET_DIR:-target}
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT

echo "# $(date -u +%F) $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi')"
echo "# CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
echo "# torch: $("$python" -c 'import torch; print(torch.__version__, torch.version.cuda)')"

cargo build --release --features "$backend" --example bench_step --example bench_deform
BURN_DEVICE=$backend cargo test --release -p gs-lora-core --features "$backend" 2>&1 | tail -n 3

"$target/release/examples/bench_step" --backend "$backend" --batch "$batch" --reps "$reps" |
    tee "$log/rust"
"$target/release/examples/bench_deform" --backend "$backend" --reps "$reps" | tee -a "$log/rust"
(cd tools && "$python" torch_gslora_step.py --device cuda --batch "$batch" --reps "$reps") |
    tee "$log/torch"
(cd tools && "$python" torch_deform_sampling.py --device cuda --reps "$reps") | tee -a "$log/torch"

# `NAME batch=B median_ms=M …` lines of both sides, joined by name.
median() { sed -nE 's/^([a-z_]+) batch=[0-9]+ median_ms=([0-9.]+).*/\1 \2/p' "$1" | sort; }
echo
echo "| figure ($backend vs PyTorch CUDA) | gs-lora ms | PyTorch ms | ratio |"
echo "|---|---|---|---|"
join <(median "$log/rust") <(median "$log/torch") |
    awk '{ printf "| %s | %.1f | %.1f | %.2f× |\n", $1, $2, $3, $2 / $3 }'
