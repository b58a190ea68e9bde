"""How good are the intermediate labels against the ground truth? Two measurements used in BENCHMARKS.md (issue 4).

    # precision and coverage of IR labels (cam_to_ir_label's output: 0 background, 1..K classes, 255 unsure)
    python bench/pseudo_label_quality.py ir-labels --voc12_root Dataset/dubai \
        --list Dataset/dubai/lists/train_aug_building.txt --ir_label_out_dir result/dubai/ir_label_e10_50_20

    # building IoU of CAMs thresholded at --threshold, before and after IRN's dense CRF on the image
    python bench/pseudo_label_quality.py crf-cam --voc12_root Dataset/dubai --list Dataset/dubai/lists/train_aug.txt \
        --cam_out_dir result/dubai/cam_t123478_e10_s20_30_all --threshold 0.3

Both are for one foreground class (label 1) and ignore ground-truth pixels of value 255.
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
    """Coverage and precision of the confident foreground (1) and background (0) of IR labels."""
    counts = np.zeros(4, np.int64)  # fg right, fg total, bg right, bg total
    unsure = pixels = 0
    for name in names:
        label = load_png(artifacts.ir_label_path(ir_dir, name))
        gt = _ground_truth(voc12_root, name, label.shape)
        valid = gt != 255
        fg, bg = (label == 1) & valid, (label == 0) & valid
        counts += [(gt[fg] == 1).sum(), fg.sum(), (gt[bg] == 0).sum(), bg.sum()]
        unsure += ((label == 255) & valid).sum()
        pixels += valid.sum()
    return {"fg_cover": counts[1] / pixels, "fg_precision": counts[0] / max(counts[1], 1),
            "bg_cover": counts[3] / pixels, "bg_precision": counts[2] / max(counts[3], 1), "unsure": unsure / pixels}


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    ir = sub.add_parser("ir-labels")
    crf = sub.add_parser("crf-cam")
    for p in (ir, crf):
        p.add_argument("--voc12_root", required=True)
        p.add_argument("--list", required=True)
    ir.add_argument("--ir_label_out_dir", required=True)
    crf.add_argument("--cam_out_dir", required=True)
    crf.add_argument("--threshold", type=float, default=0.3)
    args = parser.parse_args(argv)
    names = read_name_list(args.list)
    if args.what == "ir-labels":
        result = ir_label_quality(args.voc12_root, names, args.ir_label_out_dir)
    else:
        result = crf_cam_quality(args.voc12_root, names, args.cam_out_dir, args.threshold)
    print(" | ".join(f"{k} {v:.3f}" for k, v in result.items()))


if __name__ == "__main__":
    main()
