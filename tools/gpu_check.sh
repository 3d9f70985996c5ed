#!/usr/bin/env bash
# Everything a GPU machine should check, in one command (under ten minutes): run the core tests
# on the GPU backend, run both benchmarks on it and their PyTorch counterparts on CUDA, and print
# the rows for docs/benchmarks.md.
#
#   tools/gpu_check.sh [PYTHON]               # builds, then runs (a machine with Rust and a GPU)
#   tools/gpu_check.sh --pack FILE.tar.xz     # builds only, and packs the programs into FILE
#   BIN=FILE.tar.xz tools/gpu_check.sh [PYTHON]   # runs the packed programs (no Rust needed)
#
# PYTHON: an interpreter with torch (CUDA) and timm. Environment: BACKEND (wgpu; cuda where
# burn-cuda builds), BATCH (8), REPS (5). The packed programs are stripped and need no source
# tree; xz's x86 filter and a dictionary that spans them take the three (about 280 MB with flex
# and wgpu in) to about 31 MB, under a 64 MiB transfer limit (a few minutes on one core).
set -euo pipefail
# Archive paths as given, before the script moves to the repository root.
if [ "${1:-}" = "--pack" ]; then
    archive=$(realpath -m "${2:?--pack takes the archive to write, e.g. gpu.tar.xz}")
fi
packed=${BIN:+$(realpath "$BIN")}
cd "$(dirname "$0")/.."
backend=${BACKEND:-wgpu}
batch=${BATCH:-8}
reps=${REPS:-5}

# Builds the benchmarks and the core test binaries, and copies them into the directory $1.
build() {
    local dir=$1 target=${CARGO_TARGET_DIR:-target}
    mkdir -p "$dir"
    cargo build --release --features "$backend" --example bench_step --example bench_deform
    cp "$target/release/examples/bench_step" "$target/release/examples/bench_deform" "$dir/"
    # The core tests (tests/it: every op and loss on the backend; the library's five unit tests,
    # of size limits and batch shards, stay out), as cargo names the executable.
    local exe
    exe=$(cargo test --release -p gs-lora-core --features "$backend" --test it --no-run \
        --message-format=json 2>/dev/null | sed -nE 's/.*"executable":"([^"]+)".*/\1/p')
    [ -n "$exe" ] || { echo "gpu_check: the core test binary was not built" >&2; exit 1; }
    cp "$exe" "$dir/core_tests"
    strip "$dir"/*
}

log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT
bin=$log/bin
if [ "${1:-}" = "--pack" ]; then
    build "$bin"
    tar -C "$bin" -cf - . | xz -T1 --x86 --lzma2=preset=9,dict=256MiB > "$archive.partial"
    mv "$archive.partial" "$archive"
    exit 0
fi
python=${1:-python3}
if [ -n "$packed" ]; then
    mkdir -p "$bin" && tar -C "$bin" -xJf "$packed"
else
    build "$bin"
fi

echo "# $(date -u +%F) $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi')"
echo "# CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
echo "# torch: $("$python" -c 'import torch; print(torch.__version__, torch.version.cuda)')"

# A failing test does not stop the benchmarks; it fails the check at the end.
tests=passed
BURN_DEVICE=$backend "$bin/core_tests" > "$log/tests" 2>&1 || tests=failed
grep -E '^test result|FAILED|panicked' "$log/tests" || true

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
[ "$tests" = passed ] || { echo "gpu_check: the core tests failed on $backend" >&2; exit 1; }
