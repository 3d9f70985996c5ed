#!/usr/bin/env bash
# One whole GS-LoRA forgetting task as a user runs it, against the official loop in PyTorch on
# the same images (docs/benchmarks.md, "The whole task"):
#   gs-lora forget: DINOv2-S (../shared/data/dinov2-small) at 224 px with a linear-probed head,
#     the first 10 classes of Omniglot's images_background_small1.zip (16 training and 4
#     validation drawings each), one task forgetting 2 classes, 5 epochs, batch 8, the official
#     loop's settings (replay floor(0.5 n) of the remaining group, the batch-mean bound at 105,
#     no proximal step): loading, scores before and after, the membership attack, the reports
#     and the checkpoint included;
#   tools/torch_gslora_task.py: the same task in PyTorch (transformers' Dinov2Model, timm-style
#     AdamW with a per-epoch cosine, the retain loader with the forget batches cycled).
# Each is timed whole by GNU time (wall seconds, peak resident memory); the probed model is made
# once beforehand and not timed.
#
#   tools/bench_task.sh [PYTHON]     # PYTHON: an interpreter with torch, transformers, safetensors
#
# Environment: OUT (default runs/bench-task; each run gets a new directory in it), THREADS (2,
# PyTorch's intra-op threads), GS_LORA_DATA (default ../shared/data).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${1:-python3}
data=${GS_LORA_DATA:-../shared/data}
out=${OUT:-runs/bench-task}
threads=${THREADS:-2}
zip=$data/omniglot/images_background_small1.zip
cargo build --release --bin gs-lora >&2
bin=${CARGO_TARGET_DIR:-target}/release/gs-lora
subset=(--data "$zip" --max-classes 10 --train-per-class 16)
[ -f "$out/model/gs_lora.json" ] ||
    "$bin" pretrain "${subset[@]}" --weights "$data/dinov2-small/model.safetensors" \
        --image-size 224 --out "$out/model" >&2
stamp=$(date +%Y%m%d-%H%M%S)
echo "# $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
echo "# gs-lora forget (flex)"
/usr/bin/time -f "gs-lora task: wall %e s, peak RSS %M KB" "$bin" forget "${subset[@]}" \
    --model "$out/model" --out "$out/run-$stamp" --eval-split validation --tasks 1 \
    --forget-per-task 2 --epochs 5 --batch-size 8 --replay-fraction 0.5 --bnd 105 \
    --bnd-per-sample off --proximal off 2>&1 | grep -E 'task 0|gs-lora task'
echo "# PyTorch $("$python" -c 'import torch; print(torch.__version__)')"
/usr/bin/time -f "PyTorch task: wall %e s, peak RSS %M KB" "$python" tools/torch_gslora_task.py \
    --data "$zip" --weights "$data/dinov2-small" --out "$out/torch-$stamp.pt" \
    --threads "$threads" 2>&1
