"""Scoring predictions against the ground-truth masks: the CAM threshold sweep and folders of label PNGs.

eval_cam and pick_thresholds sweep the background threshold of CAMs (:func:`sweep_cams`, :func:`best_of_sweep`);
eval_sem_seg and eval_seg score label PNGs (:func:`evaluate_label_dir`). Masks are read with
:func:`data.labels.load_ground_truth` (uint8, 255 = ignore, the size of the prediction).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from data.labels import load_ground_truth
from misc import artifacts
from misc.cam import cams_to_label, scale_classes
from misc.io import load_npz, load_png
from misc.logutils import progress
from misc.metrics import confusion_matrix, named_scores, scores_from_confusion

DEFAULT_SWEEP = tuple(np.round(np.arange(0.05, 0.96, 0.05), 2))


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


def evaluate_label_dir(pred_dir: str, voc12_root: str, names: list[str], class_names: list[str], *,
                       path_of: Callable[[str, str], str] = artifacts.sem_seg_path) -> dict:
    """Confusion-matrix scores of the label PNGs ``path_of(pred_dir, name)`` against the ground truth.

    Predictions are uint8 class indices (0 background, 1..K); a 255 ("unsure") prediction counts as background, as
    IRN's evaluation does. Ground-truth 255 pixels are skipped. Reusable by any pass that writes label PNGs.

    Returns the JSON-ready dict: miou, pixel_accuracy, iou/precision/recall/f1 per class name, confusion, num_images.
    """
    num_classes = len(class_names)
    conf = np.zeros((num_classes, num_classes), np.int64)
    for name in progress(names, desc=f"evaluate {pred_dir}"):
        path = path_of(pred_dir, name)
        pred = load_png(path)
        if pred.ndim != 2:
            raise ValueError(f"{path}: expected a single-channel label PNG, got shape {pred.shape}")
        pred = np.where(pred == artifacts.IGNORE_INDEX, 0, pred)
        conf += confusion_matrix(pred, load_ground_truth(voc12_root, name, pred.shape), num_classes)
    result = named_scores(scores_from_confusion(conf), class_names)
    result["confusion"] = conf.tolist()
    result["num_images"] = len(names)
    return result
