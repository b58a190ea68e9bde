"""The segmentation loss shared by the segmenter's trainers (train_seg, train_semi)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from misc.artifacts import IGNORE_INDEX


def seg_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Mean cross-entropy over the non-ignored pixels, and their count.

    logits (B, K, H, W), labels (B, H, W) int64 with 255 = ignore. ``F.cross_entropy(..., ignore_index=255)``
    averages over zero pixels to NaN when a crop is all ignore (e.g. a crop fully in the padding); summing and
    dividing by max(count, 1) gives 0 instead.
    """
    valid = int((labels != IGNORE_INDEX).sum())
    loss = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="sum") / max(valid, 1)
    return loss, valid
