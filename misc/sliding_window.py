"""Sliding-window inference over images of any size, with smooth blending and memory bounded by the window.

A scene is covered by a grid of ``window``×``window`` windows that overlap by at least ``overlap`` pixels (evenly
spaced, so the last window ends exactly at the border and no window sticks out). Each window's softmax
probabilities are weighted by a raised-cosine ramp over the region it shares with its neighbour — cos² on one
side, sin² on the other, so the two weights sum to 1 — which hides the poorer predictions near window borders
(missing context, zero padding) without a visible seam. Sides on the scene border are not tapered.

Windows are processed one row of windows at a time (a *strip*); only the probabilities of the current strip are
kept, and rows that no later window touches are handed back at once. Memory is O(K · window · width), whatever
the scene height.
"""
from __future__ import annotations

import math
from typing import Callable, Iterator

import numpy as np
import torch

ModelFn = Callable[[torch.Tensor], torch.Tensor]  # (B, C, h, w) float → (B, K, h, w) logits


def window_starts(length: int, window: int, overlap: int) -> list[int]:
    """Start offsets of windows of size ``min(window, length)`` covering [0, length), overlapping ≥ ``overlap``.

    The fewest windows that satisfy the overlap are spread evenly between 0 and ``length - window``.
    """
    if window < 1 or not 0 <= overlap < window:
        raise ValueError(f"need window >= 1 and 0 <= overlap < window, got window={window}, overlap={overlap}")
    if length <= window:
        return [0]
    count = math.ceil((length - overlap) / (window - overlap))  # windows needed with the given overlap
    span = length - window
    return [round(i * span / (count - 1)) for i in range(count)]


def window_grid(height: int, width: int, window: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Every window as (top, left, win_h, win_w), row by row; the union is exactly the image."""
    win_h, win_w = min(window, height), min(window, width)
    return [(top, left, win_h, win_w) for top in window_starts(height, window, overlap)
            for left in window_starts(width, window, overlap)]


def ramp_weights(starts: list[int], size: int, index: int) -> np.ndarray:
    """1-D blending weights (size,) float32 of window ``index`` among windows of ``size`` at ``starts``.

    Over the part shared with the previous window the weight rises as sin², over the part shared with the next it
    falls as cos²; both windows' weights add up to 1 there. Elsewhere (and at the scene borders) it is 1.
    """
    weights = np.ones(size, np.float32)
    start = starts[index]
    if index > 0:
        ramp = starts[index - 1] + size - start  # pixels shared with the previous window
        if ramp > 0:
            t = (np.arange(ramp) + 0.5) / ramp
            weights[:ramp] *= np.sin(0.5 * np.pi * t) ** 2
    if index + 1 < len(starts):
        ramp = start + size - starts[index + 1]  # pixels shared with the next window
        if ramp > 0:
            t = (np.arange(ramp) + 0.5) / ramp
            weights[size - ramp:] *= np.cos(0.5 * np.pi * t) ** 2
    return weights


def sliding_strips(model_fn: ModelFn, read_rows: Callable[[int, int], torch.Tensor], height: int, width: int, *,
                   window: int, overlap: int, num_classes: int, batch_size: int = 4
                   ) -> Iterator[tuple[int, torch.Tensor]]:
    """Blended class probabilities of a ``height``×``width`` scene, strip by strip, top to bottom.

    Args:
        model_fn: (B, C, h, w) float → (B, K, h, w) logits (``K = num_classes``); called under no_grad by the caller.
        read_rows: ``read_rows(top, bottom)`` → (C, bottom - top, width) float tensor: the model's input rows.
        window, overlap: window size and minimal overlap in pixels.
        batch_size: windows per ``model_fn`` call.

    Yields:
        (top, probs) with probs (K, rows, width) float32 on the model's device: the final probabilities of scene rows
        [top, top + rows). Consecutive yields tile [0, height) without gap or overlap.
    """
    row_starts = window_starts(height, window, overlap)
    col_starts = window_starts(width, window, overlap)
    win_h, win_w = min(window, height), min(window, width)
    col_weights = [torch.from_numpy(ramp_weights(col_starts, win_w, j)) for j in range(len(col_starts))]
    probs = weights = None  # (K, win_h, width), (win_h, width): scene rows [row_starts[i], row_starts[i] + win_h)
    for i, top in enumerate(row_starts):
        strip = read_rows(top, top + win_h)  # (C, win_h, width)
        if strip.shape[-2:] != (win_h, width):
            raise ValueError(f"read_rows({top}, {top + win_h}) gave shape {tuple(strip.shape)}, "
                             f"expected (C, {win_h}, {width})")
        row_weight = torch.from_numpy(ramp_weights(row_starts, win_h, i))  # (win_h,)
        for b in range(0, len(col_starts), batch_size):
            lefts = col_starts[b:b + batch_size]
            crops = torch.stack([strip[:, :, left:left + win_w] for left in lefts])  # (B, C, win_h, win_w)
            logits = model_fn(crops)
            if logits.shape != (len(lefts), num_classes, win_h, win_w):
                raise ValueError(f"model output {tuple(logits.shape)} does not match the window batch "
                                 f"({len(lefts)}, {num_classes}, {win_h}, {win_w})")
            if probs is None:
                device = logits.device
                probs = torch.zeros(num_classes, win_h, width, dtype=torch.float32, device=device)
                weights = torch.zeros(win_h, width, dtype=torch.float32, device=device)
                col_weights = [w.to(device) for w in col_weights]
            row_weight = row_weight.to(probs.device)
            window_probs = torch.softmax(logits.float(), dim=1)  # (B, K, win_h, win_w)
            for k, left in enumerate(lefts):
                weight = row_weight[:, None] * col_weights[b + k][None, :]  # (win_h, win_w)
                probs[:, :, left:left + win_w] += window_probs[k] * weight
                weights[:, left:left + win_w] += weight
        # rows above the next window row are final: no later window reaches them
        done = (row_starts[i + 1] - top) if i + 1 < len(row_starts) else win_h
        yield top, probs[:, :done] / weights[:done]
        # shift the still-open rows to the top of the buffers
        probs = torch.cat([probs[:, done:], probs.new_zeros(num_classes, done, width)], dim=1)
        weights = torch.cat([weights[done:], weights.new_zeros(done, width)], dim=0)


def predict_sliding(model_fn: ModelFn, image: torch.Tensor, window: int, overlap: int, num_classes: int,
                    batch_size: int = 4) -> torch.Tensor:
    """Blended class probabilities (K, H, W) of an in-memory image (C, H, W) by sliding windows."""
    if image.ndim != 3:
        raise ValueError(f"image must be (C, H, W), got shape {tuple(image.shape)}")
    height, width = image.shape[-2:]
    strips = [probs for _, probs in sliding_strips(
        model_fn, lambda top, bottom: image[:, top:bottom], height, width, window=window, overlap=overlap,
        num_classes=num_classes, batch_size=batch_size)]
    return torch.cat(strips, dim=1)
