"""AffinityNet's math (Ahn & Kwak, CVPR 2018; the random-walk step of SBNet): affinities from a learned embedding.

The network (net/affinity_net.py) maps an image to a feature map f at stride 4. The semantic affinity of pixels i and j
(within ``radius`` on that grid) is

    a_ij = exp(-mean_c |f_i,c - f_j,c|)

— the L1 distance averaged over the C channels, as in AffinityNet's code (``exp(-mean(|ff - ft|))``), so the scale
does not depend on the embedding width; a_ii = 1 and identical features give affinity 1.

Training (:func:`affinity_loss`): pairs within radius 5 labelled by the CRF-refined IR labels
(misc.pair_sampler.affinity_labels: background-positive, foreground-positive, negative, unsure pairs ignored) and the
balanced cross-entropy ``L = L_bg+/4 + L_fg+/4 + L_neg/2`` with ``L± = mean(-log a)`` / ``mean(-log(1 - a))``.

Inference (:func:`affinity_transition_weights`, :func:`affinity_random_walk`): the transition weights a_ij^β
(AffinityNet: β = 8, 2^8 walk steps) as one weight map per half-plane offset — the layout of misc.random_walk — so
``misc.random_walk.propagate`` walks the CAMs with memory linear in the pixels, never a dense HW×HW matrix.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from misc.neighbourhood import search_offsets
from misc.pair_sampler import affinity_labels, pair_offsets
from misc.random_walk import propagate

AFF_RADIUS = 5  # AffinityNet: pairs within 5 pixels of the feature grid (here stride 4), for training and the walk


def _shifted_l1(features: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """mean_c |f[y, x] - f[y + dy, x + dx]| for (B, C, h, w) → (B, h, w); neighbours off the map read 0."""
    return (features - _shift(features, dy, dx)).abs().mean(dim=1)


def feature_affinities(features: torch.Tensor, *, radius: int = AFF_RADIUS) -> torch.Tensor:
    """Affinities of each pixel to its half-plane neighbours, in misc.pair_sampler's pair layout.

    Args:
        features: (B, C, h, w) embedding.
        radius: pairs with ``dy² + dx² < radius²`` (misc.pair_sampler.pair_offsets order).
    Returns:
        (B, D, h, w) ``exp(-mean_c |f_i - f_j|)`` in (0, 1]; pairs leaving the map compare with zeros (they carry no
        label, so the value does not matter). With autograd on, each offset's (B, C, h, w) difference is recomputed
        in the backward pass instead of being stored (memory: the features plus (B, D, h, w), not D × (B, C, h, w)).
    """
    out = []
    for dy, dx in pair_offsets(radius).tolist():
        if features.requires_grad:
            dist = checkpoint(_shifted_l1, features, dy, dx, use_reentrant=False)
        else:
            dist = _shifted_l1(features, dy, dx)
        out.append(torch.exp(-dist))
    return torch.stack(out, dim=1)


def affinity_loss(affinity: torch.Tensor, label: torch.Tensor, *, radius: int = AFF_RADIUS,
                  eps: float = 1e-5) -> dict[str, torch.Tensor]:
    """AffinityNet's balanced cross-entropy over labelled pairs.

    Args:
        affinity: (B, D, h, w) from :func:`feature_affinities` with the same radius.
        label: (B, h, w) IR label at the same stride (0 background, 1..K classes, 255 unsure).
    Returns:
        scalar tensors ``total = pos_bg/4 + pos_fg/4 + neg/2``, ``pos_bg``, ``pos_fg``, ``neg``; a pair kind with no
        pair in the batch contributes 0.
    """
    labels = affinity_labels(label, radius)
    bg_pos, fg_pos, neg = (labels[k].to(affinity.dtype) for k in ("bg_pos", "fg_pos", "neg"))
    if bg_pos.shape != affinity.shape:
        raise ValueError(f"affinity {tuple(affinity.shape)} and pair labels {tuple(bg_pos.shape)} differ "
                         f"(same radius and stride?)")
    pos_term = -torch.log(affinity + eps)
    neg_term = -torch.log(1.0 + eps - affinity)
    pos_bg = (pos_term * bg_pos).sum() / (bg_pos.sum() + eps)
    pos_fg = (pos_term * fg_pos).sum() / (fg_pos.sum() + eps)
    neg_loss = (neg_term * neg).sum() / (neg.sum() + eps)
    total = pos_bg / 4 + pos_fg / 4 + neg_loss / 2
    return {"total": total, "pos_bg": pos_bg, "pos_fg": pos_fg, "neg": neg_loss}


def affinity_transition_weights(features: torch.Tensor, *, beta: float = 8.0, radius: int = AFF_RADIUS
                                ) -> tuple[list[tuple[int, int]], torch.Tensor]:
    """Random-walk weights ``a_ij ** beta`` from an embedding, in misc.random_walk's offset layout.

    Args:
        features: (C, H, W) embedding of one image.
        beta: sharpening exponent (AffinityNet: 8); ``a ** beta = exp(-beta · mean_c |f_i - f_j|)``.
        radius: neighbours with ``dy² + dx² < radius²`` (AffinityNet: 5).
    Returns:
        offsets: the half-plane offsets of misc.neighbourhood.search_offsets(radius).
        weights: (n_offsets, H, W) float32 on ``features.device``; 0 where the neighbour is off the image.
    """
    if features.dim() != 3:
        raise ValueError(f"features must be (C, H, W), got {tuple(features.shape)}")
    height, width = features.shape[-2:]
    offsets = list(search_offsets(radius))
    inside = torch.ones((1, 1, height, width), dtype=torch.float32, device=features.device)
    weights = torch.empty((len(offsets), height, width), dtype=torch.float32, device=features.device)
    feats = features.float()[None]  # (1, C, H, W)
    for o, (dy, dx) in enumerate(offsets):
        valid = _shift(inside, dy, dx)[0, 0]  # 1 where (y + dy, x + dx) is on the image
        weights[o] = torch.exp(-beta * _shifted_l1(feats, dy, dx)[0]) * valid
    return offsets, weights


def affinity_random_walk(cams: torch.Tensor, features: torch.Tensor, *, beta: float = 8.0, exp_times: int = 8,
                         radius: int = AFF_RADIUS) -> torch.Tensor:
    """Walk the CAMs ``2 ** exp_times`` steps over AffinityNet's transition ``D⁻¹ A^β`` (self-loop a_ii = 1).

    Args:
        cams: (k, H, W) float maps on the grid of ``features`` (the stride-4 CAMs of the present classes).
        features: (C, H, W) embedding.
    Returns:
        (k, H, W) float32: each pixel a convex combination of the input (misc.random_walk.propagate).
    """
    if cams.dim() != 3 or cams.shape[-2:] != features.shape[-2:]:
        raise ValueError(f"cams (k, H, W) {tuple(cams.shape)} and features (C, H, W) {tuple(features.shape)} "
                         f"must share H, W")
    if exp_times < 0:
        raise ValueError(f"exp_times must be >= 0, got {exp_times}")
    offsets, weights = affinity_transition_weights(features, beta=beta, radius=radius)
    return propagate(cams.float(), offsets, weights.to(cams.device), 2 ** exp_times)


def affinity_edge_map(features: torch.Tensor, *, radius: int = 2) -> torch.Tensor:
    """A picture of where the embedding changes: ``1 - mean a_ij`` over the on-image neighbours within ``radius``.

    features: (C, H, W). Returns (H, W) float32 in [0, 1) (0 = all neighbours alike), for overlays.
    """
    offsets, weights = affinity_transition_weights(features, beta=1.0, radius=radius)
    height, width = features.shape[-2:]
    inside = torch.ones((1, 1, height, width), dtype=torch.float32, device=features.device)
    total = torch.zeros((height, width), dtype=torch.float32, device=features.device)
    count = torch.zeros_like(total)
    for o, (dy, dx) in enumerate(offsets):
        # the pair seen from both ends: the weight at p and the one stored at p - o
        total += weights[o] + _shift(weights[o][None, None], -dy, -dx)[0, 0]
        count += _shift(inside, dy, dx)[0, 0] + _shift(inside, -dy, -dx)[0, 0]
    return 1.0 - total / count.clamp_min(1.0)


def _shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """(B, C, h, w) → value at (y + dy, x + dx), 0 off the map."""
    h, w = x.shape[-2:]
    pad = max(abs(dy), abs(dx))
    padded = F.pad(x, (pad, pad, pad, pad))
    return padded[..., pad + dy: pad + dy + h, pad + dx: pad + dx + w]
