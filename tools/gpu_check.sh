#!/usr/bin/env bash
# Everything a GPU machine should check, in one command (under ten minutes): run the core tests
# on the GPU backend, run both benchmarks on it and their PyTorch counterparts on CUDA, and print
# the rows for docs/benchmarks.md.
#
#   tools/gpu_check.sh [PYTHON]          # builds here, then runs (a machine with Rust and a GPU)
#   tools/gpu_check.sh --pack DIR        # builds only, and copies the programs into DIR
#   BIN=DIR tools/gpu_check.sh [PYTHON]  # runs the programs of DIR (a GPU machine without Rust)
#
# PYTHON: an interpreter with torch (CUDA) and timm. Environment: BACKEND (wgpu; cuda where
# burn-cuda builds), BATCH (8), REPS (5). Packed programs are stripped and the core test
# binaries need no source tree, so DIR travels alone (about 60 MiB with wgpu and flex in).
set -euo pipefail
cd "$(dirname "$0")/.."
backend=${BACKEND:-wgpu}
batch=${BATCH:-8}
reps=${REPS:-5}

# Builds the benchmarks and the core test binaries, and copies them into $1.
pack() {
    local dir=$1 target=${CARGO_TARGET_DIR:-target}
    mkdir -p "$dir"
    cargo build --release --features "$backend" --example bench_step --example bench_deform
    cp "$target/release/examples/bench_step" "$target/release/examples/bench_deform" "$dir/"
    # Every test executable of gs-lora-core (the unit tests and tests/it), by cargo's own list.
    local i=0
    while read -r exe; do
        cp "$exe" "$dir/core_tests_$i"
        i=$((i + 1))
    done < <(cargo test --release -p gs-lora-core --features "$backend" --no-run \
        --message-format=json 2>/dev/null |
        sed -nE 's/.*"executable":"([^"]+)".*/\1/p')
    [ "$i" -gt 0 ] || { echo "gpu_check: no core test binary was built" >&2; exit 1; }
    strip "$dir"/*
}

if [ "${1:-}" = "--pack" ]; then
    pack "${2:?--pack takes a directory}"
    exit 0
fi
python=${1:-python3}
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT
bin=${BIN:-}
if [ -z "$bin" ]; then
    bin=$log/bin
    pack "$bin"
fi

echo "# $(date -u +%F) $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi')"
echo "# CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
echo "# torch: $("$python" -c 'import torch; print(torch.__version__, torch.version.cuda)')"

for tests in "$bin"/core_tests_*; do
    BURN_DEVICE=$backend "$tests" 2>&1 | grep -E '^test result|FAILED|panicked' || true
done

"$bin/bench_step" --backend "$backend" --batch "$batch" --reps "$reps" | tee "$log/rust"
"$bin/bench_deform" --backend "$backend" --reps "$reps" | tee -a "$log/rust"
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
