"""Pass pick_thresholds: the pipeline's thresholds from the CAMs themselves, or from a few pixel-labelled tiles.

No ground truth is needed (misc/thresholds.py): with a background class, Otsu's cut t of the pooled strongest-CAM
scores of the images with a present class is the CAM / pseudo-mask background threshold, and halfway into each side
gives --conf_fg_thres and --conf_bg_thres. Background-free data needs no background threshold; its IR labels'
--conf_margin is Otsu's cut of the (best − second-best) CAM margins of the images with two or more present classes,
on the --class_scale scores that cam_to_ir_label compares.
With --threshold_list (a handful of tiles that do have masks, e.g. the 3 labelled images of seed 004's study) the
background threshold is instead the best of eval_cam's sweep on those tiles alone.

Reads:  <cam_out_dir>/<name>.npz for --infer_list; with --threshold_list also those tiles' masks
Writes: <cam_out_dir>/thresholds.json = {"background_free", "method", "cam_eval_thres", "sem_seg_bg_thres",
        "conf_fg_thres", "conf_bg_thres", "conf_margin", "otsu": {...}, "num_images"}; args_pick_thresholds.json.
Rank 0 only, after a barrier.
"""
from __future__ import annotations

import logging

import numpy as np

from data.labels import background_free, load_class_names, read_checked_list
from misc import artifacts, dist
from misc.io import load_npz, save_args, save_json
from misc.logutils import progress
from misc.cam import comparable_scores
from misc.thresholds import ir_thresholds, otsu_from_histogram, score_histogram, side_means

log = logging.getLogger(__name__)
PASS_NAME = "pick_thresholds"


def cam_histograms(cam_dir: str, names: list[str], class_scale: str = "max") -> tuple[np.ndarray, np.ndarray, int]:
    """Histograms of the strongest-CAM scores (images with a present class) and of the best-minus-second margins
    (images with two or more, on the --class_scale scores the IR labels compare), and the number of images with a
    present class."""
    strongest = np.zeros(0, np.int64)
    margins = np.zeros(0, np.int64)
    used = 0
    for name in progress(names, desc=PASS_NAME):
        high = load_npz(artifacts.cam_path(cam_dir, name))["high_res"]  # (k, H, W)
        if len(high) == 0:
            continue
        used += 1
        h = score_histogram(high.max(axis=0))
        strongest = h if not strongest.size else strongest + h
        if len(high) >= 2:
            top2 = np.partition(comparable_scores(high, class_scale), -2, axis=0)[-2:]
            m = score_histogram(top2[1] - top2[0])
            margins = m if not margins.size else margins + m
    return strongest, margins, used


def run(args) -> None:
    dist.barrier()
    if not dist.is_main():
        return
    names = read_checked_list(args.infer_list, args.voc12_root, skip_bad=args.skip_bad)
    no_background = background_free(args.voc12_root, args.background)
    strongest, margins, used = cam_histograms(args.cam_out_dir, names, args.class_scale)
    if used == 0:
        raise ValueError(f"{PASS_NAME}: no CAM in {args.cam_out_dir} has a present class (is --infer_list right?)")
    result = {"background_free": no_background, "num_images": used}
    t, mu0, mu1 = otsu_from_histogram(strongest)
    result["otsu"] = {"threshold": t, "mean_below": mu0, "mean_above": mu1}
    method = "otsu"
    if args.threshold_list and not no_background:
        from misc.evaluate import DEFAULT_SWEEP, best_of_sweep, sweep_cams

        few = read_checked_list(args.threshold_list, args.voc12_root, skip_bad=args.skip_bad)
        class_names = load_class_names(args.voc12_root)
        conf = sweep_cams(args.cam_out_dir, args.voc12_root, few, len(class_names), DEFAULT_SWEEP)
        t = best_of_sweep(conf, DEFAULT_SWEEP, class_names)["threshold"]
        method = f"best on the {len(few)} tiles of {args.threshold_list}"
        mu0, mu1 = side_means(strongest, t)
    fg, bg = ir_thresholds(t, mu0, mu1)
    result.update({"method": method, "cam_eval_thres": t, "sem_seg_bg_thres": t, "conf_fg_thres": fg,
                   "conf_bg_thres": bg})
    if margins.size and margins.sum() > 0:
        tm, mm0, mm1 = otsu_from_histogram(margins)
        result["otsu_margin"] = {"threshold": tm, "mean_below": mm0, "mean_above": mm1}
        result["conf_margin"] = tm
    else:
        result["conf_margin"] = None  # no image with two present classes: every IR label is its single class
    save_json(artifacts.eval_json_path(args.cam_out_dir, "thresholds"), result)
    save_args(args, args.cam_out_dir, PASS_NAME)
    if no_background:
        log.info("%s (%s, %d images, background-free): --conf_margin %s", PASS_NAME, method, used,
                 "n/a" if result["conf_margin"] is None else f"{result['conf_margin']:.3f}")
    else:
        log.info("%s (%s, %d images): --cam_eval_thres %.3f --sem_seg_bg_thres %.3f --conf_fg_thres %.3f "
                 "--conf_bg_thres %.3f", PASS_NAME, method, used, t, t, fg, bg)
