#!/usr/bin/env bash
# Real-data evidence for docs/results.md ("Real data with the library defaults"): DINOv2-S
# (../shared/data/dinov2-small) at 112 px with a linear-probed head, then four continual
# forgetting tasks with GS-LoRA and GS-LoRA++, the default replay (10% of each class, at least
# one image) and 4-shot, seeds 0-2, the library defaults otherwise (10 epochs), on
#   - Omniglot: the first 100 classes of images_background_small1.zip (20 drawings each: 4 for
#     validation, 16 for training; the zip has no test split), 4 tasks of 20;
#   - Fashion-MNIST (apt install dataset-fashion-mnist): 200 training images per class, 50 test
#     images per class, 4 tasks of 2 (a fifth task would leave nothing to retain).
# Environment variables change it: SIZE, EPOCHS, SEEDS (default "0 1 2"; set but empty: the
# probed models only), METHODS, REPLAYS, DATASETS (default "om fm"), OMNIGLOT_TRAIN (training
# drawings per Omniglot class, default 16; the rest of the 20 are validation, through
# --val-fraction, which the model records: use another OUT, the probed model is per OUT),
# OUT (default runs/real),
# GS_LORA_DATA (default ../shared/data),
# EXTRA (more `gs-lora forget` flags, e.g. "--batch-size 4") with TAG (a run-name suffix).
# Runs land in $OUT/<om|fm>-<method>-<full|4shot><TAG>-s<seed>/ (rerunning resumes);
# `python3 tools/real_table.py $OUT` prints the tables.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${GS_LORA_DATA:-../shared/data}
OUT=${OUT:-runs/real}
SIZE=${SIZE:-112}
EPOCHS=${EPOCHS:-10}
SEEDS=${SEEDS-0 1 2}
METHODS=${METHODS:-gs-lora gs-lora++}
REPLAYS=${REPLAYS:-full 4shot}
DATASETS=${DATASETS:-om fm}
OMNIGLOT_TRAIN=${OMNIGLOT_TRAIN:-16}
EXTRA=${EXTRA:-}
TAG=${TAG:-}
cargo build --release --bin gs-lora
BIN=${CARGO_TARGET_DIR:-target}/release/gs-lora
WEIGHTS=$DATA/dinov2-small/model.safetensors

run_dataset() { # short name, data flags..., --, forgetting flags...
    local name=$1
    shift
    local data=()
    while [ "$1" != -- ]; do data+=("$1"); shift; done
    shift
    [ -f "$OUT/$name-model/gs_lora.json" ] ||
        "$BIN" pretrain "${data[@]}" --weights "$WEIGHTS" --image-size "$SIZE" --out "$OUT/$name-model"
    for method in $METHODS; do
        for replay in $REPLAYS; do
            local flags=()
            [ "$replay" = 4shot ] && flags=(--few-shot 4)
            for seed in $SEEDS; do
                local run="$OUT/$name-${method/gs-lora++/pp}-$replay$TAG-s$seed"
                run=${run/-gs-lora-/-gs-}
                echo "== $run"
                /usr/bin/time -f "wall %e s, peak RSS %M KB" "$BIN" forget "${data[@]}" \
                    --model "$OUT/$name-model" --out "$run" --method "$method" "${flags[@]}" \
                    --seed "$seed" --epochs "$EPOCHS" "$@" $EXTRA
            done
        done
    done
}

case " $DATASETS " in *" om "*)
run_dataset om --data "$DATA/omniglot/images_background_small1.zip" --max-classes 100 \
    --val-fraction "$(awk "BEGIN { print (20 - $OMNIGLOT_TRAIN) / 20 }")" \
    --train-per-class "$OMNIGLOT_TRAIN" -- --eval-split validation --tasks 4 --forget-per-task 20 ;;
esac
case " $DATASETS " in *" fm "*)
run_dataset fm --data /usr/share/datasets/fashion-mnist --train-per-class 200 --eval-per-class 50 \
    -- --tasks 4 --forget-per-task 2 ;;
esac
