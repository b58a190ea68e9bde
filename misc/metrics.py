"""Confusion-matrix segmentation metrics (replaces chainercv's eval_semantic_segmentation)."""
from __future__ import annotations

import numpy as np


def confusion_matrix(pred: np.ndarray, gt: np.ndarray, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """(num_classes, num_classes) int64 counts, rows = ground truth, columns = prediction.

    Pixels whose ground truth is ``ignore_index`` are skipped; a prediction outside [0, num_classes) is an error.
    """
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    valid = gt != ignore_index
    p = pred[valid].astype(np.int64)
    g = gt[valid].astype(np.int64)
    if g.size and (g.max() >= num_classes or p.max() >= num_classes or p.min() < 0):
        raise ValueError(f"labels outside [0, {num_classes}): gt max {g.max()}, pred range {p.min()}..{p.max()}")
    return np.bincount(g * num_classes + p, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def scores_from_confusion(conf: np.ndarray) -> dict:
    """IoU, precision, recall, F1 per class and their means, from a confusion matrix (rows = ground truth).

    A class absent from both ground truth and prediction has IoU NaN and is left out of the means.
    """
    conf = np.asarray(conf, dtype=np.float64)
    tp = np.diag(conf)
    gt_total = conf.sum(axis=1)
    pred_total = conf.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = tp / (gt_total + pred_total - tp)
        precision = tp / pred_total
        recall = tp / gt_total
        f1 = 2 * precision * recall / (precision + recall)
    return {
        "iou": iou, "miou": float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
        "precision": precision, "recall": recall, "f1": f1,
        "pixel_accuracy": float(tp.sum() / conf.sum()) if conf.sum() else float("nan"),
    }


def named_scores(scores: dict, class_names: list[str]) -> dict:
    """The JSON form: per-class arrays become {class name: value}, NaN becomes None."""
    out = {}
    for key, value in scores.items():
        if isinstance(value, np.ndarray):
            out[key] = {n: (None if not np.isfinite(v) else float(v)) for n, v in zip(class_names, value)}
        else:
            out[key] = None if not np.isfinite(value) else float(value)
    return out
