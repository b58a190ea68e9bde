"""Class activation map math: normalisation, multi-scale fusion, background thresholding."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def max_normalize(cams: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per-map max normalisation of non-negative CAMs (k, H, W) → values in [0, 1], each map peaking at 1.

    A map that is all zero stays zero (eps keeps the division finite).
    """
    peak = F.adaptive_max_pool2d(cams, (1, 1)) if cams.dim() == 4 else cams.flatten(1).max(dim=1)[0][:, None, None]
    return cams / (peak + eps)


def fuse_scales(cams: list[torch.Tensor], size_hw: tuple[int, int]) -> torch.Tensor:
    """Sum CAMs (k, h_i, w_i) from several scales/flips after resizing each to ``size_hw`` (bilinear)."""
    total = None
    for cam in cams:
        up = F.interpolate(cam[None], size=size_hw, mode="bilinear", align_corners=False)[0]
        total = up if total is None else total + up
    return total


CLASS_SCALES = ("max", "mean")


def scale_classes(maps, mode: str):
    """Per-class scaling of the present classes' maps (k, ...) before a background-free argmax.

    ``max``: as given (make_cam's maps each peak at 1). ``mean``: each map divided by its mean over the image, so a
    class is compared with the others by how far it stands above its own average: a peaky class (a few strong roofs)
    is no longer outvoted everywhere else by broad ones (land, road). Works on numpy arrays and torch tensors.
    """
    if mode == "max":
        return maps
    if mode != "mean":
        raise ValueError(f"class scale {mode!r}: choose one of {CLASS_SCALES}")
    if len(maps) == 0:
        return maps
    axes = tuple(range(1, maps.ndim))
    if isinstance(maps, np.ndarray):
        return maps / (maps.mean(axis=axes, keepdims=True) + 1e-5)
    return maps / (maps.mean(dim=axes, keepdim=True) + 1e-5)


def comparable_scores(maps: np.ndarray, mode: str) -> np.ndarray:
    """Present classes' maps (k, H, W) scaled by --class_scale and brought back into [0, 1], for margins.

    The background-free argmax compares the classes after :func:`scale_classes`; the IR labels' "unsure" margin
    (best − second best) must be taken on the same scores, or the argmax and the margin disagree about which class
    is ahead. ``mean`` scores are in units of each class's image mean, so they are divided by their largest value
    in the image: the argmax is unchanged and a margin in [0, 1] keeps its meaning. ``max`` maps are returned as
    given (each already peaks at 1).
    """
    scored = scale_classes(np.asarray(maps, np.float32), mode)
    if mode == "max" or scored.size == 0:
        return scored
    peak = float(scored.max())
    return scored / peak if peak > 0 else scored


def cams_to_label(high_res: np.ndarray, keys: np.ndarray, bg_threshold: float) -> np.ndarray:
    """Class-index map (H, W) uint8 from max-normalised CAMs (k, H, W) of the present classes ``keys``.

    Background wins where every CAM is below ``bg_threshold``; otherwise the strongest class (key + 1).
    """
    h, w = high_res.shape[-2:]
    if len(keys) == 0:
        return np.zeros((h, w), np.uint8)
    scores = np.concatenate([np.full((1, h, w), bg_threshold, np.float32), high_res.astype(np.float32)], 0)
    lookup = np.concatenate([[0], np.asarray(keys) + 1]).astype(np.uint8)
    return lookup[np.argmax(scores, axis=0)]
