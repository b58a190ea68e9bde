#!/usr/bin/env bash
# Active learning + semi-supervised segmentation on Dubai (seed 002, ALS4GAN), at 2 %, 5 % and 10 % labelled.
#
# Pool: every patch of Tiles 1-4 (Dataset/dubai/lists/all.txt, 423 patches, including the ones write_numpy dropped).
# For each ratio and query strategy (entropy / margin on AL_MODEL's uncertainty, or random): select_tiles picks the tiles
# to pixel-label, train_semi (self-training with an EMA teacher) trains on them plus a fixed seeded draw of
# unlabelled tiles, eval_seg scores the held-out Tiles 5-6 (Dataset/dubai/lists/test.txt).
#
# Usage: bash bench/als4gan_dubai.sh [OUT_DIR]   (default result/dubai/als4gan; one line per run in OUT_DIR/summary.tsv)
# Knobs (environment): RATIOS, STRATEGIES, UNLABELED (size of the unlabelled draw), EPOCHS, WARMUP, BATCH,
#                      AL_MODEL (cam: the CAM classifier's image-level sigmoids, CAM_WEIGHTS; seg: the mean pixel
#                      uncertainty of a segmenter trained on the pipeline's pseudo masks, SEG_WEIGHTS; both need image-level
#                      labels only), CLASS_PORTION (train_semi --semi_class_portion; > 0 adds _cb<p> to the tags).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-result/dubai/als4gan}
ROOT=Dataset/dubai
RATIOS=${RATIOS:-"0.02 0.05 0.10"}
STRATEGIES=${STRATEGIES:-"entropy random"}
UNLABELED=${UNLABELED:-150}
EPOCHS=${EPOCHS:-4}
WARMUP=${WARMUP:-2}
BATCH=${BATCH:-4}
AL_MODEL=${AL_MODEL:-cam}
CAM_WEIGHTS=${CAM_WEIGHTS:-sess/dubai_cam_lite0.pth}
SEG_WEIGHTS=${SEG_WEIGHTS:-sess/dubai_seg_pseudo.pth}
CLASS_PORTION=${CLASS_PORTION:-0}
mkdir -p "$OUT"

grep -E '^Tile_[1-4]_' "$ROOT/lists/all.txt" > "$OUT/pool.txt"
echo "pool: $(wc -l < "$OUT/pool.txt") patches of Tiles 1-4"

for ratio in $RATIOS; do
  for strategy in $STRATEGIES; do
    tag=${strategy}_${ratio}
    [ "$strategy" = random ] || tag=${strategy}_${AL_MODEL}_${ratio}
    run=$tag
    [ "$CLASS_PORTION" = 0 ] || run=${tag}_cb$CLASS_PORTION
    chosen=$OUT/al_$tag.txt
    python run_sample.py --select_tiles_pass True --al_strategy "$strategy" --al_ratio "$ratio" --al_model "$AL_MODEL" \
        --cam_weights_name "$CAM_WEIGHTS" --seg_weights_name "$SEG_WEIGHTS" --al_pool_list "$OUT/pool.txt" --al_out_list "$chosen" \
        --voc12_root "$ROOT" --log_name "$OUT/$tag"
    # the unlabelled tiles: a seeded draw of UNLABELED from the rest of the pool (the same draw for every strategy
    # where the chosen tiles allow it), so the runs differ only in which tiles carry pixel labels
    python - "$OUT/pool.txt" "$chosen" "$UNLABELED" "$OUT/unlabeled_$tag.txt" <<'EOF'
import random, sys
pool = [l.strip() for l in open(sys.argv[1]) if l.strip()]
chosen = {l.strip() for l in open(sys.argv[2]) if l.strip()}
random.Random(0).shuffle(pool)
rest = [n for n in pool if n not in chosen][: int(sys.argv[3])]
open(sys.argv[4], "w").write("\n".join(sorted(rest)) + "\n")
EOF
    python run_sample.py --train_semi_pass True --eval_seg_pass True --voc12_root "$ROOT" \
        --semi_labeled_list "$chosen" --semi_unlabeled_list "$OUT/unlabeled_$tag.txt" --train_list "$OUT/pool.txt" \
        --semi_method self_training --semi_conf_thres 0.9 --semi_class_portion "$CLASS_PORTION" --semi_num_epochs "$EPOCHS" --semi_warmup_epochs "$WARMUP" \
        --seg_batch_size "$BATCH" --seg_crop_size 256 --seg_learning_rate 0.001 \
        --semi_weights_name "$OUT/semi_$run.pth" --seg_weights_name "$OUT/semi_$run.pth" \
        --seg_val_list "$ROOT/lists/test.txt" --seg_out_dir "$OUT/seg_$run" --seg_num_overlays 4 \
        --log_name "$OUT/$run"
    python - "$OUT/seg_$run/eval_seg.json" "$run" "$(wc -l < "$chosen")" "$chosen" "$ROOT" >> "$OUT/summary.tsv" <<'EOF'
import json, sys
import numpy as np
from PIL import Image
r = json.load(open(sys.argv[1]))
names = [l.strip() for l in open(sys.argv[4]) if l.strip()]
pos = sum(int((np.asarray(Image.open(f"{sys.argv[5]}/SegmentationClassAug/{n}.png")) == 1).any()) for n in names)
iou = " ".join(f"{k} {v:.3f}" for k, v in r["iou"].items()) if isinstance(r["iou"], dict) else r["iou"]
print(f"{sys.argv[2]}\t{sys.argv[3]} tiles\t{pos} with building pixels\tmIoU {r['miou']:.3f}\t{iou}")
EOF
    tail -1 "$OUT/summary.tsv"
  done
done
