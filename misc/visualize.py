"""Pictures for people: CAM heat maps and label overlays as RGB uint8 arrays."""
from __future__ import annotations

import cv2
import numpy as np

# Colours for class indices 0..K (background first); 255 (ignore/unsure) is drawn grey.
CLASS_COLORS = np.array([
    (0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)], np.uint8)
IGNORE_COLOR = np.array((128, 128, 128), np.uint8)


def colorize_label(label: np.ndarray) -> np.ndarray:
    """(H, W) uint8 class index → (H, W, 3) RGB."""
    out = CLASS_COLORS[np.minimum(label, len(CLASS_COLORS) - 1)]
    out[label == 255] = IGNORE_COLOR
    return out


def label_overlay(image: np.ndarray, label: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend class colours over the image; background pixels keep the image as it is."""
    color = colorize_label(label).astype(np.float32)
    out = image.astype(np.float32)
    fg = (label > 0)[..., None]
    out = np.where(fg, (1 - alpha) * out + alpha * color, out)
    return out.clip(0, 255).astype(np.uint8)


def cam_overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Jet heat map of a [0, 1] map (H, W) blended over the RGB image (H, W, 3)."""
    heat = cv2.applyColorMap((np.clip(cam, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)
    heat = cv2.cvtColor(heat, cv2.COLOR_BGR2RGB).astype(np.float32)
    return ((1 - alpha) * image.astype(np.float32) + alpha * heat).clip(0, 255).astype(np.uint8)


def side_by_side(panels: list[np.ndarray], gap: int = 4) -> np.ndarray:
    """Concatenate RGB panels of equal height left to right with a white gap."""
    h = max(p.shape[0] for p in panels)
    parts = []
    for i, p in enumerate(panels):
        if p.ndim == 2:
            p = np.repeat(p[..., None], 3, axis=2)
        if p.shape[0] != h:
            p = cv2.resize(p, (round(p.shape[1] * h / p.shape[0]), h), interpolation=cv2.INTER_NEAREST)
        if i:
            parts.append(np.full((h, gap, 3), 255, np.uint8))
        parts.append(p.astype(np.uint8))
    return np.concatenate(parts, axis=1)
