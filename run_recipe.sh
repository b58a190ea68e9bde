#!/usr/bin/env bash
# One command for your own imagery: the best measured recipe (BENCHMARKS.md), end to end, resumable, ending with
# the HTML report.
#
#   bash run_recipe.sh --images DIR [--masks DIR | --tags FILE.csv] --test RULE --out DIR [options]
#
# Stages: prepare (patches + image-level labels) -> CAM classifier -> CAMs -> label-free thresholds
# (pick_thresholds) -> IR labels -> IRN -> random-walk pseudo masks -> segmentation model -> self-training rounds
# (the segmenter relabels the training patches within their tags, and a new one trains on that) -> report. With masks
# every stage is also scored; without them (tags only) the eval passes say so and skip.
#
#   --images DIR       scenes or tiles (PNG/JPEG/GeoTIFF; searched recursively)
#   --masks DIR        pixel masks of the same stems (optional: used for the tags and for scoring)
#   --tags FILE        image-level tags instead of masks: CSV "image,classes" (';'-separated names) or one 0/1
#                      column per class (see README "Your own data")
#   --palette NAME     mask colours / class names (dubai | isprs | binary | index:a,b,... | palette.json; default dubai)
#   --classes LIST     'all' = land-cover mode (default; background-free when every class is listed), or a comma list
#                      such as 'building' (building-only: the other classes are background)
#   --patch_size N     patch side (default 256 with masks; with --tags 0 = whole images, as tags describe them)
#   --test RULE        held-out images: a regular expression on the patch names (e.g. '^Tile_8__'), or a list file
#   --out DIR          everything goes here (data, weights, results, report.html); default result/recipe
#   --device DEV       auto | cpu | cuda | cuda:N (default auto)
# Knobs (environment): CAM_EPOCHS (10), IRN_EPOCHS (10), SEG_EPOCHS (6), SELF_TRAIN_ROUNDS (0),
#   SEG_BACKBONE (efficientnet_lite2), SEG_DECODER (fpn), CAM_SCALES (2.0,3.0), CROP (256: training crops),
#   POS_THRES (0.02 land cover, 0.05 building-only), CAM_PATCH (the CAM classifier's own patch side, with --masks
#   only: its tags come from smaller patches of the same training scenes, every scene holding a held-out patch left
#   out; default with --masks: half the patch side from 256 up, e.g. 128 for 256² patches; with --tags: the patches).
# Rerunning the same command resumes: training continues from the last finished epoch (a finished model is kept) and
# finished items are kept (delete a folder or a weights file to redo it).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python}
IMAGES="" MASKS="" TAGS="" PALETTE=dubai CLASSES=all PATCH="" TEST="" OUT=result/recipe DEVICE=auto
usage() { sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --images) IMAGES=$2; shift 2 ;;
    --masks) MASKS=$2; shift 2 ;;
    --tags) TAGS=$2; shift 2 ;;
    --palette) PALETTE=$2; shift 2 ;;
    --classes) CLASSES=$2; shift 2 ;;
    --patch_size) PATCH=$2; shift 2 ;;
    --test) TEST=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --device) DEVICE=$2; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "run_recipe.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$IMAGES" ] || { echo "run_recipe.sh: --images is required (see --help)" >&2; exit 2; }
