"""SLIC superpixels (Achanta et al. 2012) and superpixel pooling of CAMs.

CAMs of a stride-16 classifier are blobs a few grid cells wide; their edges do not follow roofs or road kerbs.
Averaging every class's map inside colour-homogeneous regions of about the grid's size snaps the maps to the image's
edges while keeping each class's image mean (so the background-free argmax, which divides by that mean, compares
the classes as before).

SLIC here: seeds on a regular grid of ``size`` px; each pixel joins the nearest of the 3 x 3 seeds around its own
grid cell by the distance ``d_lab² + (compactness / size)² · d_xy²`` (CIELAB colour, position in px); seeds move to
the mean of their pixels; repeat. Regions are not forced to be connected: pooling only needs groups of similar
pixels, and the 3 x 3 search keeps every region within two grid cells of its seed.
"""
from __future__ import annotations

import cv2
import numpy as np


def slic(image: np.ndarray, *, size: int = 16, compactness: float = 10.0, num_iter: int = 5) -> np.ndarray:
    """Superpixel index map of an RGB image.

    Args:
        image: uint8 (H, W, 3) RGB.
        size: grid step of the seeds (px), about the side of one superpixel.
        compactness: weight of position against colour (CIELAB units per ``size`` px); larger = squarer regions.
        num_iter: assignment / update rounds.
    Returns:
        (H, W) int64 labels in [0, n) with n = ceil(H/size) * ceil(W/size); some labels may be unused.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    h, w = image.shape[:2]
    lab = cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB).reshape(-1, 3)  # (HW, 3), L in [0, 100]
    ny, nx = -(-h // size), -(-w // size)
    ys, xs = np.mgrid[0:h, 0:w]
    ys, xs = ys.reshape(-1).astype(np.float32), xs.reshape(-1).astype(np.float32)
    cell_y, cell_x = (ys // size).astype(np.int64), (xs // size).astype(np.int64)
    # seeds: the centre of each grid cell (clipped into the image), with that pixel's colour
    cy = np.minimum((np.arange(ny) + 0.5) * size - 0.5, h - 1)  # pixel-centre coordinates
    cx = np.minimum((np.arange(nx) + 0.5) * size - 0.5, w - 1)
    seed_y, seed_x = [a.reshape(-1).astype(np.float32) for a in np.meshgrid(cy, cx, indexing="ij")]
    seed_lab = lab[np.rint(seed_y).astype(np.int64) * w + np.rint(seed_x).astype(np.int64)]  # (n, 3)
    # the 3 x 3 candidate seeds of every pixel: (9, HW) seed indices, -1 outside the grid
    candidates = []
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            gy, gx = cell_y + dy, cell_x + dx
            inside = (gy >= 0) & (gy < ny) & (gx >= 0) & (gx < nx)
            candidates.append(np.where(inside, gy * nx + gx, -1))
    candidates = np.stack(candidates)  # (9, HW)
    valid = candidates >= 0
    safe = np.where(valid, candidates, 0)
    weight = (compactness / size) ** 2
    n = ny * nx
    labels = np.zeros(h * w, np.int64)
    for _ in range(max(1, num_iter)):
        d_lab = ((lab[None] - seed_lab[safe]) ** 2).sum(-1)  # (9, HW)
        d_xy = (ys[None] - seed_y[safe]) ** 2 + (xs[None] - seed_x[safe]) ** 2
        dist = np.where(valid, d_lab + weight * d_xy, np.inf)
        labels = np.take_along_axis(safe, dist.argmin(0)[None], 0)[0]
        counts = np.bincount(labels, minlength=n).astype(np.float32)
        used = counts > 0
        for values, target in ((ys, seed_y), (xs, seed_x)):
            sums = np.bincount(labels, weights=values, minlength=n)
            target[used] = sums[used] / counts[used]
        for c in range(3):
            sums = np.bincount(labels, weights=lab[:, c], minlength=n)
            seed_lab[used, c] = sums[used] / counts[used]
    return labels.reshape(h, w)


def superpixel_pool(maps: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Replace every pixel of each map by the mean of its superpixel.

    Args:
        maps: float (k, H, W) class maps.
        labels: int (H, W) superpixel index map (:func:`slic`).
    Returns:
        float32 (k, H, W); each map's image mean is unchanged.
    """
    maps = np.asarray(maps, np.float32)
    if maps.shape[-2:] != labels.shape:
        raise ValueError(f"maps {maps.shape[-2:]} and superpixels {labels.shape} differ in size")
    flat = labels.reshape(-1)
    n = int(flat.max()) + 1 if flat.size else 0
    counts = np.maximum(np.bincount(flat, minlength=n), 1)
    out = np.empty_like(maps)
    for i, m in enumerate(maps):
        means = np.bincount(flat, weights=m.reshape(-1), minlength=n) / counts
        out[i] = means[flat].reshape(labels.shape)
    return out
