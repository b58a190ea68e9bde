"""Adversarial CAM climbing with a restricting mask (AdvCAM; Lee et al., CVPR 2021).

A CAM shows only the most discriminative part of an object. AdvCAM perturbs the *image* (never the weights) so that
the target class's score rises, which makes the network's evidence spread over more of the object, and sums the CAMs
of all the perturbed images. One step of the climb, for the present class c:

    J(x)  = (logit_c(x) - sum_{j != c} logit_j(x))            raise c, and only c
            - AD_coeff * || (CAM_c(x) - CAM_c(x_0)) * M ||_1   but keep already-strong regions where they started
    x    <- clamp(x + AD_stepsize * grad J / max|grad J|,  range of x_0)

M marks the regions where the CAM already exceeds ``score_th`` × its maximum: without the restriction those regions
keep growing and swamp the newly found ones after max-normalisation. M is grown with the strong regions of every
iterate (``grow_mask=True``, the union over the iterates seen so far); the AdvCAM reference code instead rebuilds M
from the current iterate alone at each step (``grow_mask=False``). With the seed's two steps both agree at the first
step, where |CAM - CAM_0| = 0 contributes no gradient anyway.

Batching: the image and its horizontal flip, for each of the k present classes, form one batch of 2·k independent
copies (BatchNorm is frozen in eval mode, so the copies never interact). Each copy's CAM is merged with its flipped
twin (``cam + cam_flip.flip(-1)``) before the mask, the restriction and the accumulation, as in the reference, and the
gradient is max-normalised per class over the image/flip pair. With T = ``adv_iter`` a scale costs T + 1 forward
passes and T backward passes: the minimum, since every iterate's CAM (x_0 .. x_T) is accumulated and only x_T needs
no gradient (it runs under ``torch.no_grad``).

Units: the seed's ResNet took ImageNet-normalised input x_n = (x - mean) / std and climbed there. Our networks take
[0, 1] images and normalise inside, so the step is taken in the normalised space and mapped back: with
g_n = dJ/dx_n = std ⊙ dJ/dx, the [0, 1] update is ``AD_stepsize · std ⊙ g_n / max|g_n|`` (per channel; e.g. 0.08 ×
0.5 = 0.04 for EfficientNet-Lite0, 0.08 × ~0.226 ≈ 0.018 for ResNet-50). The clamp keeps every pixel value within
the original image's [min, max] in [0, 1] units (the reference clamps to that range in normalised units, one scalar
range for all channels).

Two engines compute the same climb (tests/test_adv_climb.py compares them):

* ``exact``: autograd through the whole CAM network, as written above (the reference).
* ``fast`` (:func:`climb_network` + ``closed_form=True``): the classifier is a 1×1 convolution W (K, C) over the last
  features f, so the objective's gradient w.r.t. f has a closed form and only the backbone needs a backward pass.
  With raw = W·f (K, h, w), logits = mean_hw(raw), s_j = +1 for j = c and -1 otherwise, and
  r = sign(merged - init) ⊙ M (and its flip for the flipped copy):
      dJ/df = (Σ_j s_j W_j) / (h·w)  -  AD_coeff · W_c ⊗ (r ⊙ [raw_c > 0])              (C, h, w) per copy
  The backbone is :func:`misc.engine.input_gradient_network`'s copy (BN folded into the convolutions, convolutions
  that keep nothing for the backward pass, 1-byte ReLU masks): the same function up to float32 rounding, ~40 % less
  memory, and a little less time. The number of passes is the same minimum.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

ENGINES = ("exact", "fast")


@dataclass
class ClimbStats:
    """Counts filled in by :func:`adversarial_climb` (pass the same object for several calls to sum them).

    forwards / backwards: network passes run (one batched call counts once).
    target_logits: per forward, the target-class logit of each of the 2·k copies, (2k,) detached.
    cams: per forward, the flip-merged CAMs of the present classes (k, h, w), only when ``keep_cams``.
    """

    keep_cams: bool = False
    forwards: int = 0
    backwards: int = 0
    target_logits: list[torch.Tensor] = field(default_factory=list)
    cams: list[torch.Tensor] = field(default_factory=list)
    masks: list[torch.Tensor] = field(default_factory=list)


def minimum_passes(num_scales: int, adv_iter: int, num_present: int) -> tuple[int, int]:
    """(forwards, backwards) an image needs at the least: T + 1 and T per scale, none without a present class."""
    if num_present == 0:
        return 0, 0
    return num_scales * (adv_iter + 1), num_scales * adv_iter


@contextlib.contextmanager
def input_gradients_only(model: nn.Module) -> Iterator[nn.Module]:
    """Switch off ``requires_grad`` of every parameter (gradients are taken w.r.t. the input only), then restore."""
    saved = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in saved:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in saved:
            p.requires_grad_(flag)


def _target_cams(logits: torch.Tensor, cams: torch.Tensor, targets: torch.Tensor, k: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per copy, the target logit (2k,) and the flip-merged CAM of the target class (k, h, w).

    Copies 0..k-1 are the image, k..2k-1 its flip; copy i and copy k + i climb class targets[i].
    """
    rows = torch.arange(2 * k, device=logits.device)
    target_logit = logits[rows, targets]  # (2k,)
    cam = cams[rows, targets]  # (2k, h, w)
    return target_logit, cam[:k] + cam[k:].flip(-1)


