"""Image operations on numpy arrays (H, W, C) uint8 / float32, shared by datasets and passes."""
from __future__ import annotations

import cv2
import numpy as np


def to_float(image: np.ndarray) -> np.ndarray:
    """uint8 (H,W,3) → float32 (H,W,3) in [0, 1]. Networks normalise internally with their backbone's stats."""
    return image.astype(np.float32) / 255.0


def resize(array: np.ndarray, size_hw: tuple[int, int], nearest: bool = False) -> np.ndarray:
    h, w = size_hw
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.resize(array, (int(w), int(h)), interpolation=interp)


def rescale(array: np.ndarray, scale: float, nearest: bool = False) -> np.ndarray:
    h, w = array.shape[:2]
    return resize(array, (max(1, round(h * scale)), max(1, round(w * scale))), nearest=nearest)


def random_dihedral(arrays: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """The same random flip/90°-rotation for every array: overhead imagery has no 'up'."""
    k = int(rng.integers(4))
    flip = bool(rng.integers(2))
    out = []
    for a in arrays:
        a = np.rot90(a, k)
        if flip:
            a = a[:, ::-1]
        out.append(np.ascontiguousarray(a))
    return out


def random_crop(arrays: list[np.ndarray], crop: int, rng: np.random.Generator,
                fill_values: list[float]) -> list[np.ndarray]:
    """One random ``crop``×``crop`` window for all arrays; smaller arrays are padded with ``fill_values``."""
    h, w = arrays[0].shape[:2]
    ch, cw = max(h, crop), max(w, crop)
    top = int(rng.integers(ch - crop + 1))
    left = int(rng.integers(cw - crop + 1))
    out = []
    for a, fill in zip(arrays, fill_values):
        if a.shape[0] < ch or a.shape[1] < cw:
            padded = np.full((ch, cw) + a.shape[2:], fill, dtype=a.dtype)
            padded[:h, :w] = a
            a = padded
        out.append(np.ascontiguousarray(a[top:top + crop, left:left + crop]))
    return out


def color_jitter(image: np.ndarray, rng: np.random.Generator, strength: float = 0.2) -> np.ndarray:
    """Random brightness/contrast/saturation on a float [0,1] image (sensor and season differences)."""
    b = 1 + rng.uniform(-strength, strength)
    c = 1 + rng.uniform(-strength, strength)
    s = 1 + rng.uniform(-strength, strength)
    mean = image.mean()
    image = (image - mean) * c + mean * b
    gray = image.mean(axis=2, keepdims=True)
    image = (image - gray) * s + gray
    return np.clip(image, 0, 1).astype(np.float32)
