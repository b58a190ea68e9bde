#!/usr/bin/env bash
# The best measured recipe for 0.5 m imagery, end to end on Dubai (BENCHMARKS.md), from image-level labels only:
#
#   1. prepare the patches and their image-level labels (Tiles 1-4 train, 5-6 held out, 7-8 image-level labels only)
#   2. CAM classifier on every tile with an image-level label (Tiles 1-4 + 7-8), 10 epochs
#   3. CAMs of the training area at upsampled scales 2.0, 3.0                     (building IoU 0.557 at thr 0.30)
#   4. IR labels at thresholds picked from the CAMs' precision (fg 0.5, bg 0.2)
#   5. IRN with the gated boundary module, 15 epochs
#   6. pseudo masks: a short walk with local normalisation                        (0.547 at thr 0.20)
#   7. segmentation model on the pseudo masks; evaluated on the held-out tiles     (mIoU 0.638, building IoU 0.293)
#      and on its own training patches                                            (building IoU 0.565)
#
# 24.5 min on 2 CPU cores. Training stages are skipped when their weights exist and evaluated stages when their
# result exists (delete them to redo); the other passes skip the images they have already done.
# Usage: bash bench/dubai_pipeline.sh [DATA_DIR] [OUT_DIR]
#   DATA_DIR: the raw Dubai folder (default ../shared/data/dubai_aerial); OUT_DIR: default result/dubai/pipeline
# Knobs (environment): DEVICE (auto), CAM_EPOCHS (10), IRN_EPOCHS (15), SEG_EPOCHS (6), BOUNDARY (gated|plain).
set -euo pipefail
cd "$(dirname "$0")/.."
RAW=${1:-../shared/data/dubai_aerial}
OUT=${2:-result/dubai/pipeline}
ROOT=Dataset/dubai
L=$ROOT/lists
DEVICE=${DEVICE:-auto}
CAM_EPOCHS=${CAM_EPOCHS:-10}
IRN_EPOCHS=${IRN_EPOCHS:-15}
SEG_EPOCHS=${SEG_EPOCHS:-6}
BOUNDARY=${BOUNDARY:-gated}
W=$OUT/weights
mkdir -p "$OUT" "$W"
C=(--voc12_root "$ROOT" --device "$DEVICE" --cam_weights_name "$W/cam.pth")

if [ ! -f "$L/test.txt" ]; then
  python -m data.prepare --images "$RAW" --masks "$RAW" --palette dubai --fg_classes building --patch_size 256 \
      --out_root "$ROOT" --list_out "$L/all.txt"
  python write_numpy.py --voc12_root "$ROOT" --list "$L/all.txt" \
      --out_list "$L/train_aug_all.txt" --out_pos_list "$L/train_aug_building_all.txt"
  for t in 1 2 3 4; do grep "^Tile_${t}__" "$L/train_aug_all.txt"; done > "$L/train_aug.txt"
  for t in 1 2 3 4; do grep "^Tile_${t}__" "$L/train_aug_building_all.txt"; done > "$L/train_aug_building.txt"
  for t in 5 6; do grep "^Tile_${t}__" "$L/all.txt"; done > "$L/test.txt"
fi
grep -E "^Tile_[123478]__" "$L/train_aug_all.txt" > "$L/train_aug_t123478.txt"

[ -f "$W/cam.pth" ] || python run_sample.py "${C[@]}" --train_cam_pass True --train_list "$L/train_aug_t123478.txt" \
    --cam_batch_size 16 --cam_num_epochs "$CAM_EPOCHS" --cam_learning_rate 0.0002 --cam_crop_size 256
[ -f "$OUT/cam/eval_cam.json" ] || python run_sample.py "${C[@]}" --make_cam_pass True --eval_cam_pass True \
    --cam_scales 2.0,3.0 --cam_out_dir "$OUT/cam" --infer_list "$L/train_aug.txt"
python run_sample.py "${C[@]}" --cam_to_ir_label_pass True \
    --conf_fg_thres 0.5 --conf_bg_thres 0.2 --cam_out_dir "$OUT/cam" --train_list "$L/train_aug_building.txt" \
    --ir_label_out_dir "$OUT/ir_label"
[ -f "$W/irn.pth" ] || python run_sample.py "${C[@]}" --train_irn_pass True --irn_batch_size 16 --irn_crop_size 256 \
    --irn_num_epoches "$IRN_EPOCHS" --irn_weights_name "$W/irn.pth" --train_list "$L/train_aug_building.txt" \
    --irn_boundary "$BOUNDARY" --ir_label_out_dir "$OUT/ir_label" --infer_list "$L/train_aug_building.txt" \
    --irn_learning_rate 0.1
[ -f "$OUT/sem_seg/eval_sem_seg.json" ] || python run_sample.py "${C[@]}" --make_sem_seg_pass True \
    --eval_sem_seg_pass True --sem_seg_bg_thres 0.2 --exp_times 4 --rw_normalize local --sem_seg_save_rw True \
    --cam_out_dir "$OUT/cam" --sem_seg_out_dir "$OUT/sem_seg" --irn_weights_name "$W/irn.pth" \
    --infer_list "$L/train_aug.txt"
[ -f "$W/seg.pth" ] || python run_sample.py "${C[@]}" --train_seg_pass True --eval_seg_pass True \
    --train_list "$L/train_aug.txt" --seg_label_source pseudo --sem_seg_out_dir "$OUT/sem_seg" \
    --seg_crop_size 256 --seg_batch_size 8 --seg_num_epochs "$SEG_EPOCHS" --seg_learning_rate 0.001 \
    --seg_val_list "$L/test.txt" --seg_weights_name "$W/seg.pth" --seg_out_dir "$OUT/seg_test"
[ -f "$OUT/seg_train/eval_seg.json" ] || python run_sample.py "${C[@]}" --eval_seg_pass True \
    --seg_val_list "$L/train_aug.txt" --seg_weights_name "$W/seg.pth" --seg_out_dir "$OUT/seg_train"

python - "$OUT" <<'EOF'
import json
import sys

out = sys.argv[1]
rows = [("CAM (best threshold)", f"{out}/cam/eval_cam.json"),
        ("pseudo masks (bg threshold 0.2)", f"{out}/sem_seg/eval_sem_seg.json"),
        ("segmenter on Tiles 1-4 (its training patches)", f"{out}/seg_train/eval_seg.json"),
        ("segmenter on Tiles 5-6 (held out)", f"{out}/seg_test/eval_seg.json")]
for what, path in rows:
    result = json.load(open(path))
    print(f"{what:48s} mIoU {result['miou']:.3f}  building IoU {result['iou']['building']:.3f}")
EOF
