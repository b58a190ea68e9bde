"""How good are the intermediate labels against the ground truth? Two measurements used in BENCHMARKS.md (issue 4).

    # precision and coverage of IR labels (cam_to_ir_label's output: 0 background, 1..K classes, 255 unsure)
    python bench/pseudo_label_quality.py ir-labels --voc12_root Dataset/dubai \
        --list Dataset/dubai/lists/train_aug_building.txt --ir_label_out_dir result/dubai/ir_label_e10_50_20

    # building IoU of CAMs thresholded at --threshold, before and after IRN's dense CRF on the image
    python bench/pseudo_label_quality.py crf-cam --voc12_root Dataset/dubai --list Dataset/dubai/lists/train_aug.txt \
        --cam_out_dir result/dubai/cam_t123478_e10_s20_30_all --threshold 0.3

    # K classes (land cover): the CAMs' labels (background-free argmax, or --threshold) before and after a dense CRF
    # on the image, over a grid of CRF settings (the cross product of the comma lists)
    python bench/pseudo_label_quality.py crf-sweep --voc12_root Dataset/dubai_lc --list Dataset/dubai_lc/lists/sub.txt \
        --cam_out_dir result/exp/lc/cam --bilateral_sxy 10,30,80 --bilateral_srgb 5,13,25

ir-labels handles any number of classes (and background-free IR labels); crf-cam is for one foreground class
(label 1). All ignore ground-truth pixels of value 255.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data.labels import read_name_list  # noqa: E402
from data.raster_io import read_image  # noqa: E402
from misc import artifacts  # noqa: E402
from misc.crf import crf_inference_label  # noqa: E402
from misc.io import load_npz, load_png  # noqa: E402
from misc.metrics import confusion_matrix, scores_from_confusion  # noqa: E402


def _ground_truth(voc12_root: str, name: str, shape: tuple[int, int] | None = None) -> np.ndarray:
    path = artifacts.mask_path(voc12_root, name)
    gt = load_png(path)
    if gt.ndim != 2 or (shape is not None and gt.shape != shape):
        raise ValueError(f"{path}: ground truth {gt.shape} is not an index mask of shape {shape}")
    return gt.astype(np.int64)


def ir_label_quality(voc12_root: str, names: list[str], ir_dir: str) -> dict[str, float]:
    """Coverage and precision of IR labels (0 background, 1..K classes, 255 unsure), for any K.

    ``fg_*``: the confident pixels of any class 1..K (right = the ground truth has that same class); ``bg_*``: the
    confident background (0); ``confident_precision``: every confident pixel; ``<class>_precision`` /
    ``<class>_recall``: per class, the share of its confident pixels that are right and the share of its
    ground-truth pixels it confidently covers. Background-free IR labels have no 0, so ``bg_cover`` is 0 there.
    """
    from data.labels import load_class_names

    class_names = load_class_names(voc12_root)
    k = len(class_names)
    conf = np.zeros((k, k), np.int64)  # rows: ground truth, columns: confident IR label
    gt_counts = np.zeros(k, np.int64)  # every valid ground-truth pixel per class, unsure ones included
    unsure = pixels = 0
    for name in names:
        label = load_png(artifacts.ir_label_path(ir_dir, name)).astype(np.int64)
        gt = _ground_truth(voc12_root, name, label.shape)
        valid = gt != 255
        sure = valid & (label != 255)
        conf += confusion_matrix(label[sure], gt[sure], k)
        gt_counts += np.bincount(gt[valid], minlength=k)[:k]
        unsure += ((label == 255) & valid).sum()
        pixels += valid.sum()
    tp = np.diag(conf)
    fg_total = conf[:, 1:].sum()
    result = {"fg_cover": fg_total / pixels, "fg_precision": tp[1:].sum() / max(fg_total, 1),
              "bg_cover": conf[:, 0].sum() / pixels, "bg_precision": tp[0] / max(conf[:, 0].sum(), 1),
              "unsure": unsure / pixels, "confident_precision": tp.sum() / max(conf.sum(), 1)}
    for c, n in enumerate(class_names[1:], start=1):
        result[f"{n}_precision"] = tp[c] / max(conf[:, c].sum(), 1)
        result[f"{n}_recall"] = tp[c] / max(gt_counts[c], 1)
    return result


def crf_cam_quality(voc12_root: str, names: list[str], cam_dir: str, threshold: float) -> dict[str, float]:
    """Building IoU of ``high_res >= threshold`` with and without IRN's dense CRF."""
    conf = {"cam": np.zeros((2, 2), np.int64), "cam+crf": np.zeros((2, 2), np.int64)}
    for name in names:
        cam = load_npz(artifacts.cam_path(cam_dir, name))
        h, w = cam["high_res"].shape[-2:]
        gt = _ground_truth(voc12_root, name, (h, w))
        if len(cam["keys"]) == 0:
            pred = crf = np.zeros((h, w), np.int64)
        else:
            pred = (cam["high_res"][0] >= threshold).astype(np.int64)
            crf = crf_inference_label(read_image(artifacts.image_path(voc12_root, name)), pred, 2)
        for key, p in (("cam", pred), ("cam+crf", crf)):
            conf[key] += confusion_matrix(p, gt, 2)
    return {key: float(scores_from_confusion(c)["iou"][1]) for key, c in conf.items()}