def climb_network(model: nn.Module, engine: str = "fast") -> nn.Module:
    """The network the climb runs on: ``model`` itself (``exact``) or its input-gradient copy (``fast``).

    A copy that is already an input-gradient network is returned as it is, so build it once and pass the copy
    around (as make_adv_cam does); the copy shares no tensors with ``model``, so rebuild it after changing weights.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine == "exact" or getattr(model, "is_input_gradient_network", False):
        return model
    from misc.engine import input_gradient_network

    device = next(model.parameters()).device
    fast = input_gradient_network(model, torch.rand(1, 3, 64, 64, device=device))
    fast.is_input_gradient_network = True
    return fast


def objective_feature_gradient(weight: torch.Tensor, feats: torch.Tensor, raw: torch.Tensor, targets: torch.Tensor,
                               restrict: torch.Tensor | None, ad_coeff: float) -> torch.Tensor:
    """dJ/df in closed form for a CAM head ``raw = W · f`` (1×1 convolution without bias), J summed over copies.

    Args:
        weight: (K, C) classifier weight W.
        feats: (B, C, h, w) the features f (only its shape, dtype and memory layout are used).
        raw: (B, K, h, w) W · f, before the ReLU.
        targets: (B,) the class c each copy climbs.
        restrict: (B, h, w) d restrict / d CAM_c per copy (sign(merged - init) ⊙ M, flipped for flipped copies), or
            None when the restriction has no gradient (t = 0).
    Returns:
        (B, C, h, w) float, dJ/df with J = Σ_copies (logit_c - Σ_{j≠c} logit_j) - ad_coeff · restrict.
    """
    batch, _, h, w = feats.shape
    signs = -torch.ones(batch, weight.shape[0], dtype=weight.dtype, device=weight.device)  # (B, K)
    signs[torch.arange(batch, device=weight.device), targets] = 1.0
    uniform = (signs @ weight) / (h * w)  # (B, C): d(Σ_j s_j mean(raw_j)) / df at every pixel
    grad = uniform[:, :, None, None].expand(batch, -1, h, w)
    if restrict is not None:
        rows = torch.arange(batch, device=raw.device)
        passes = raw[rows, targets] > 0  # (B, h, w): ReLU' of the target CAM
        local = torch.where(passes, restrict, torch.zeros_like(restrict))  # (B, h, w)
        grad = grad - ad_coeff * weight[targets][:, :, None, None] * local[:, None]  # (B, C, h, w)
    return grad.contiguous(memory_format=torch.channels_last) if feats.is_contiguous(
        memory_format=torch.channels_last) else grad.contiguous()


def adversarial_climb(model: nn.Module, image: torch.Tensor, keys: torch.Tensor, *, adv_iter: int, ad_coeff: float,
                      ad_stepsize: float, score_th: float, grow_mask: bool = True,
                      stats: ClimbStats | None = None, closed_form: bool = False) -> torch.Tensor:
    """Accumulated CAMs of the present classes over the adversarial iterates of one image at one scale.

    Args:
        model: a CAM network (``net.cam_net.CAMNet``): ``forward_with_cams(x)`` → (logits (B, K), ReLU CAMs
            (B, K, h, w)) for x in [0, 1], and a ``std`` buffer (1, 3, 1, 1) with its input normalisation.
            It should be in eval mode; for speed wrap the call in :func:`input_gradients_only`.
        image: (1, 3, H, W) float in [0, 1], on the model's device.
        keys: (k,) int64, the classes to climb (0-based foreground indices), k >= 1.
        adv_iter: T, the number of climbing steps (0 → the plain CAM of the image and its flip).
        ad_coeff: weight of the restriction term.
        ad_stepsize: step in the backbone's normalised input units (see the module docstring).
        score_th: M takes the regions above ``score_th`` × the CAM's maximum.
        grow_mask: M is the union over the iterates (True) or the current iterate's regions only (False).
        stats: optional counters / traces to fill in.
        closed_form: take dJ/df in closed form (:func:`objective_feature_gradient`) and back-propagate through the
            backbone only; needs ``model.features`` and a bias-free 1×1 ``model.classifier``.

    Returns:
        (k, h, w) float32: Σ_{t=0..T} (CAM_c(x_t) + flip(CAM_c(flip x_t))), before normalisation.
    """
    if keys.numel() == 0:
        raise ValueError("adversarial_climb needs at least one class to climb")
    if adv_iter < 0:
        raise ValueError(f"adv_iter must be >= 0, got {adv_iter}")
    stats = stats if stats is not None else ClimbStats()
    k = int(keys.numel())
    keys = keys.to(image.device)
    targets = torch.cat([keys, keys])  # (2k,): copy i and its flip climb the same class

    if adv_iter == 0:
        # all 2k copies would be identical: one forward of the image and its flip serves every class
        with torch.no_grad():
            logits, cams = model.forward_with_cams(torch.cat([image, image.flip(-1)]))  # (2, K), (2, K, h, w)
        stats.forwards += 1
        copy = torch.arange(2, device=image.device).repeat_interleave(k)  # [0]*k + [1]*k
        logits, cams = logits[copy], cams[copy]
        target_logit, merged = _target_cams(logits, cams, targets, k)
        stats.target_logits.append(target_logit.detach())
        if stats.keep_cams:
            stats.cams.append(merged.detach())
        return merged.float()

    weight = None
    if closed_form:
        head = getattr(model, "classifier", None)
        if not isinstance(head, nn.Conv2d) or head.kernel_size != (1, 1) or head.bias is not None:
            raise ValueError("closed_form needs a CAM head model.classifier = Conv2d(C, K, 1, bias=False)")
        weight = head.weight.detach()[:, :, 0, 0]  # (K, C)
    low, high = image.min(), image.max()  # the climb never leaves the original value range
    std = model.std.to(image.device, image.dtype)  # (1, 3, 1, 1)
    step = ad_stepsize * std
    x = torch.cat([image.expand(k, -1, -1, -1), image.flip(-1).expand(k, -1, -1, -1)]).detach()  # (2k, 3, H, W)
    # the caller may sit in inference mode (make_cam does); the climb needs autograd w.r.t. the input
    with torch.inference_mode(False), torch.enable_grad():
        x = x.clone()
        total = None
        init = None
        mask = None
        for t in range(adv_iter + 1):
            last = t == adv_iter
            if not last:
                x.requires_grad_(True)
            with torch.no_grad() if last else contextlib.nullcontext():
                if closed_form and not last:
                    feats = model.features(x)[-1]  # (2k, C, h, w), with the graph through the backbone
                    with torch.no_grad():
                        raw = F.conv2d(feats, weight[:, :, None, None])  # (2k, K, h, w)
                    logits, cams = raw.mean(dim=(2, 3)), torch.relu(raw)
                else:
                    logits, cams = model.forward_with_cams(x)  # (2k, K), (2k, K, h, w)
            stats.forwards += 1
            target_logit, merged = _target_cams(logits, cams, targets, k)  # (2k,), (k, h, w)
            merged_now = merged.detach()
            total = merged_now.float().clone() if total is None else total + merged_now.float()
            stats.target_logits.append(target_logit.detach())
            if stats.keep_cams:
                stats.cams.append(merged_now)
            if last:
                break

            if init is None:
                init = merged_now
            peak = merged_now.flatten(1).amax(dim=1)[:, None, None]  # (k, 1, 1)
            strong = merged_now > score_th * peak  # (k, h, w); an all-zero CAM marks nothing
            mask = strong if (mask is None or not grow_mask) else (mask | strong)
            if stats.keep_cams:
                stats.masks.append(mask)

            if closed_form:
                # d restrict / d CAM_c: sign(merged - init) ⊙ M for the image copies, flipped back for the flip copies
                # (zero at t = 0, where merged == init)
                local = None if t == 0 else torch.sign(merged_now - init) * mask  # (k, h, w)
                local = None if local is None else torch.cat([local, local.flip(-1)])  # (2k, h, w)
                grad_f = objective_feature_gradient(weight, feats, raw, targets, local, ad_coeff)
                (grad,) = torch.autograd.grad(feats, x, grad_outputs=grad_f)  # (2k, 3, H, W)
                del feats, grad_f
            else:
                # the objective of every copy; summed, since copies are independent in the batch
                climb = 2 * target_logit.sum() - logits.sum()  # Σ_copies logit_c - Σ_{j≠c} logit_j
                restrict = ((merged - init).abs() * mask).sum()
                objective = climb - ad_coeff * restrict
                (grad,) = torch.autograd.grad(objective, x)  # (2k, 3, H, W), w.r.t. the [0, 1] input
            stats.backwards += 1

            grad_n = (grad * std).view(2, k, *grad.shape[1:])  # w.r.t. the normalised input, (2, k, 3, H, W)
            peak_grad = grad_n.abs().amax(dim=(0, 2, 3, 4), keepdim=True)  # per class over the image/flip pair
            direction = torch.where(peak_grad > 0, grad_n / peak_grad.clamp_min(torch.finfo(grad.dtype).tiny),
                                    torch.zeros_like(grad_n)).view_as(grad)
            x = torch.clamp(x.detach() + step * direction, low, high)
    return total
