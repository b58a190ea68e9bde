"""Pixel pairs for the inter-pixel relation network (IRN): offsets, pair labels, affinities, pair losses.

Everything here works on the stride-4 grid of the network's outputs. A pair is a source pixel ``i = (y, x)`` and a
destination ``j = i + (dy, dx)`` with ``dy² + dx² < radius²`` (IRN trains with radius 10 at stride 4). Only one
half-plane of offsets is kept (``dy > 0``, or ``dy == 0`` and ``dx > 0``): the pair (j, i) carries the same
information as (i, j), so keeping both would count every pair twice.

Pair tensors are laid out as ``(..., D, h, w)``: entry ``[..., d, y, x]`` is the pair from ``(y, x)`` to
``(y + dy_d, x + dx_d)``. A destination outside the map gets the fill value (label 255 = no pair; boundary 0).

Pure functions over numpy arrays / torch tensors; the device is always the input's.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from misc.artifacts import IGNORE_INDEX
from misc.neighbourhood import line_pixels, search_offsets

TRAIN_RADIUS = 10  # IRN's training radius at stride 4


def pair_offsets(radius: int = TRAIN_RADIUS) -> np.ndarray:
    """Offsets (D, 2) int64 ``(dy, dx)`` of the half-plane pairs with ``dy² + dx² < radius²``
    (:func:`misc.neighbourhood.search_offsets` as an array; radius 2 → [(0, 1), (1, -1), (1, 0), (1, 1)])."""
    if radius < 2:
        raise ValueError(f"radius must be >= 2 (radius 1 has no neighbour strictly inside it), got {radius}")
    return np.array(search_offsets(int(radius)), dtype=np.int64).reshape(-1, 2)


@functools.lru_cache(maxsize=None)
def _path_table(radius: int) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """(unique shifts (U, 2), groups): the line points of every offset as indices into the shifts, grouped by line
    length so that no group is padded: [(offset ids (d,), point index (d, P)), ...]."""
    lines = [line_pixels(dy, dx) for dy, dx in pair_offsets(radius).tolist()]
    shifts = sorted({p for line in lines for p in line})
    where = {p: k for k, p in enumerate(shifts)}
    groups = []
    for length in sorted({len(line) for line in lines}):
        ids = [d for d, line in enumerate(lines) if len(line) == length]
        groups.append((np.array(ids, dtype=np.int64),
                       np.array([[where[p] for p in lines[d]] for d in ids], dtype=np.int64)))
    return np.array(shifts, dtype=np.int64), groups


def gather_pairs(x: torch.Tensor, offsets, fill: float) -> torch.Tensor:
    """The map shifted by each offset: ``out[..., d, y, x] = x[..., y + dy_d, x + dx_d]`` (``fill`` outside).

    x: (..., h, w) any dtype. offsets: (D, 2) ints. Returns (..., D, h, w).
    """
    offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    h, w = x.shape[-2:]
    top, bottom = max(0, -int(offsets[:, 0].min())), max(0, int(offsets[:, 0].max()))
    left, right = max(0, -int(offsets[:, 1].min())), max(0, int(offsets[:, 1].max()))
    lead = x.shape[:-2]
    flat = x.reshape((-1, 1) + (h, w))  # F.pad wants a channel axis
    if flat.dtype in (torch.uint8, torch.bool):  # constant padding of small integer types: go through int16
        padded = F.pad(flat.to(torch.int16), (left, right, top, bottom), value=int(fill)).to(flat.dtype)
    else:
        padded = F.pad(flat, (left, right, top, bottom), value=fill)
    shifted = [padded[:, 0, top + dy: top + dy + h, left + dx: left + dx + w] for dy, dx in offsets.tolist()]
    return torch.stack(shifted, dim=1).reshape(lead + (len(offsets), h, w))


def downsample_label(label: np.ndarray, stride: int = 4) -> np.ndarray:
    """Nearest-neighbour label at the network's stride: (H, W) → (ceil(H/s), ceil(W/s)) uint8.

    Output cell k covers input pixels [s·k, s·k + s); it takes the label of pixel s·k + s/2 (the cell's centre,
    rounded down-right as PIL's nearest rescale does). The input is padded with 255 to a multiple of the stride,
    so a partial last cell whose centre falls outside the image is 'unsure'.
    """
    label = np.asarray(label)
    h, w = label.shape
    ph, pw = -h % stride, -w % stride
    if ph or pw:
        label = np.pad(label, ((0, ph), (0, pw)), constant_values=IGNORE_INDEX)
    return np.ascontiguousarray(label[stride // 2::stride, stride // 2::stride]).astype(np.uint8)


def affinity_labels(label: torch.Tensor, radius: int = TRAIN_RADIUS) -> dict[str, torch.Tensor]:
    """Pair labels from an IR label map at stride 4.

    label: (..., h, w) integer, 0 background, 1..K classes, 255 unsure.
    Returns bool tensors (..., D, h, w):
        ``bg_pos``  both ends background;
        ``fg_pos``  both ends the same foreground class;
        ``neg``     the ends have different classes (one may be background);
    pairs touching 255 or leaving the map are in none of them.
    """
    offsets = pair_offsets(radius)
    label = label.to(torch.int16)  # 0..255 fit; a quarter of int64's memory for the (..., D, h, w) maps
    src = label.unsqueeze(-3)  # (..., 1, h, w)
    dst = gather_pairs(label, offsets, fill=IGNORE_INDEX)  # (..., D, h, w)
    valid = (src != IGNORE_INDEX) & (dst != IGNORE_INDEX)
    same = src == dst
    return {"bg_pos": valid & same & (src == 0), "fg_pos": valid & same & (src > 0), "neg": valid & ~same}


def boundary_to_affinity(boundary: torch.Tensor, radius: int = TRAIN_RADIUS,
                         max_elements: int = 1 << 24) -> torch.Tensor:
    """IRN's affinity: ``a_ij = 1 - max boundary probability on the line from i to j``.

    boundary: (B, 1, h, w) or (B, h, w) probabilities in [0, 1]. Returns (B, D, h, w); pairs leaving the map see 0
    boundary outside it (they are never labelled, so it does not matter). The maximum gathers shifted copies of the map
    for all offsets whose lines have the same number of points at once (no padding), in chunks of about
    ``max_elements`` gathered values so memory stays bounded for large batches; the gradient flows to the maximal
    point of each line, as through ``max``.
    """
    if boundary.dim() == 4:
        boundary = boundary[:, 0]
    shifts, groups = _path_table(int(radius))
    stack = gather_pairs(boundary, shifts, fill=0.0)  # (B, U, h, w)
    b, _, h, w = stack.shape
    parts, order = [], []
    # Find, without autograd, which shift holds each line's maximum; then gather just those values with autograd.
    # Same values and gradients as a differentiable max, but the backward scatters (B, D, h, w) values instead of
    # every gathered (B, D, P, h, w) one.
    with torch.no_grad():
        for ids, index in groups:
            index_t = torch.as_tensor(index, device=boundary.device)  # (d, P) shift ids
            chunk = max(1, max_elements // max(b * index.shape[1] * h * w, 1))
            for start in range(0, len(ids), chunk):
                idx = index_t[start:start + chunk]
                gathered = stack[:, idx.reshape(-1)].reshape(b, idx.shape[0], idx.shape[1], h, w)  # (B, d, P, h, w)
                where = gathered.max(dim=2).indices  # (B, d, h, w) position on the line (max: ~3x argmax's speed)
                parts.append(idx[torch.arange(idx.shape[0], device=idx.device)[None, :, None, None], where])
            order.append(ids)
        inverse = torch.as_tensor(np.argsort(np.concatenate(order)), device=boundary.device)
        argmax_shift = torch.cat(parts, dim=1).index_select(1, inverse)  # (B, D, h, w), pair_offsets order
    return 1.0 - torch.gather(stack, 1, argmax_shift)


def pair_losses(boundary_logits: torch.Tensor, displacement: torch.Tensor, label: torch.Tensor,
                radius: int = TRAIN_RADIUS, eps: float = 1e-5) -> dict[str, torch.Tensor]:
    """IRN's training losses on one batch.

    boundary_logits: (B, 1, h, w); displacement: (B, 2, h, w) as (dy, dx) in stride-4 pixels, pointing from each
    pixel to the centroid of its instance; label: (B, h, w) IR label at stride 4 (0 bg, 1..K, 255 unsure).

    Affinity (balanced BCE): ``-log a`` over background-positive and foreground-positive pairs (each averaged on its
    own, then halved together), ``-log(1 - a)`` over negative pairs. Displacement: for same-class foreground pairs the
    centroids must agree, ``D(i) - D(j) = j - i`` (L1); for background pairs ``D(i) - D(j) = 0`` (L1).
    total = (affinity_pos + affinity_neg) / 2 + (displacement_fg + displacement_bg) / 2.

    Returns a dict of scalar tensors: total, pos_bg, pos_fg, neg, dp_fg, dp_bg.
    """
    labels = affinity_labels(label, radius)
    bg_pos, fg_pos, neg = (labels[k].float() for k in ("bg_pos", "fg_pos", "neg"))
    affinity = boundary_to_affinity(torch.sigmoid(boundary_logits), radius)  # (B, D, h, w)
    pos_term = -torch.log(affinity + eps)
    neg_term = -torch.log(1.0 + eps - affinity)
    pos_bg = (pos_term * bg_pos).sum() / (bg_pos.sum() + eps)
    pos_fg = (pos_term * fg_pos).sum() / (fg_pos.sum() + eps)
    neg_loss = (neg_term * neg).sum() / (neg.sum() + eps)

    offsets = pair_offsets(radius)
    target = torch.as_tensor(offsets, dtype=displacement.dtype, device=displacement.device)  # (D, 2)
    target = target.t()[None, :, :, None, None]  # (1, 2, D, 1, 1)
    pair_dp = displacement.unsqueeze(2) - gather_pairs(displacement, offsets, fill=0.0)  # (B, 2, D, h, w)
    dp_fg = ((pair_dp - target).abs() * fg_pos.unsqueeze(1)).sum() / (2 * fg_pos.sum() + eps)
    dp_bg = (pair_dp.abs() * bg_pos.unsqueeze(1)).sum() / (2 * bg_pos.sum() + eps)
    total = (pos_bg / 2 + pos_fg / 2 + neg_loss) / 2 + (dp_fg + dp_bg) / 2
    return {"total": total, "pos_bg": pos_bg, "pos_fg": pos_fg, "neg": neg_loss, "dp_fg": dp_fg, "dp_bg": dp_bg}