def crf_sweep(voc12_root: str, names: list[str], cam_dir: str, settings: list[dict], *,
              threshold: float | None = None, class_scale: str = "mean") -> list[dict]:
    """mIoU and per-class IoU of the CAMs' labels, as eval_cam draws them, and of each CRF setting's refinement.

    ``threshold`` None: background-free, each pixel takes its best present class after ``class_scale`` (eval_cam's
    argmax); otherwise background where every CAM is below ``threshold``. The CRF (misc.crf.crf_inference_label, a
    unary from the hard labels with ``gt_prob``) runs over the labels present in the image only. Returns one dict per
    row: {"setting": {...} or None for the CAM labels, "miou", "iou": {class: IoU}}.
    """
    from data.labels import load_class_names
    from misc.cam import cams_to_label, scale_classes
    from misc.logutils import progress
    from misc.metrics import named_scores

    class_names = load_class_names(voc12_root)
    k = len(class_names)
    confs = [np.zeros((k, k), np.int64) for _ in range(len(settings) + 1)]
    for name in progress(names, desc="crf-sweep"):
        cam = load_npz(artifacts.cam_path(cam_dir, name))
        high_res = cam["high_res"]
        h, w = high_res.shape[-2:]
        gt = _ground_truth(voc12_root, name, (h, w))
        if threshold is None:
            label = cams_to_label(scale_classes(high_res, class_scale), cam["keys"], float("-inf"))
        else:
            label = cams_to_label(high_res, cam["keys"], threshold)
        confs[0] += confusion_matrix(label, gt, k)
        present, dense = np.unique(label, return_inverse=True)  # CRF over the labels in this image only
        dense = dense.reshape(label.shape)
        image = read_image(artifacts.image_path(voc12_root, name)) if len(present) > 1 else None
        for conf, setting in zip(confs[1:], settings):
            refined = label if image is None else present[crf_inference_label(image, dense, len(present), **setting)]
            conf += confusion_matrix(refined, gt, k)
    rows = []
    for setting, conf in zip([None] + settings, confs):
        scores = named_scores(scores_from_confusion(conf), class_names)
        rows.append({"setting": setting, "miou": scores["miou"], "iou": scores["iou"]})
    return rows


def _float_list(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    ir = sub.add_parser("ir-labels")
    crf = sub.add_parser("crf-cam")
    sweep = sub.add_parser("crf-sweep")
    for p in (ir, crf, sweep):
        p.add_argument("--voc12_root", required=True)
        p.add_argument("--list", required=True)
    ir.add_argument("--ir_label_out_dir", required=True)
    crf.add_argument("--cam_out_dir", required=True)
    crf.add_argument("--threshold", type=float, default=0.3)
    sweep.add_argument("--cam_out_dir", required=True)
    sweep.add_argument("--threshold", type=float, default=None,
                       help="background threshold (default: none, the background-free argmax of the present classes)")
    sweep.add_argument("--class_scale", default="mean", choices=("max", "mean"))
    for key, default in (("bilateral_sxy", "50"), ("bilateral_srgb", "5"), ("bilateral_compat", "10"),
                         ("gaussian_sxy", "3"), ("gt_prob", "0.7")):
        sweep.add_argument(f"--{key}", type=_float_list, default=_float_list(default),
                           help=f"comma list; the grid is the cross product (default {default}, IRN's)")
    args = parser.parse_args(argv)
    names = read_name_list(args.list)
    if args.what == "crf-sweep":
        import itertools
        keys = ("bilateral_sxy", "bilateral_srgb", "bilateral_compat", "gaussian_sxy", "gt_prob")
        settings = [dict(zip(keys, values)) for values in itertools.product(*(getattr(args, k) for k in keys))]
        rows = crf_sweep(args.voc12_root, names, args.cam_out_dir, settings, threshold=args.threshold,
                         class_scale=args.class_scale)
        classes = [c for c, v in rows[0]["iou"].items() if v is not None]
        print("| CRF (bilateral sxy, srgb, compat; gaussian sxy; gt_prob) | mIoU | " + " | ".join(classes) + " |")
        print("| --- | --- | " + " | ".join("---" for _ in classes) + " |")
        for row in rows:
            what = ("CAM labels, no CRF" if row["setting"] is None
                    else ", ".join(f"{row['setting'][k]:g}" for k in keys))
            print(f"| {what} | {row['miou']:.3f} | " + " | ".join(f"{row['iou'][c]:.3f}" for c in classes) + " |")
        return
    if args.what == "ir-labels":
        result = ir_label_quality(args.voc12_root, names, args.ir_label_out_dir)
    else:
        result = crf_cam_quality(args.voc12_root, names, args.cam_out_dir, args.threshold)
    print(" | ".join(f"{k} {v:.3f}" for k, v in result.items()))


if __name__ == "__main__":
    main()
