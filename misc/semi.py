"""Semi-supervised segmentation math: confident pseudo labels, the S4GAN discriminator gate, feature matching, EMA.

Label maps use 255 (``IGNORE_INDEX``) for pixels that carry no label; every function keeps that convention so the
pseudo labels go straight into the same masked cross-entropy as the ground truth.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from misc.artifacts import IGNORE_INDEX


def confident_pseudo_labels(probs: torch.Tensor, threshold: float,
                            valid: torch.Tensor | None = None, class_portion: float = 0.0) -> torch.Tensor:
    """Argmax pseudo labels of the pixels whose top probability reaches their class's threshold; the others are 255.

    probs: (B, K, H, W) class probabilities; valid: optional (B, H, W) bool (False = padding, also 255).
    class_portion: 0 → one global ``threshold``. p in (0, 1] → class-balanced selection (CBST, Zou et al. 2018):
    class c's threshold is ``min(threshold, the (1 - p) quantile of the confidences of the batch's valid pixels
    predicted c)``, so at least the most confident fraction p of every predicted class is kept. A rare class (a few
    buildings among desert) is then never dropped wholesale because its pixels are less confident than the
    background's, the confirmation bias that makes a global threshold drift towards the majority class.
    Returns (B, H, W) int64.
    """
    if not 0.0 <= class_portion <= 1.0:
        raise ValueError(f"class_portion must lie in [0, 1], got {class_portion}")
    confidence, labels = probs.max(dim=1)  # (B, H, W) each
    thresholds = torch.full_like(confidence, float(threshold))
    if class_portion > 0:
        usable = valid if valid is not None else torch.ones_like(labels, dtype=torch.bool)
        for c in labels[usable].unique().tolist():
            members = usable & (labels == c)
            quantile = torch.quantile(confidence[members].float(), 1.0 - class_portion).to(confidence.dtype)
            thresholds[members] = torch.clamp(quantile, max=float(threshold))  # other pixels of c are ignored
    ignore = confidence < thresholds
    if valid is not None:
        ignore |= ~valid
    return labels.masked_fill(ignore, IGNORE_INDEX)


def discriminator_gate(confidence: torch.Tensor, threshold: float) -> torch.Tensor:
    """S4GAN's tile selection: (B,) discriminator probabilities "this map is ground truth" → (B,) bool, > threshold."""
    return confidence > threshold


def gated_pseudo_labels(probs: torch.Tensor, confidence: torch.Tensor, threshold: float,
                        valid: torch.Tensor | None = None) -> torch.Tensor:
    """S4GAN pseudo labels: the whole argmax map of a tile the discriminator accepts, all 255 for a rejected tile.

    probs: (B, K, H, W); confidence: (B,) in [0, 1]; valid: optional (B, H, W) bool. Returns (B, H, W) int64.
    """
    labels = probs.argmax(dim=1)  # (B, H, W)
    rejected = ~discriminator_gate(confidence, threshold)  # (B,)
    ignore = rejected[:, None, None].expand_as(labels)
    if valid is not None:
        ignore = ignore | ~valid
    return labels.masked_fill(ignore, IGNORE_INDEX)


def one_hot_labels(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, H, W) int64 labels → (B, K, H, W) float one-hot; ignored pixels (255) are all-zero columns."""
    valid = labels != IGNORE_INDEX
    one_hot = F.one_hot(labels.masked_fill(~valid, 0), num_classes)  # (B, H, W, K)
    return (one_hot * valid[..., None]).permute(0, 3, 1, 2).float()


def feature_matching_loss(real_features: torch.Tensor, fake_features: torch.Tensor) -> torch.Tensor:
    """S4GAN's feature matching: mean |E_batch[f(real)] - E_batch[f(fake)]| over the (B, C) discriminator features."""
    return (real_features.mean(dim=0) - fake_features.mean(dim=0)).abs().mean()


def ema_decay_at(step: int, decay: float) -> float:
    """Mean teacher's ramp: ``min(decay, 1 - 1 / (step + 1))`` at the ``step``-th update since the teacher started.

    Step 0 copies the student, step 1 averages the two, ...: an early teacher is not stuck near the untrained
    network while a fixed decay of 0.99 would still be ~1/e of it after 100 steps.
    """
    return min(decay, 1.0 - 1.0 / (max(step, 0) + 1))


@torch.no_grad()
def ema_update(teacher: torch.nn.Module, student: torch.nn.Module, decay: float) -> None:
    """teacher ← decay · teacher + (1 − decay) · student for floating parameters and buffers (decay 0 = copy)."""
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
    student_state = student.state_dict()
    for key, value in teacher.state_dict().items():
        source = student_state[key]
        if value.dtype.is_floating_point:
            value.mul_(decay).add_(source.detach(), alpha=1.0 - decay)
        else:
            value.copy_(source)


def set_requires_grad(module: torch.nn.Module, flag: bool) -> None:
    """Freeze (False) or unfreeze (True) every parameter of ``module``."""
    for param in module.parameters():
        param.requires_grad_(flag)
