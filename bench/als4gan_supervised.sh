#!/usr/bin/env bash
# The supervised-only baseline of bench/als4gan_dubai.sh: train_seg on the same chosen tiles' ground truth alone,
# for as many steps (of the same batch size) as train_semi took, so the difference is what the unlabelled tiles add.
#
# Usage: bash bench/als4gan_supervised.sh [OUT_DIR] TAG...   (TAG as in OUT_DIR/al_<TAG>.txt, e.g. random_0.05)
# Knobs (environment): UNLABELED, EPOCHS, BATCH (the values bench/als4gan_dubai.sh ran with).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: bench/als4gan_supervised.sh OUT_DIR TAG...}
shift
ROOT=Dataset/dubai
UNLABELED=${UNLABELED:-150}
EPOCHS=${EPOCHS:-4}
BATCH=${BATCH:-4}
steps=$(( UNLABELED / BATCH * EPOCHS ))  # train_semi: one epoch = one pass over the unlabelled tiles (drop_last)

for tag in "$@"; do
  chosen=$OUT/al_$tag.txt
  n=$(grep -c . "$chosen")
  per_epoch=$(( n / BATCH ))
  [ "$per_epoch" -ge 1 ] || { echo "error: $chosen has $n tiles, fewer than one batch of $BATCH" >&2; exit 2; }
  epochs=$(( (steps + per_epoch - 1) / per_epoch ))
  echo "$tag: $n labelled tiles, $epochs epochs x $per_epoch steps (train_semi: $steps steps)"
  python run_sample.py --train_seg_pass True --eval_seg_pass True --voc12_root "$ROOT" --seg_label_source gt \
      --train_list "$chosen" --seg_num_epochs "$epochs" --seg_batch_size "$BATCH" --seg_crop_size 256 \
      --seg_learning_rate 0.001 --seg_weights_name "$OUT/sup_$tag.pth" --seg_val_list "$ROOT/lists/test.txt" \
      --seg_out_dir "$OUT/sup_$tag" --seg_num_overlays 4 --log_name "$OUT/sup_$tag"
  python - "$OUT/sup_$tag/eval_seg.json" "$tag" "$n" >> "$OUT/summary_supervised.tsv" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
iou = " ".join(f"{k} {v:.3f}" for k, v in r["iou"].items())
print(f"supervised_{sys.argv[2]}\t{sys.argv[3]} tiles\tmIoU {r['miou']:.3f}\t{iou}")
EOF
  tail -1 "$OUT/summary_supervised.tsv"
done
