#!/usr/bin/env bash
# The real-data comparison of docs/results.md ("Every method on real data"): DINOv2-S
# (../shared/data/dinov2-small) at 112 px with a linear-probed head, then `gs-lora compare` of
# GS-LoRA against the baselines on
#   - Fashion-MNIST (apt install dataset-fashion-mnist): 200 training and 50 test images per
#     class, tasks of 2 classes;
#   - Omniglot: the first 100 classes of images_background_small1.zip (OMNIGLOT_TRAIN training
#     drawings each, default 12 as the GS-LoRA tables of docs/results.md, the rest of the 20
#     for validation; the zip has no test split), tasks of 20.
# Environment variables change it: METHODS (comma-separated, default below), SEEDS (default
# "0,1,2"), TASKS (default 4), DATASETS (default "fm om"), SIZE (default 112), OMNIGLOT_TRAIN,
# OUT (default runs/real-compare), GS_LORA_DATA (default ../shared/data), EXTRA (more flags
# for compare).
# Rerunning resumes: finished (method, seed) runs are not trained again. The tables are
# $OUT/<fm|om>/comparison.md.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${GS_LORA_DATA:-../shared/data}
OUT=${OUT:-runs/real-compare}
SIZE=${SIZE:-112}
SEEDS=${SEEDS:-0,1,2}
TASKS=${TASKS:-4}
DATASETS=${DATASETS:-fm om}
OMNIGLOT_TRAIN=${OMNIGLOT_TRAIN:-12}
METHODS=${METHODS:-gs-lora,retrain-ft,ewc,lwf,scrub,salun}
EXTRA=${EXTRA:-}
cargo build --release --bin gs-lora
BIN=${CARGO_TARGET_DIR:-target}/release/gs-lora
WEIGHTS=$DATA/dinov2-small/model.safetensors

compare_on() { # short name, per-task classes, data flags..., --, compare flags...
    local name=$1 classes=$2
    shift 2
    local data=()
    while [ "$1" != -- ]; do data+=("$1"); shift; done
    shift
    [ -f "$OUT/$name-model/gs_lora.json" ] ||
        "$BIN" pretrain "${data[@]}" --weights "$WEIGHTS" --image-size "$SIZE" --out "$OUT/$name-model"
    /usr/bin/time -f "wall %e s, peak RSS %M KB" "$BIN" compare "${data[@]}" \
        --model "$OUT/$name-model" --out "$OUT/$name" --methods "$METHODS" --seeds "$SEEDS" \
        --reference retrain-ft --tasks "$TASKS" --forget-per-task "$classes" "$@" $EXTRA
}

case " $DATASETS " in *" fm "*)
compare_on fm 2 --data /usr/share/datasets/fashion-mnist --train-per-class 200 \
    --eval-per-class 50 -- ;;
esac
case " $DATASETS " in *" om "*)
compare_on om 20 --data "$DATA/omniglot/images_background_small1.zip" --max-classes 100 \
    --val-fraction "$(awk "BEGIN { print (20 - $OMNIGLOT_TRAIN) / 20 }")" \
    --train-per-class "$OMNIGLOT_TRAIN" -- --eval-split validation ;;
esac