[ -n "$TEST" ] || { echo "run_recipe.sh: --test is required: a name pattern or a list file of held-out images" >&2; exit 2; }
[ -e "$IMAGES" ] || { echo "run_recipe.sh: --images $IMAGES does not exist" >&2; exit 2; }
if [ -n "$MASKS" ] && [ -n "$TAGS" ]; then echo "run_recipe.sh: give --masks or --tags, not both" >&2; exit 2; fi
if [ -z "$MASKS" ] && [ -z "$TAGS" ]; then echo "run_recipe.sh: give --masks DIR or --tags FILE" >&2; exit 2; fi
if [ "$CLASSES" = all ]; then DEFAULT_POS=0.02; else DEFAULT_POS=0.05; fi
# tags describe whole images, so tagged images are kept whole unless a patch size is asked for
if [ -z "$PATCH" ]; then if [ -n "$TAGS" ]; then PATCH=0; else PATCH=256; fi; fi
CAM_EPOCHS=${CAM_EPOCHS:-10} IRN_EPOCHS=${IRN_EPOCHS:-10} SEG_EPOCHS=${SEG_EPOCHS:-6}
SELF_TRAIN_ROUNDS=${SELF_TRAIN_ROUNDS:-0} CROP=${CROP:-256}
case "$SELF_TRAIN_ROUNDS" in ''|*[!0-9]*) echo "run_recipe.sh: SELF_TRAIN_ROUNDS must be 0, 1, 2, ... (got '$SELF_TRAIN_ROUNDS')" >&2; exit 2 ;; esac
SEG_BACKBONE=${SEG_BACKBONE:-efficientnet_lite2} SEG_DECODER=${SEG_DECODER:-fpn}
CAM_SCALES=${CAM_SCALES:-2.0,3.0} POS_THRES=${POS_THRES:-$DEFAULT_POS}
# in land-cover mode a class counts as present from POS_THRES of the patch and nothing is dropped as ambiguous
NEG=$($PY -c "import sys; p=float(sys.argv[1]); print(p - 1e-4 if sys.argv[2] == 'all' else 0.0)" "$POS_THRES" "$CLASSES")
# patches of side $2 with their tags from the masks into the data folder $1 (lists/all.txt, tagged.txt, tagged_pos.txt)
prepare_from_masks() {
  $PY -m data.prepare --images "$IMAGES" --masks "$MASKS" --palette "$PALETTE" --fg_classes "$CLASSES" \
      --patch_size "$2" --out_root "$1" --list_out "$1/lists/all.txt"
  $PY write_numpy.py --voc12_root "$1" --list "$1/lists/all.txt" --pos_thres "$POS_THRES" --neg_thres "$NEG" \
      --out_list "$1/lists/tagged.txt" --out_pos_list "$1/lists/tagged_pos.txt"
}
ROOT=$OUT/data L=$OUT/data/lists W=$OUT/weights R=$OUT/results
mkdir -p "$OUT" "$W" "$R"
C=(--voc12_root "$ROOT" --device "$DEVICE" --log_name "$OUT/recipe" --cam_weights_name "$W/cam.pth"
   --irn_weights_name "$W/irn.pth" --seg_weights_name "$W/seg.pth" --cam_scales "$CAM_SCALES"
   --cam_out_dir "$R/cam" --ir_label_out_dir "$R/ir_label" --sem_seg_out_dir "$R/sem_seg" --seg_out_dir "$R/seg"
   --ins_seg_out_dir "$R/ins_seg" --report_path "$OUT/report.html")

echo "== 1. patches and image-level labels -> $ROOT"
if [ ! -f "$L/train.txt" ]; then
  if [ -n "$MASKS" ]; then
    prepare_from_masks "$ROOT" "$PATCH"
  else
    $PY -m data.prepare --images "$IMAGES" --palette "$PALETTE" --fg_classes "$CLASSES" \
        --patch_size "$PATCH" --out_root "$ROOT" --list_out "$L/all.txt"
    $PY write_numpy.py --voc12_root "$ROOT" --list "$L/all.txt" --tags "$TAGS" \
        --out_list "$L/tagged.txt" --out_pos_list "$L/tagged_pos.txt"
  fi
  if [ -f "$TEST" ]; then
    sort -u "$TEST" > "$L/test.txt"
  else
    grep -E -- "$TEST" "$L/all.txt" > "$L/test.txt" || true
  fi
  [ -s "$L/test.txt" ] || { echo "run_recipe.sh: --test $TEST matches no patch of $L/all.txt" >&2; exit 2; }
  grep -v -x -F -f "$L/test.txt" "$L/tagged.txt" > "$L/train.txt" || true
  [ -s "$L/train.txt" ] || { echo "run_recipe.sh: no tagged patch is left for training outside --test" >&2; exit 2; }
  echo "train: $(wc -l < "$L/train.txt") tagged patches; held out: $(wc -l < "$L/test.txt")"
fi
T=(--train_list "$L/train.txt" --infer_list "$L/train.txt")

# the CAM classifier's patches: smaller ones teach what a class is *not* (a 128² patch of road without a roof)
# (Dubai, BENCHMARKS session 7: 128² tags for 256² patches, +3.1 CAM mIoU and +5.5 mIoU for the weak segmenter)
if [ -z "${CAM_PATCH:-}" ]; then
  if [ -n "$MASKS" ] && [ "$PATCH" -ge 256 ] 2> /dev/null; then CAM_PATCH=$((PATCH / 2)); else CAM_PATCH=$PATCH; fi
