#!/usr/bin/env bash
# The best measured recipe on the Dubai data, end to end, from image-level labels only (BENCHMARKS.md): this is
# run_recipe.sh on ../shared/data/dubai_aerial in land-cover mode (building, land, road, vegetation, water; every
# pixel belongs to a class, so no background threshold), Tiles 1-6 for training (their masks only score the
# stages), Tile 8 held out for the segmenter (20 % building pixels, the data set's typical mix of classes).
# Usage: bash bench/dubai_pipeline.sh [DATA_DIR] [OUT_DIR]   (defaults ../shared/data/dubai_aerial, result/dubai/pipeline)
# Knobs: DEVICE (auto) and run_recipe.sh's environment knobs (CAM_EPOCHS, IRN_EPOCHS, SEG_EPOCHS, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
RAW=${1:-../shared/data/dubai_aerial}
OUT=${2:-result/dubai/pipeline}
bash run_recipe.sh --images "$RAW" --masks "$RAW" --palette dubai --classes all --patch_size 256 \
    --test '^Tile_8__' --out "$OUT" --device "${DEVICE:-auto}"
python - "$OUT" <<'EOF'
import json
import os
import sys

out = sys.argv[1]
rows = [("CAM (argmax of the present classes)", f"{out}/results/cam/eval_cam.json"),
        ("pseudo masks", f"{out}/results/sem_seg/eval_sem_seg.json"),
        ("segmenter on held-out Tile 8", f"{out}/results/seg/eval_seg.json")]
for what, path in rows:
    if os.path.isfile(path):
        result = json.load(open(path))
        print(f"{what:40s} mIoU {result['miou']:.3f}  building IoU {result['iou']['building']:.3f}")
EOF
