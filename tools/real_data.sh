#!/usr/bin/env bash
# Real-data evidence for docs/results.md: DINOv2-S (../shared/data/dinov2-small) with a
# linear-probed head, then continual forgetting with GS-LoRA and GS-LoRA++, full replay and
# 4-shot, on
#   - Omniglot: the first 100 classes of images_background_small1.zip, 4 tasks of 20;
#   - Fashion-MNIST (apt install dataset-fashion-mnist): 10 classes, 4 tasks of 2 (a fifth task
#     would erase the last two classes and leave nothing to retain).
# Sized for a 2-core CPU: 56×56 inputs (a 4×4 patch grid), 8 training images per Omniglot class
# and 32 per Fashion-MNIST class, 2 epochs per task. Environment variables change them: SIZE,
# EPOCHS, OMNIGLOT_TRAIN, FASHION_TRAIN, DATASETS (default "omniglot fashion-mnist"), and OUT
# (default runs/real), GS_LORA_DATA (default ../shared/data). Each run's results.json,
# curves and plots land in $OUT/<dataset>/<method>-<replay>/; rerunning resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${GS_LORA_DATA:-../shared/data}
OUT=${OUT:-runs/real}
SIZE=${SIZE:-56}
EPOCHS=${EPOCHS:-2}
OMNIGLOT_TRAIN=${OMNIGLOT_TRAIN:-8}
FASHION_TRAIN=${FASHION_TRAIN:-32}
DATASETS=${DATASETS:-omniglot fashion-mnist}
cargo build --release --bin gs-lora
BIN=${CARGO_TARGET_DIR:-target}/release/gs-lora
WEIGHTS=$DATA/dinov2-small/model.safetensors

run_dataset() { # name, tasks, classes per task, evaluation split, data flags...
    local name=$1 tasks=$2 per_task=$3 split=$4
    shift 4
    local data=("$@")
    [ -f "$OUT/$name/model/gs_lora.json" ] ||
        "$BIN" pretrain "${data[@]}" --weights "$WEIGHTS" --image-size "$SIZE" --out "$OUT/$name/model"
    for method in gs-lora gs-lora++; do
        for replay in "replay-fraction 1" "few-shot 4"; do
            local run="$OUT/$name/$method-${replay// /-}"
            echo "== $name $method --$replay"
            /usr/bin/time -f "wall %e s, peak RSS %M KB" "$BIN" forget "${data[@]}" \
                --model "$OUT/$name/model" --out "$run" --method "$method" --$replay \
                --tasks "$tasks" --forget-per-task "$per_task" --epochs "$EPOCHS" \
                --eval-split "$split"
        done
    done
}

case " $DATASETS " in *" omniglot "*)
# The Omniglot zip has no test split: its runs measure on a validation slice of each class.
run_dataset omniglot 4 20 validation --data "$DATA/omniglot/images_background_small1.zip" \
    --max-classes 100 --train-per-class "$OMNIGLOT_TRAIN" ;;
esac
case " $DATASETS " in *" fashion-mnist "*)
run_dataset fashion-mnist 4 2 test --data /usr/share/datasets/fashion-mnist \
    --train-per-class "$FASHION_TRAIN" --eval-per-class 50 ;;
esac