fi
case "$CAM_PATCH" in ''|*[!0-9]*) echo "run_recipe.sh: CAM_PATCH must be a patch side in px (got '$CAM_PATCH')" >&2; exit 2 ;; esac
CAM_ROOT=$ROOT CAM_L=$L CAM_CROP=$CROP
if [ "$CAM_PATCH" != "$PATCH" ]; then
  [ -n "$MASKS" ] || { echo "run_recipe.sh: CAM_PATCH needs --masks (tags belong to whole images)" >&2; exit 2; }
  CAM_ROOT=$OUT/data_cam$CAM_PATCH CAM_L=$OUT/data_cam$CAM_PATCH/lists CAM_CROP=$CAM_PATCH
  echo "== 1b. $CAM_PATCH² patches for the CAM classifier -> $CAM_ROOT"
  if [ ! -f "$CAM_L/train.txt" ]; then
    prepare_from_masks "$CAM_ROOT" "$CAM_PATCH"
    # patch names are <scene>__y<row>_x<col>: every scene that holds a held-out patch stays out of training
    sed -E 's/__y[0-9]+_x[0-9]+$//' "$L/test.txt" | sort -u > "$CAM_L/test_scenes.txt"
    awk 'NR == FNR { held[$0] = 1; next } { s = $0; sub(/__y[0-9]+_x[0-9]+$/, "", s); if (!(s in held)) print }' \
        "$CAM_L/test_scenes.txt" "$CAM_L/tagged.txt" > "$CAM_L/train.txt.tmp"
    [ -s "$CAM_L/train.txt.tmp" ] || { echo "run_recipe.sh: no tagged $CAM_PATCH² patch is left outside the held-out scenes" >&2; exit 2; }
    mv -f "$CAM_L/train.txt.tmp" "$CAM_L/train.txt"
  fi
  echo "CAM classifier: $(wc -l < "$CAM_L/train.txt") tagged $CAM_PATCH² patches"
fi

echo "== 2. CAM classifier and CAMs of the training patches"
$PY run_sample.py "${C[@]}" --voc12_root "$CAM_ROOT" --train_list "$CAM_L/train.txt" --train_cam_pass True --resume True \
    --cam_batch_size 16 --cam_num_epochs "$CAM_EPOCHS" --cam_learning_rate 0.0002 --cam_crop_size "$CAM_CROP"
$PY run_sample.py "${C[@]}" "${T[@]}" --make_cam_pass True --eval_cam_pass True

echo "== 3. thresholds from the CAMs themselves (no ground truth used)"
$PY run_sample.py "${C[@]}" "${T[@]}" --pick_thresholds_pass True
read -r FG BG BGT MARGIN < <($PY -c "import json,sys; r=json.load(open(sys.argv[1])); \
m=r['conf_margin'] if r['conf_margin'] is not None else 0.2; \
print(r['conf_fg_thres'], r['conf_bg_thres'], r['sem_seg_bg_thres'], m)" "$R/cam/thresholds.json")
TH=(--conf_fg_thres "$FG" --conf_bg_thres "$BG" --sem_seg_bg_thres "$BGT" --conf_margin "$MARGIN")

echo "== 4. IR labels, IRN, pseudo masks"
$PY run_sample.py "${C[@]}" "${T[@]}" "${TH[@]}" --cam_to_ir_label_pass True
$PY run_sample.py "${C[@]}" "${T[@]}" "${TH[@]}" --train_irn_pass True --resume True \
    --irn_batch_size 16 --irn_crop_size "$CROP" --irn_num_epochs "$IRN_EPOCHS" --irn_learning_rate 0.1
$PY run_sample.py "${C[@]}" "${T[@]}" "${TH[@]}" --make_sem_seg_pass True --eval_sem_seg_pass True

echo "== 5. segmentation model on the pseudo masks, then $SELF_TRAIN_ROUNDS self-training round(s)"
SEG=(--seg_label_source pseudo --seg_crop_size "$CROP" --seg_batch_size 8 --seg_num_epochs "$SEG_EPOCHS"
     --seg_learning_rate 0.001 --seg_backbone "$SEG_BACKBONE" --seg_decoder "$SEG_DECODER")
$PY run_sample.py "${C[@]}" "${T[@]}" "${SEG[@]}" --train_seg_pass True --resume True \
    --seg_weights_name "$W/seg_r0.pth"
FINAL=$W/seg_r0.pth
for r in $(seq 1 "$SELF_TRAIN_ROUNDS"); do
  # the last round's segmenter relabels the training patches within their tags; a fresh one trains on that
  $PY run_sample.py "${C[@]}" "${T[@]}" --relabel_seg_pass True --seg_weights_name "$FINAL" \
      --relabel_out_dir "$R/relabel_r$r"
  $PY run_sample.py "${C[@]}" "${T[@]}" --eval_sem_seg_pass True --sem_seg_out_dir "$R/relabel_r$r"
  $PY run_sample.py "${C[@]}" "${T[@]}" "${SEG[@]}" --train_seg_pass True --resume True \
      --sem_seg_out_dir "$R/relabel_r$r" --seg_weights_name "$W/seg_r$r.pth"
  FINAL=$W/seg_r$r.pth
done
cp -p "$FINAL" "$W/seg.pth.tmp" && mv -f "$W/seg.pth.tmp" "$W/seg.pth"   # the final model under one name
$PY run_sample.py "${C[@]}" --eval_seg_pass True --seg_val_list "$L/test.txt"
$PY run_sample.py "${C[@]}" "${T[@]}" --report_pass True
echo "done: $OUT/report.html (map new scenes with: python run_sample.py --predict_pass True --predict_input SCENES \\"
echo "      --seg_weights_name $W/seg.pth --seg_out_dir $OUT/maps)"
