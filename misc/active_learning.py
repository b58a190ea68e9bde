"""Uncertainty scores for active tile selection (ALS4GAN's query strategies) as pure functions.

Two kinds of prediction are scored:

- a **distribution** over K classes (the segmenter's pixel softmax): entropy ``-Σ p log p`` and margin
  ``1 - (p1 - p2)`` (p1, p2 the two largest probabilities);
- K **independent sigmoids** (the CAM classifier's multi-label outputs): each class is a two-outcome distribution
  (p, 1 - p), scored with the binary entropy / margin ``1 - |2p - 1|`` and averaged over the classes.

Entropies are divided by their maximum (log K, or log 2 for a sigmoid), so every score lies in [0, 1] and 1 is the
most uncertain: a uniform distribution (p = 0.5 for a sigmoid) scores 1 with both strategies, a one-hot one 0.
Higher = more uncertain = labelled first.
"""
from __future__ import annotations

import math

import numpy as np
import torch

STRATEGIES = ("entropy", "margin", "random")
_EPS = 1e-12


def normalized_entropy(probs: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Entropy of the distributions along ``dim`` divided by log K: values in [0, 1], ``dim`` removed."""
    num_classes = probs.shape[dim]
    if num_classes < 2:
        raise ValueError(f"a distribution needs at least 2 classes along dim {dim}, got {num_classes}")
    entropy = -(probs * torch.log(probs.clamp_min(_EPS))).sum(dim=dim)
    return entropy / math.log(num_classes)


def margin_uncertainty(probs: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """``1 - (p1 - p2)`` with p1 ≥ p2 the two largest probabilities along ``dim``: values in [0, 1], ``dim`` removed."""
    if probs.shape[dim] < 2:
        raise ValueError(f"margin needs at least 2 classes along dim {dim}, got {probs.shape[dim]}")
    top2 = probs.topk(2, dim=dim).values  # the size-2 axis replaces dim
    return 1.0 - (top2.select(dim, 0) - top2.select(dim, 1))


def binary_uncertainty(probs: torch.Tensor, strategy: str) -> torch.Tensor:
    """Per-class uncertainty of independent sigmoids ``probs`` (any shape): each p is the distribution (p, 1 - p)."""
    pair = torch.stack([probs, 1.0 - probs], dim=0)  # (2, ...)
    if strategy == "entropy":
        return normalized_entropy(pair, dim=0)
    if strategy == "margin":
        return margin_uncertainty(pair, dim=0)
    raise ValueError(f"strategy must be 'entropy' or 'margin', got {strategy!r}")


def sigmoid_tile_score(probs: torch.Tensor, strategy: str) -> torch.Tensor:
    """Tile scores from multi-label classifier probabilities (N, K) → (N,): binary uncertainty averaged over K."""
    if probs.ndim != 2:
        raise ValueError(f"expected (N, K) sigmoid probabilities, got shape {tuple(probs.shape)}")
    return binary_uncertainty(probs, strategy).mean(dim=1)


def softmax_tile_score(probs: torch.Tensor, strategy: str, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Score of one tile from its pixel softmax (K, H, W): the pixel uncertainty averaged over the (valid) pixels.

    ``valid`` (H, W) bool restricts the average (e.g. to pixels inside the image); returns a 0-d tensor.
    """
    if probs.ndim != 3:
        raise ValueError(f"expected (K, H, W) pixel probabilities, got shape {tuple(probs.shape)}")
    if strategy == "entropy":
        pixel = normalized_entropy(probs, dim=0)  # (H, W)
    elif strategy == "margin":
        pixel = margin_uncertainty(probs, dim=0)  # (H, W)
    else:
        raise ValueError(f"strategy must be 'entropy' or 'margin', got {strategy!r}")
    if valid is None:
        return pixel.mean()
    if not valid.any():
        raise ValueError("softmax_tile_score: no valid pixel to average over")
    return pixel[valid].mean()


def num_to_select(num_items: int, ratio: float) -> int:
    """round(ratio × N), at least 1 (a labelled set of zero tiles trains nothing), at most N."""
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"the labelled ratio must be in (0, 1], got {ratio}")
    if num_items < 1:
        raise ValueError("cannot select from an empty pool")
    return min(num_items, max(1, round(ratio * num_items)))


def select_most_uncertain(names: list[str], scores: np.ndarray, ratio: float) -> list[str]:
    """The round(ratio × N) names with the highest scores, most uncertain first (ties keep the pool order)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(names),):
        raise ValueError(f"{len(names)} names but scores of shape {scores.shape}")
    if not np.isfinite(scores).all():
        raise ValueError("uncertainty scores must be finite")
    order = np.argsort(-scores, kind="stable")
    return [names[i] for i in order[:num_to_select(len(names), ratio)]]


def select_random(names: list[str], ratio: float, seed: int) -> list[str]:
    """round(ratio × N) names drawn without replacement; the same seed gives the same names (in pool order)."""
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(names), size=num_to_select(len(names), ratio), replace=False)
    return [names[i] for i in sorted(chosen)]
