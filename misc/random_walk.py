"""Random walk of class activation maps over a boundary-derived affinity graph (IRN, Ahn et al. 2019).

Pixels i and j of the stride-4 grid with ``dy² + dx² < radius²`` are neighbours. Their affinity is
``a_ij = (1 - max boundary probability on the straight line between them) ** beta`` and every pixel has a self-loop
``a_ii = 1``. The transition ``P = D⁻¹ A`` (``D_i = Σ_j a_ij``, the row sums) is applied ``n_iter = 2 ** exp_times``
times: ``x ← P x``. This is exactly IRN's ``x @ T^(2^exp_times)`` with its column-normalised ``T = A / A.sum(0)``,
because A is symmetric.

What the walk conserves (tests/test_random_walk.py checks each):

* each output pixel is a convex combination of input pixels (rows of P are non-negative and sum to 1): a constant map
  stays constant, values never leave [min, max] of the input, non-negative CAMs stay non-negative;
* the degree-weighted mass ``Σ_i D_i x_i`` of every channel (``1ᵀ D P = 1ᵀ A = Dᵀ``) — *not* the plain sum
  ``Σ_i x_i`` (that would need the column-stochastic scatter ``A D⁻¹``, the transpose of what IRN applies);
* nothing crosses a closed boundary: a path through a pixel of boundary probability 1 has affinity exactly 0.

Memory is linear in the pixels: the graph is stored as one weight map (H, W) per neighbour offset of a half-plane
(34 maps for radius 5) and applied as shifted multiply-adds, never as a dense (HW, HW) matrix (IRN's version needs
~HW² floats and runs out of memory past ~512² images). ``tile_size`` additionally bounds memory for huge maps.
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from misc.neighbourhood import line_pixels, search_offsets


def boundary_affinities(boundary: torch.Tensor, *, radius: int = 5, beta: float = 10.0
                        ) -> tuple[list[tuple[int, int]], torch.Tensor]:
    """Affinities of every pixel to its half-plane neighbours from a boundary probability map.

    Args:
        boundary: (H, W) float in [0, 1], boundary probability (stride-4 grid in the pipeline).
        radius: neighbours satisfy ``dy² + dx² < radius²`` (IRN: 5 at stride 4).
        beta: exponent sharpening the affinities (IRN: 10).
    Returns:
        offsets: the n_offsets half-plane offsets (dy, dx) of :func:`search_offsets`.
        weights: (n_offsets, H, W) float32 on ``boundary.device``; ``weights[o, y, x]`` is
            ``(1 - max boundary on the line from (y, x) to (y + dy, x + dx)) ** beta``, and 0 where the neighbour
            falls outside the image. The self-loop (weight 1) and the mirrored offsets are implicit.
    """
    if boundary.dim() != 2:
        raise ValueError(f"boundary must be (H, W), got {tuple(boundary.shape)}")
    height, width = boundary.shape
    offsets = list(search_offsets(radius))
    pad = radius - 1
    # Outside the image counts as boundary 1: a neighbour off the image has affinity 0 (IRN pads its edge map with 1).
    padded = F.pad(boundary.float().clamp(0, 1)[None, None], (pad, pad, pad, pad), value=1.0)[0, 0]
    weights = torch.empty((len(offsets), height, width), dtype=torch.float32, device=boundary.device)
    for o, (dy, dx) in enumerate(offsets):
        path_max = None
        for py, px in line_pixels(dy, dx):
            window = padded[pad + py: pad + py + height, pad + px: pad + px + width]  # (H, W)
            path_max = window.clone() if path_max is None else torch.maximum(path_max, window, out=path_max)
        weights[o] = (1.0 - path_max).pow_(beta)
    return offsets, weights


def transition_degree(offsets: list[tuple[int, int]], weights: torch.Tensor) -> torch.Tensor:
    """Row sums ``D`` (H, W) of the symmetric affinity matrix (self-loop 1 + forward + mirrored weights)."""
    _, height, width = weights.shape
    pad = _max_shift(offsets)
    padded = F.pad(weights, (pad, pad, pad, pad))  # (n_offsets, H + 2 pad, W + 2 pad), zeros off the image
    degree = torch.ones((height, width), dtype=weights.dtype, device=weights.device)
    for o, (dy, dx) in enumerate(offsets):
        degree += weights[o]
        # the pair (p - o, p) seen from p: the weight stored at p - o
        degree += padded[o, pad - dy: pad - dy + height, pad - dx: pad - dx + width]
    return degree


@contextlib.contextmanager
def cpu_threads(threads: int | None, device: torch.device) -> Iterator[None]:
    """Run the block with ``threads`` intra-op CPU threads (None, or a non-CPU device: leave torch's setting)."""
    saved = torch.get_num_threads()
    change = threads is not None and device.type == "cpu" and threads != saved
    if change:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if change:
            torch.set_num_threads(saved)


def propagate(cams: torch.Tensor, offsets: list[tuple[int, int]], weights: torch.Tensor, n_iter: int, *,
              threads: int | None = 1) -> torch.Tensor:
    """Apply the row-normalised transition ``P = D⁻¹ A`` ``n_iter`` times: ``x ← P x``.

    Args:
        cams: (C, H, W) float maps to propagate (any number of channels; all share the graph).
        offsets, weights: from :func:`boundary_affinities` (weights (n_offsets, H, W)).
        n_iter: number of transition steps (IRN: ``2 ** exp_times``).
        threads: CPU intra-op threads for the loop (None: torch's setting). The loop is ~70 small memory-bound
            multiply-adds per step; a second OpenMP thread on a shared 2-core machine made it 10× slower in CPU
            time and 5-10× in wall time (BENCHMARKS.md), so one thread is the default. Ignored on CUDA.
    Returns:
        (C, H, W) float32 on ``cams.device``. Memory: the weights plus four (C, H, W)-sized buffers.
    """
    with cpu_threads(threads, cams.device):
        return _propagate(cams, offsets, weights, n_iter)


def _propagate(cams: torch.Tensor, offsets: list[tuple[int, int]], weights: torch.Tensor, n_iter: int
               ) -> torch.Tensor:
    if cams.dim() != 3 or cams.shape[-2:] != weights.shape[-2:]:
        raise ValueError(f"cams (C, H, W) {tuple(cams.shape)} and weights (n, H, W) {tuple(weights.shape)} "
                         f"must share H, W")
    if len(offsets) != weights.shape[0]:
        raise ValueError(f"{len(offsets)} offsets but {weights.shape[0]} weight maps")
    channels, height, width = cams.shape
    weights = weights.to(device=cams.device, dtype=torch.float32)
    inv_degree = transition_degree(offsets, weights).reciprocal_()  # (H, W)
    pad = _max_shift(offsets)
    # Padded weights so that the mirrored weight at p, stored at p - o, is a plain slice (a view, no copy). Both
    # directions read this one padded copy (not ``weights`` and the copy): half the bytes streamed per step, which
    # sets the pace of this memory-bound loop (-15 to -25 % CPU time at 512², see BENCHMARKS.md).
    w_padded = F.pad(weights, (pad, pad, pad, pad))  # (n_offsets, H + 2 pad, W + 2 pad)
    del weights
    # Two padded ping-pong buffers; the zero frame is never written, so off-image neighbours contribute nothing
    # (their weights are 0 anyway).
    current = F.pad(cams.float(), (pad, pad, pad, pad))  # (C, H + 2 pad, W + 2 pad)
    following = torch.zeros_like(current)
    for _ in range(int(n_iter)):
        inner = following[:, pad: pad + height, pad: pad + width]  # (C, H, W) view
        inner.copy_(current[:, pad: pad + height, pad: pad + width])  # self-loop, weight 1
        for o, (dy, dx) in enumerate(offsets):
            # p ← p + o, weight stored at p
            inner.addcmul_(w_padded[o, pad: pad + height, pad: pad + width],
                           current[:, pad + dy: pad + dy + height, pad + dx: pad + dx + width])
            # p ← p - o, weight stored at p - o
            inner.addcmul_(w_padded[o, pad - dy: pad - dy + height, pad - dx: pad - dx + width],
                           current[:, pad - dy: pad - dy + height, pad - dx: pad - dx + width])
        inner.mul_(inv_degree)
        current, following = following, current
    return current[:, pad: pad + height, pad: pad + width].contiguous()


def random_walk(cams: torch.Tensor, boundary: torch.Tensor, *, beta: float = 10.0, exp_times: int = 8,
                radius: int = 5, tile_size: int | None = None, tile_halo: int = 128,
                threads: int | None = 1) -> torch.Tensor:
    """IRN's ``propagate_to_edge``: remove activations on boundaries, then walk ``2 ** exp_times`` steps.

    Args:
        cams: (C, H, W) float, e.g. the stride-4 CAMs of the present classes.
        boundary: (H, W) float in [0, 1], boundary probability on the same grid.
        beta, exp_times, radius: IRN's hyper-parameters (10, 8, 5).
        tile_size: walk windows of ``tile_size``² pixels (plus ``tile_halo`` context on each side) one at a time when
            the map is larger, to bound memory on huge scenes. A window's edge acts as a closed boundary, so this is an
            approximation for pixels whose walk would reach farther than the halo; None walks the whole map at once.
        threads: CPU threads for the walk (see :func:`propagate`).
    Returns:
        (C, H, W) float32 on ``cams.device``.
    """
    if cams.dim() != 3 or boundary.shape != cams.shape[-2:]:
        raise ValueError(f"cams (C, H, W) {tuple(cams.shape)} and boundary (H, W) {tuple(boundary.shape)} differ")
    if exp_times < 0:
        raise ValueError(f"exp_times must be >= 0, got {exp_times}")
    boundary = boundary.to(device=cams.device, dtype=torch.float32)
    # IRN multiplies the CAMs by (1 - boundary): activation sitting on a boundary does not seed the walk.
    seeds = cams.float() * (1.0 - boundary)
    height, width = boundary.shape
    n_iter = 2 ** exp_times
    if tile_size is None or (height <= tile_size and width <= tile_size):
        offsets, weights = boundary_affinities(boundary, radius=radius, beta=beta)
        return propagate(seeds, offsets, weights, n_iter, threads=threads)
    out = torch.empty_like(seeds)
    for top in range(0, height, tile_size):
        for left in range(0, width, tile_size):
            y0, x0 = max(0, top - tile_halo), max(0, left - tile_halo)
            y1, x1 = min(height, top + tile_size + tile_halo), min(width, left + tile_size + tile_halo)
            offsets, weights = boundary_affinities(boundary[y0:y1, x0:x1], radius=radius, beta=beta)
            walked = propagate(seeds[:, y0:y1, x0:x1], offsets, weights, n_iter, threads=threads)
            bottom, right = min(height, top + tile_size), min(width, left + tile_size)
            out[:, top:bottom, left:right] = walked[:, top - y0: bottom - y0, left - x0: right - x0]
            del weights, walked
    return out


def random_walk_scores(walked: torch.Tensor, image_hw: tuple[int, int], *, stride: int = 4,
                       normalize: bool = True) -> torch.Tensor:
    """Walked stride-``stride`` maps (k, h, w) → full-size scores (k, H, W), divided by their overall maximum when
    ``normalize`` (IRN's normalisation, which the background threshold is compared with).

    The walk averages, so without the division the scores stay on the CAMs' scale. With it, a CAM that the walk has
    spread thinly over a whole patch is stretched back to 1 everywhere; ``normalize=False`` keeps it low.
    """
    height, width = image_hw
    up = F.interpolate(walked[None].float(), scale_factor=stride, mode="bilinear", align_corners=False)
    up = up[0, :, :height, :width]  # (k, H, W)
    if up.shape[-2:] != (height, width):
        raise ValueError(f"walked maps {tuple(walked.shape[-2:])} ×{stride} do not cover the image {height}x{width}")
    return up / up.max().clamp_min(1e-5) if normalize else up


def label_from_random_walk(walked: torch.Tensor, keys: np.ndarray, image_hw: tuple[int, int], *,
                           bg_threshold: float, stride: int = 4, normalize: bool = True) -> np.ndarray:
    """Pseudo mask from walked stride-``stride`` maps, as IRN's make_sem_seg_labels does it.

    Upsample ×stride (bilinear) and crop to the image, divide by the maximum over all channels and pixels (unless
    ``normalize`` is False: see :func:`random_walk_scores`), put a
    constant ``bg_threshold`` background channel in front (IRN pads it after the walk; background is never walked),
    take the argmax and map it through ``[0, keys + 1]``.

    Args:
        walked: (k, ceil(H/stride), ceil(W/stride)) float, one map per present class.
        keys: (k,) int 0-based foreground class indices.
        image_hw: (H, W) of the image.
    Returns:
        (H, W) uint8: 0 background, 1..K classes.
    """
    height, width = image_hw
    if len(keys) == 0:
        return np.zeros((height, width), np.uint8)
    if walked.shape[0] != len(keys):
        raise ValueError(f"{walked.shape[0]} walked maps but {len(keys)} keys")
    up = random_walk_scores(walked, image_hw, stride=stride, normalize=normalize)
    scores = F.pad(up, (0, 0, 0, 0, 1, 0), value=bg_threshold)  # (k + 1, H, W), background first
    lookup = np.concatenate([[0], np.asarray(keys, np.int64) + 1]).astype(np.uint8)
    return lookup[scores.argmax(dim=0).cpu().numpy()]


def _max_shift(offsets: list[tuple[int, int]]) -> int:
    return max([max(abs(dy), abs(dx)) for dy, dx in offsets] + [0])


def stride_size(height: int, width: int, stride: int = 4) -> tuple[int, int]:
    """(ceil(H / stride), ceil(W / stride)): the grid of the stride-4 CAMs and boundary maps."""
    return math.ceil(height / stride), math.ceil(width / stride)
