#!/usr/bin/env bash
# The main job on the embedded default data: generate synthetic aerial scenes, cut them into patches, derive
# image-level labels, then run every stage of the weakly supervised pipeline and print each stage's metrics.
# Takes a few minutes on 2 CPU cores. Outputs: Dataset/synthetic*, sess/demo_*.pth, result/demo/.
# Usage: bash demo.sh [extra run_sample.py flags, e.g. --device cuda]
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python}
RAW=Dataset/synthetic_raw
ROOT=Dataset/synthetic
OUT=result/demo
LISTS=$ROOT/lists
COMMON=(--voc12_root "$ROOT" --seed 0 --log_name "$OUT/demo" "$@")

echo "== 1. synthetic scenes -> $RAW"
$PY -m data.synthetic --out "$RAW" --num_tiles 2 --scenes_per_tile 4 --size 512 --seed 0
echo "== 2. patches and image-level labels -> $ROOT"
$PY -m data.prepare --images "$RAW" --masks "$RAW" --palette dubai --fg_classes building \
    --patch_size 128 --out_root "$ROOT" --list_out "$LISTS/all.txt" --quiet
$PY write_numpy.py --voc12_root "$ROOT" --list "$LISTS/all.txt" \
    --out_list "$LISTS/train_aug.txt" --out_pos_list "$LISTS/train_aug_building.txt"

echo "== 3. CAM classifier, CAMs, AdvCAM, evaluation"
$PY run_sample.py "${COMMON[@]}" --train_cam_pass True --make_cam_pass True --eval_cam_pass True \
    --train_list "$LISTS/train_aug.txt" --infer_list "$LISTS/train_aug.txt" \
    --cam_crop_size 128 --cam_batch_size 16 --cam_num_epochs 4 --cam_learning_rate 0.01 \
    --cam_scales 1.0,0.5,1.5 --cam_weights_name sess/demo_cam.pth --cam_out_dir "$OUT/cam"
