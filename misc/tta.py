"""Test-time augmentation for the segmenter: the mean of the logits over flips of the input.

Overhead imagery has no 'up', so a flipped tile is as likely as the tile itself; averaging the logits of the image
and its flips (each flipped back) removes some of the network's orientation-dependent errors at the cost of one
forward pass per flip.
"""
from __future__ import annotations

from typing import Callable

import torch

# (flip dims) per view, applied to (B, C, H, W): identity, horizontal, vertical
FLIP_VIEWS: tuple[tuple[int, ...], ...] = ((), (3,), (2,))


def flip_tta(model_fn: Callable[[torch.Tensor], torch.Tensor],
             views: tuple[tuple[int, ...], ...] = FLIP_VIEWS) -> Callable[[torch.Tensor], torch.Tensor]:
    """Wrap ``model_fn`` ((B, 3, h, w) → logits (B, K, h, w)) so that it returns the mean logits over ``views``.

    Each view flips the input along its dims, runs ``model_fn`` and flips the logits back, so the result stays
    aligned with the input. The views are batched into one call: ``len(views) × B`` crops per forward pass.
    """
    if not views:
        raise ValueError("flip_tta needs at least one view")

    def tta_fn(crops: torch.Tensor) -> torch.Tensor:
        batch = crops.shape[0]
        stacked = torch.cat([crops.flip(d) if d else crops for d in views])  # (V·B, 3, h, w)
        logits = model_fn(stacked).float()  # (V·B, K, h, w)
        out = torch.zeros_like(logits[:batch])
        for v, d in enumerate(views):
            chunk = logits[v * batch:(v + 1) * batch]
            out += chunk.flip(d) if d else chunk
        return out / len(views)

    return tta_fn
