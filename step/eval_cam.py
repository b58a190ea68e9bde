"""Pass eval_cam: score CAMs against the ground-truth masks over a sweep of background thresholds.

Background-free data (``--background none``, or ``auto`` with ``background_free`` in classes.json) has no threshold
to sweep: each pixel takes its best-scoring present class, and the JSON's "threshold" is null.

Reads:  <cam_out_dir>/<name>.npz for --eval_list (default --infer_list), <voc12_root>/SegmentationClassAug,
        classes.json
Writes: <cam_out_dir>/eval_cam.json = {"miou", "iou": {class: IoU}, "threshold", "sweep": [{threshold, miou,
        iou}], ...} at the best threshold (or at --cam_eval_thres when given); args_eval_cam.json.
Under torchrun only rank 0 scores, after a barrier.
"""
from __future__ import annotations

import logging

import numpy as np

from data.labels import background_free, ground_truth_available, load_class_names, read_checked_list
from misc import artifacts, dist
from misc.cam import cams_to_label, scale_classes
from misc.io import load_npz, load_png, save_args, save_json
from misc.logutils import progress
from misc.metrics import confusion_matrix, named_scores, scores_from_confusion

log = logging.getLogger(__name__)

DEFAULT_SWEEP = tuple(np.round(np.arange(0.05, 0.96, 0.05), 2))


def load_ground_truth(voc12_root: str, name: str, shape: tuple[int, int]) -> np.ndarray:
    """The uint8 class-index mask of ``name``; a size different from the prediction is an error naming the file."""
    path = artifacts.mask_path(voc12_root, name)
    gt = load_png(path)
    if gt.ndim != 2:
        raise ValueError(f"{path}: expected a single-channel class-index mask (run data.prepare), got {gt.shape}")
    if gt.shape != tuple(shape):
        raise ValueError(f"{path}: mask is {gt.shape[1]}x{gt.shape[0]} but the prediction is {shape[1]}x{shape[0]}")
    return gt


def sweep_cams(cam_dir: str, voc12_root: str, names: list[str], num_classes: int,
               thresholds: tuple[float, ...], class_scale: str = "max") -> np.ndarray:
    """Confusion matrices (T, C, C) of CAM labels at each background threshold, summed over ``names``."""
    conf = np.zeros((len(thresholds), num_classes, num_classes), np.int64)
    for name in progress(names, desc="eval_cam"):
        cam = load_npz(artifacts.cam_path(cam_dir, name))
        # high_res is (k, H, W); with no class present k = 0 but H, W are still there
        gt = load_ground_truth(voc12_root, name, cam["high_res"].shape[-2:])
        for t, thr in enumerate(thresholds):
            maps = scale_classes(cam["high_res"], class_scale) if not np.isfinite(thr) else cam["high_res"]
            conf[t] += confusion_matrix(cams_to_label(maps, cam["keys"], thr), gt, num_classes)
    return conf


def best_of_sweep(conf: np.ndarray, thresholds: tuple[float, ...], class_names: list[str]) -> dict:
    """The eval JSON: scores at the threshold with the highest mIoU, plus the whole sweep."""
    sweep = []
    for thr, c in zip(thresholds, conf):
        s = scores_from_confusion(c)
        sweep.append({"threshold": float(thr), "miou": s["miou"],
                      "iou": named_scores({"iou": s["iou"]}, class_names)["iou"]})
    best = int(np.nanargmax([s["miou"] for s in sweep]))
    result = named_scores(scores_from_confusion(conf[best]), class_names)
    threshold = float(thresholds[best])
    result.update({"threshold": threshold if np.isfinite(threshold) else None, "sweep": sweep})
    for row in sweep:
        row["threshold"] = row["threshold"] if np.isfinite(row["threshold"]) else None
    return result


def log_table(result: dict, title: str) -> None:
    rows = ", ".join(f"{k} {v:.3f}" for k, v in result["iou"].items() if v is not None)
    where = ("argmax of the present classes (background-free)" if result["threshold"] is None
             else f"threshold {result['threshold']:.2f}")
    log.info("%s: mIoU %.4f at %s | IoU %s", title, result["miou"], where, rows)


def run(args) -> None:
    dist.barrier()  # under torchrun: every rank's shard of the predictions is on disk
    if not dist.is_main():
        return  # scoring is cheap and writes one JSON: rank 0 alone
    names = read_checked_list(args.eval_list or args.infer_list, args.voc12_root, skip_bad=args.skip_bad)
    if not ground_truth_available(args.voc12_root, names, "eval_cam"):
        return
    class_names = load_class_names(args.voc12_root)
    if background_free(args.voc12_root, args.background):
        thresholds = (float("-inf"),)  # no background score: the best present class everywhere
    elif args.cam_eval_thres is not None:
        thresholds = (args.cam_eval_thres,)
    else:
        thresholds = DEFAULT_SWEEP
    conf = sweep_cams(args.cam_out_dir, args.voc12_root, names, len(class_names), thresholds,
                      class_scale=args.class_scale)
    result = best_of_sweep(conf, thresholds, class_names)
    result["num_images"] = len(names)
    save_json(artifacts.eval_json_path(args.cam_out_dir, "eval_cam"), result)
    save_args(args, args.cam_out_dir, "eval_cam")
    log_table(result, f"eval_cam {args.cam_out_dir}")
