#!/usr/bin/env bash
# The main job on the embedded default data: generate synthetic aerial scenes, cut them into patches, derive
# image-level labels, then run every stage of the weakly supervised pipeline (CAM -> AdvCAM -> IR labels -> IRN ->
# random-walk pseudo masks -> building instances -> segmentation model -> a predicted map) and log each stage's
# metrics. A few minutes on 2 CPU cores. Outputs: Dataset/synthetic*, sess/demo_*.pth, result/demo/.
# Usage: bash demo.sh [extra run_sample.py flags, e.g. --device cuda]
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python}
RAW=Dataset/synthetic_raw
ROOT=Dataset/synthetic
OUT=result/demo
LISTS=$ROOT/lists
COMMON=(--voc12_root "$ROOT" --seed 0 --log_name "$OUT/demo"
        --cam_weights_name sess/demo_cam.pth --irn_weights_name sess/demo_irn.pth --seg_weights_name sess/demo_seg.pth
        --cam_out_dir "$OUT/cam_adv" --ir_label_out_dir "$OUT/ir_label" --sem_seg_out_dir "$OUT/sem_seg"
        --ins_seg_out_dir "$OUT/ins_seg" --seg_out_dir "$OUT/seg" --cam_scales 1.0,1.5,2.0 "$@")

echo "== 1. synthetic scenes -> $RAW; patches and image-level labels -> $ROOT"
$PY -m data.synthetic --out "$RAW" --num_tiles 3 --scenes_per_tile 4 --size 512 --seed 0
$PY -m data.prepare --images "$RAW" --masks "$RAW" --palette dubai --fg_classes building \
    --patch_size 128 --out_root "$ROOT" --list_out "$LISTS/all.txt" --quiet
$PY write_numpy.py --voc12_root "$ROOT" --list "$LISTS/all.txt" \
    --out_list "$LISTS/train_aug.txt" --out_pos_list "$LISTS/train_aug_building.txt"
# Tiles 1-2 are the training area (image-level labels only); Tile 3 is held out to test the final model.
grep -E '^Tile_[12]__' "$LISTS/train_aug.txt" > "$LISTS/train.txt"
grep -E '^Tile_[12]__' "$LISTS/train_aug_building.txt" > "$LISTS/train_building.txt"
grep -E '^Tile_3__' "$LISTS/all.txt" > "$LISTS/test.txt"

echo "== 2. CAM classifier, plain CAMs and their evaluation"
$PY run_sample.py "${COMMON[@]}" --train_cam_pass True --make_cam_pass True --eval_cam_pass True \
    --train_list "$LISTS/train.txt" --infer_list "$LISTS/train.txt" --cam_out_dir "$OUT/cam" \
    --cam_crop_size 128 --cam_batch_size 16 --cam_num_epochs 5 --cam_learning_rate 0.0005

echo "== 3. AdvCAM (obtain_CAM_masking.py) and its evaluation"
$PY obtain_CAM_masking.py "${COMMON[@]}" --adv_iter 2 --AD_coeff 7 --AD_stepsize 0.08 --score_th 0.6 \
    --train_list "$LISTS/train.txt"
$PY run_sample.py "${COMMON[@]}" --eval_cam_pass True --infer_list "$LISTS/train.txt"

echo "== 4. IR labels, IRN (gated boundary module), pseudo masks, building instances"
$PY run_sample.py "${COMMON[@]}" --cam_to_ir_label_pass True --conf_fg_thres 0.5 --conf_bg_thres 0.2 \
    --train_list "$LISTS/train_building.txt"
$PY run_sample.py "${COMMON[@]}" --train_irn_pass True --irn_batch_size 16 --irn_crop_size 128 --irn_num_epochs 3 \
    --irn_learning_rate 0.1 --train_list "$LISTS/train_building.txt" --infer_list "$LISTS/train.txt"
$PY run_sample.py "${COMMON[@]}" --make_sem_seg_pass True --eval_sem_seg_pass True --sem_seg_bg_thres 0.3 \
    --make_ins_seg_pass True --eval_ins_seg_pass True --infer_list "$LISTS/train.txt"

echo "== 5. segmentation model on the pseudo masks, evaluated on held-out Tile 3, and a predicted map"
$PY run_sample.py "${COMMON[@]}" --train_seg_pass True --eval_seg_pass True --seg_label_source pseudo \
    --train_list "$LISTS/train.txt" --seg_val_list "$LISTS/test.txt" --seg_crop_size 128 --seg_batch_size 8 \
    --seg_num_epochs 4
$PY run_sample.py "${COMMON[@]}" --predict_pass True --predict_input "$RAW/Tile 3/images/image_part_001.jpg" \
    --seg_out_dir "$OUT/map"

echo "== metrics"
for f in "$OUT"/cam/eval_cam.json "$OUT"/cam_adv/eval_cam.json "$OUT"/sem_seg/eval_sem_seg.json \
         "$OUT"/ins_seg/eval_ins_seg.json "$OUT"/seg/eval_seg.json; do
    $PY -c "import json,sys; r=json.load(open(sys.argv[1])); k='map50' if 'map50' in r else 'miou'; \
print(f'{sys.argv[1]:45s} {k} {r[k]:.3f}', ' '.join(f'{n}={v:.3f}' for n,v in r.get('iou',r.get('ap50',{})).items() if v is not None))" "$f"
done
echo "pictures: $OUT/*/overlays/, map: $OUT/map/"
