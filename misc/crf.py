"""Dense CRF (Krähenbühl & Koltun 2011, via pydensecrf2) refining a hard label map along image edges.

IRN refines its confident foreground / background CAM labels this way before turning them into inter-pixel relation
labels (step/cam_to_ir_label.py). The defaults are IRN's ``imutils.crf_inference_label``.
"""
from __future__ import annotations

import numpy as np


def crf_inference_label(image: np.ndarray, labels: np.ndarray, n_labels: int, *, t: int = 10, gt_prob: float = 0.7,
                        gaussian_sxy: float = 3.0, gaussian_compat: float = 3.0, bilateral_sxy: float = 50.0,
                        bilateral_srgb: float = 5.0, bilateral_compat: float = 10.0) -> np.ndarray:
    """Refine a hard label map with a fully connected CRF.

    Args:
        image: uint8 (H, W, 3) RGB; the bilateral kernel compares colours.
        labels: int (H, W) with values in [0, n_labels); every value is a real label (no "unsure" label).
        n_labels: number of labels (IRN: present classes + background).
        t: mean-field iterations.
        gt_prob: confidence given to the input label in the unary term (the rest is shared by the other labels).
        gaussian_sxy, gaussian_compat: smoothness kernel (position only): removes isolated pixels.
        bilateral_sxy, bilateral_srgb, bilateral_compat: appearance kernel: nearby pixels of similar colour agree.
    Returns:
        (H, W) int64 refined labels in [0, n_labels).
    """
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_labels

    image = np.asarray(image)
    labels = np.asarray(labels)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
    if labels.shape != image.shape[:2]:
        raise ValueError(f"labels {labels.shape} and image {image.shape[:2]} differ in size")
    if n_labels < 1 or (labels.size and (labels.min() < 0 or labels.max() >= n_labels)):
        raise ValueError(f"labels must lie in [0, {n_labels})")
    height, width = labels.shape
    if n_labels == 1:
        return np.zeros((height, width), np.int64)
    crf = dcrf.DenseCRF2D(width, height, n_labels)
    # zero_unsure=False: label 0 (background) is a label like the others, not "unknown"
    crf.setUnaryEnergy(unary_from_labels(labels.astype(np.int64), n_labels, gt_prob=gt_prob, zero_unsure=False))
    crf.addPairwiseGaussian(sxy=gaussian_sxy, compat=gaussian_compat)
    crf.addPairwiseBilateral(sxy=bilateral_sxy, srgb=bilateral_srgb, rgbim=np.ascontiguousarray(image),
                             compat=bilateral_compat)
    q = np.asarray(crf.inference(t), dtype=np.float32).reshape(n_labels, height, width)  # (n_labels, H, W)
    return np.argmax(q, axis=0).astype(np.int64)
