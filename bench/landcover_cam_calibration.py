"""How background-free CAMs should be compared across classes: argmax of max-normalised, raw or mean-normalised maps.

In land-cover mode each pixel takes its best present class. make_cam max-normalises every class's map to peak at 1,
which makes a peaky class (buildings: a few strong roofs) lose the argmax to broad ones (land, road) everywhere but
at its peaks. This bench recomputes the multi-scale CAMs of a list with a trained CAM checkpoint and scores the argmax
under three per-class scalings:

    max   each map / its maximum (what make_cam writes)
    raw   no scaling: the classifier's own CAM units, shared by all classes
    mean  each map / its mean over the image

    python bench/landcover_cam_calibration.py --voc12_root Dataset/dubai_lc --list LIST --weights CAM.pth \
        --scales 2.0,3.0

Prints mIoU and per-class IoU per variant (ground truth from the data set's masks).
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data.labels import load_class_names, load_cls_labels, read_name_list  # noqa: E402
from data.raster_io import read_image  # noqa: E402
from misc import artifacts  # noqa: E402
from misc.cam import scale_classes  # noqa: E402
from misc.io import load_png  # noqa: E402
from misc.metrics import confusion_matrix, scores_from_confusion  # noqa: E402

VARIANTS = ("max", "raw", "mean")


def scaled(high: torch.Tensor, variant: str) -> torch.Tensor:
    """(k, H, W) non-negative CAMs of the present classes, scaled per class for the argmax."""
    if variant == "raw":
        return high
    if variant == "max":  # what make_cam writes
        return high / (high.flatten(1).max(dim=1)[0][:, None, None] + 1e-5)
    return scale_classes(high, variant)  # "mean", as --class_scale mean does


def argmax_label(high: torch.Tensor, keys: np.ndarray, variant: str) -> np.ndarray:
    """uint8 (H, W): 1 + the key of the best-scoring present class."""
    if len(keys) == 0:
        return np.zeros(high.shape[-2:], np.uint8)
    best = scaled(high, variant).argmax(dim=0).numpy()
    return (np.asarray(keys)[best] + 1).astype(np.uint8)


def main(argv: list[str] | None = None) -> None:
    from misc.cam_maps import multiscale_cams
    from net.zoo import load_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--voc12_root", required=True)
    parser.add_argument("--list", required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--scales", default="2.0,3.0")
    args = parser.parse_args(argv)
    names = read_name_list(args.list)
    class_names = load_class_names(args.voc12_root)
    labels = load_cls_labels(artifacts.cls_labels_path(args.voc12_root))
    model, _ = load_model(args.weights, "cam", torch.device("cpu"))
    scales = tuple(float(s) for s in args.scales.split(","))
    conf = {v: np.zeros((len(class_names),) * 2, np.int64) for v in VARIANTS}
    with torch.inference_mode():
        for i, name in enumerate(names):
            image = read_image(artifacts.image_path(args.voc12_root, name))
            keys = np.flatnonzero(labels[name] > 0.5)
            _, high = multiscale_cams(model, image, scales)  # (K, H, W)
            high = high[torch.as_tensor(keys, dtype=torch.long)].clamp_min(0).float()
            gt = load_png(artifacts.mask_path(args.voc12_root, name))
            for v in VARIANTS:
                conf[v] += confusion_matrix(argmax_label(high, keys, v), gt, len(class_names))
            if (i + 1) % 20 == 0:
                print(f"{i + 1}/{len(names)}", file=sys.stderr, flush=True)
    for v in VARIANTS:
        s = scores_from_confusion(conf[v])
        per = " ".join(f"{n} {x:.3f}" for n, x in zip(class_names, s["iou"]) if np.isfinite(x))
        print(f"{v:5s} mIoU {s['miou']:.4f} | {per}")


if __name__ == "__main__":
    main()
