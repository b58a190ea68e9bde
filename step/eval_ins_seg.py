"""Pass eval_ins_seg: average precision at IoU 0.5 of the instances against ground-truth instances.

Reads:  <ins_seg_out_dir>/<name>.npz (make_ins_seg) for --eval_list (default --infer_list),
        <voc12_root>/SegmentationClassAug/<name>.png, classes.json
Writes: <ins_seg_out_dir>/eval_ins_seg.json = {"ap50": {class: AP or null}, "map50", "num_images",
        "num_gt": {class: n}, "num_pred": {class: n}, "iou_threshold": 0.5}; args_eval_ins_seg.json.
Under torchrun only rank 0 scores, after a barrier.

Ground-truth instances are the 8-connected components of each class in the mask (the masks have no instance ids;
touching buildings count as one). Pixels labelled 255 are left out of every IoU. Matching as PASCAL VOC: over all
images, predictions in descending score; each is a true positive when its best-overlapping ground truth of the same
class has IoU >= 0.5 and was not taken by a higher-scoring prediction. AP is the area under the precision envelope
(all points, VOC 2010+). A class without ground truth has AP null and stays out of the mean.
"""
from __future__ import annotations

import logging

import numpy as np
import scipy.ndimage as ndi

from data.labels import ground_truth_available, load_class_names, load_ground_truth, read_checked_list
from misc import artifacts, dist
from misc.io import load_npz, save_args, save_json
from misc.logutils import progress

log = logging.getLogger(__name__)

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def gt_instances(gt: np.ndarray, cls: int) -> np.ndarray:
    """(M, H, W) bool: the 8-connected components of class ``cls`` in the mask ``gt`` (H, W)."""
    components, count = ndi.label(gt == cls, structure=EIGHT_CONNECTED)
    return components[None] == np.arange(1, count + 1)[:, None, None]


def mask_iou(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """IoU (N, M) of masks pred (N, H, W) and gt (M, H, W), counting only pixels where ``valid`` (H, W)."""
    # reshape with the explicit pixel count: "-1" is ambiguous when there are no masks at all
    p = (pred.astype(bool) & valid).reshape(len(pred), valid.size).astype(np.float64)
    g = (gt.astype(bool) & valid).reshape(len(gt), valid.size).astype(np.float64)
    inter = p @ g.T
    union = p.sum(1)[:, None] + g.sum(1)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match_predictions(iou: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.5) -> np.ndarray:
    """True-positive flags (N,) bool of one image's predictions given their IoU (N, M) with its ground truth."""
    tp = np.zeros(len(scores), bool)
    taken = np.zeros(iou.shape[1], bool)
    for i in np.argsort(-np.asarray(scores), kind="stable"):
        if iou.shape[1] == 0:
            break
        j = int(iou[i].argmax())
        if iou[i, j] >= iou_threshold and not taken[j]:
            tp[i] = taken[j] = True
    return tp


def average_precision(scores: np.ndarray, tp: np.ndarray, num_gt: int) -> float:
    """All-point interpolated AP of predictions (scores, tp flags) against ``num_gt`` ground truths; NaN if none."""
    if num_gt == 0:
        return float("nan")
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    hits = np.asarray(tp, np.float64)[order]
    tp_cum = np.cumsum(hits)
    precision = tp_cum / np.arange(1, len(hits) + 1)
    recall = tp_cum / num_gt
    # precision envelope: best precision at this recall or any higher one
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def evaluate(ins_seg_dir: str, voc12_root: str, names: list[str], num_classes: int,
             iou_threshold: float = 0.5) -> dict[int, dict]:
    """Per class value 1..num_classes-1: {"ap", "num_gt", "num_pred"} over ``names``."""
    scores = {c: [] for c in range(1, num_classes)}
    hits = {c: [] for c in range(1, num_classes)}
    num_gt = dict.fromkeys(range(1, num_classes), 0)
    for name in progress(names, desc="eval_ins_seg"):
        pred = load_npz(artifacts.ins_seg_path(ins_seg_dir, name))
        masks = pred["masks"]  # (N, H, W)
        gt = load_ground_truth(voc12_root, name, masks.shape[-2:])
        valid = gt != artifacts.IGNORE_INDEX
        for c in range(1, num_classes):
            gts = gt_instances(gt, c)
            mine = pred["classes"] == c
            num_gt[c] += len(gts)
            scores[c].extend(pred["scores"][mine].tolist())
            hits[c].extend(match_predictions(mask_iou(masks[mine], gts, valid), pred["scores"][mine],
                                             iou_threshold).tolist())
    return {c: {"ap": average_precision(np.array(scores[c]), np.array(hits[c], bool), num_gt[c]),
                "num_gt": num_gt[c], "num_pred": len(scores[c])} for c in range(1, num_classes)}


def run(args) -> None:
    dist.barrier()  # under torchrun: every rank's shard of the predictions is on disk
    if not dist.is_main():
        return  # scoring is cheap and writes one JSON: rank 0 alone
    names = read_checked_list(args.eval_list or args.infer_list, args.voc12_root, skip_bad=args.skip_bad)
    if not ground_truth_available(args.voc12_root, names, "eval_ins_seg"):
        return
    class_names = load_class_names(args.voc12_root)
    per_class = evaluate(args.ins_seg_out_dir, args.voc12_root, names, len(class_names))
    aps = [v["ap"] for v in per_class.values() if np.isfinite(v["ap"])]
    result = {
        "ap50": {class_names[c]: (v["ap"] if np.isfinite(v["ap"]) else None) for c, v in per_class.items()},
        "map50": float(np.mean(aps)) if aps else None,
        "num_images": len(names),
        "num_gt": {class_names[c]: v["num_gt"] for c, v in per_class.items()},
        "num_pred": {class_names[c]: v["num_pred"] for c, v in per_class.items()},
        "iou_threshold": 0.5,
    }
    save_json(artifacts.eval_json_path(args.ins_seg_out_dir, "eval_ins_seg"), result)
    save_args(args, args.ins_seg_out_dir, "eval_ins_seg")
    log.info("eval_ins_seg %s: mAP@0.5 %s | %s", args.ins_seg_out_dir,
             "n/a" if result["map50"] is None else f"{result['map50']:.4f}",
             ", ".join(f"{k} {v:.3f}" for k, v in result["ap50"].items() if v is not None))
