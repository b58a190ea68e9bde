"""Self-training labels: a trained segmenter's class probabilities, restricted to the classes an image's tags allow."""
from __future__ import annotations

import numpy as np
import torch

from misc.artifacts import IGNORE_INDEX as IGNORE


def tag_restricted_label(probs: torch.Tensor, keys: np.ndarray, *, has_background: bool,
                         conf_thres: float = 0.0) -> np.ndarray:
    """Pseudo mask (H, W) uint8 from segmenter probabilities (K+1, H, W) and an image's present classes.

    Args:
        probs: softmax over background (index 0) and the K foreground classes (1..K).
        keys: 0-based foreground classes the image-level tags say are present (class index = key + 1).
        has_background: background (0) competes too (data with a background/clutter class); on background-free data
            only the tagged classes do.
        conf_thres: pixels whose winning probability, renormalised over the allowed classes, is below this become
            255 (ignored by train_seg); 0 keeps every pixel.
    Returns:
        uint8 labels: the allowed class of highest probability, or 255. An image with nothing allowed (no tag on
        background-free data) is all 255: its tags say nothing about its pixels.
    """
    if probs.ndim != 3:
        raise ValueError(f"probabilities must be (K+1, H, W), got shape {tuple(probs.shape)}")
    if not 0.0 <= conf_thres < 1.0:
        raise ValueError(f"confidence threshold must be in [0, 1), got {conf_thres}")
    allowed = [0] if has_background else []
    allowed += [int(k) + 1 for k in keys]
    if any(c >= probs.shape[0] for c in allowed):
        raise ValueError(f"tags name class {max(allowed)} but the segmenter has {probs.shape[0]} outputs "
                         "(trained on another classes.json?)")
    h, w = probs.shape[-2:]
    if not allowed:
        return np.full((h, w), IGNORE, np.uint8)
    index = torch.as_tensor(allowed, device=probs.device)
    sub = probs.index_select(0, index).float()  # (A, H, W)
    sub = sub / sub.sum(0, keepdim=True).clamp_min(1e-12)
    best, arg = sub.max(0)  # (H, W)
    label = index[arg].to(torch.uint8)
    if conf_thres > 0:
        label[best < conf_thres] = IGNORE
    return label.cpu().numpy()
