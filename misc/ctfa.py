"""CTFA's math (Contrastive Tokens and Foreground Activation, TGRS 2024; built on ToCo, CVPR 2023): pure functions.

* Patch-wise contrastive token learning (CTLM, patch-wise): the cosine relation matrix of an intermediate layer's
  patch tokens, which keep more semantic diversity than the over-smoothed last layer, supervises the relation matrix
  of the final tokens (:func:`relation_matrix`, :func:`patch_relation_loss`).
* Class-wise contrastive token learning (CTLM, class-wise): the class token of each local crop is kept consistent
  with the class token of the global view (:func:`class_token_consistency_loss`).
* Pseudo labels from the CAMs of the same network, refined by PAR (misc/par.py) and cut by two background
  thresholds, the band in between ignored (:func:`cams_to_pseudo_labels`), as ToCo does.
* The dual-branch decoder's foreground activation: a semantic branch (background + K classes) and a foreground branch
  (one logit), combined as p(c) ∝ p_sem(c) · p_fg for a class, p_sem(bg) · (1 − p_fg) for background
  (:func:`foreground_activated_log_probs`), trained by :func:`dual_branch_losses`.

They work on any grid of features (B, C, h, w): a ViT's token maps or a CNN's stage maps. Nothing here sees paths,
arguments or a device (tensors bring theirs).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from misc.par import PAR_DILATIONS, par_refine

from misc.artifacts import IGNORE_INDEX


def relation_matrix(feats: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Cosine similarity of every pair of grid cells: (B, C, h, w) → (B, N, N), N = h·w (row-major cells)."""
    tokens = feats.flatten(2).transpose(1, 2)  # (B, N, C)
    tokens = tokens / tokens.norm(dim=-1, keepdim=True).clamp_min(eps)
    return tokens @ tokens.transpose(1, 2)


def patch_relation_loss(final: torch.Tensor, intermediate: torch.Tensor) -> torch.Tensor:
    """CTLM patch-wise: mean |relu(R_final) − relu(R_intermediate)| over all token pairs; the target gets no gradient.

    final, intermediate: (B, C, h, w) and (B, C', h, w), the same grid (channels may differ). Negative cosines are
    clipped to 0 on both sides (a pair that the intermediate layer sees as unrelated only has to be unrelated, not
    opposite). Returns a scalar.
    """
    if final.shape[-2:] != intermediate.shape[-2:] or final.shape[0] != intermediate.shape[0]:
        raise ValueError(f"token grids differ: {tuple(final.shape)} vs {tuple(intermediate.shape)}")
    target = relation_matrix(intermediate.detach()).clamp_min(0)  # (B, N, N)
    return (relation_matrix(final).clamp_min(0) - target).abs().mean()


def class_token_consistency_loss(global_token: torch.Tensor, local_tokens: torch.Tensor) -> torch.Tensor:
    """CTLM class-wise: mean over images and crops of 1 − cos(local, global), the global token as a fixed target.

    global_token: (B, D); local_tokens: (B, V, D), V local crops per image. Returns a scalar in [0, 2].
    """
    if local_tokens.shape[0] != global_token.shape[0] or local_tokens.shape[-1] != global_token.shape[-1]:
        raise ValueError(f"token shapes differ: global {tuple(global_token.shape)}, local {tuple(local_tokens.shape)}")
    cos = F.cosine_similarity(local_tokens, global_token.detach()[:, None], dim=-1)  # (B, V)
    return (1 - cos).mean()


def normalize_present_cams(cams: torch.Tensor, labels: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """ReLU'd CAMs (B, K, H, W) divided by each map's maximum; the maps of absent classes (labels (B, K) = 0) zeroed."""
    cams = torch.relu(cams)
    peak = cams.flatten(2).max(dim=2)[0][..., None, None]  # (B, K, 1, 1)
    return cams / (peak + eps) * (labels > 0.5)[..., None, None].to(cams.dtype)


def cams_to_pseudo_labels(cams: torch.Tensor, labels: torch.Tensor, *, high: float, low: float,
                          background_free: bool = False, images: torch.Tensor | None = None, par_num_iter: int = 0,
                          par_dilations: tuple[int, ...] = PAR_DILATIONS) -> torch.Tensor:
    """Pixel pseudo labels (B, H, W) int64 from CAMs at the image size: 0 background, 1..K classes, 255 ignore.

    Args:
        cams: (B, K, H, W) raw CAMs (ReLU and per-map max normalisation are applied here; absent classes dropped).
        labels: (B, K) multi-hot image-level labels.
        high, low: with a background class, a pixel is class c + 1 where the best present map c is >= ``high``,
            background where it is < ``low``, ignored in between (ToCo's two background thresholds).
        background_free: no background class (every pixel is some present class): the best present class where its
            map is >= ``low``, ignored elsewhere; an image without any present class is all ignore.
        images: (B, 3, H, W) for PAR (any colour scale); with ``par_num_iter`` > 0 the normalised maps are refined
            over the image's colour affinities before the thresholds.
    """
    if low > high:
        raise ValueError(f"background thresholds: low {low} must not exceed high {high}")
    maps = normalize_present_cams(cams.detach().float(), labels)  # (B, K, H, W)
    if par_num_iter > 0:
        if images is None or images.shape[-2:] != maps.shape[-2:]:
            raise ValueError("PAR refinement needs the images at the CAMs' size")
        dil = tuple(int(d) for d in par_dilations)
        maps = torch.stack([par_refine(img.float(), m, num_iter=par_num_iter, dilations=dil)
                            for img, m in zip(images, maps)])
    best, arg = maps.max(dim=1)  # (B, H, W)
    out = arg + 1
    if background_free:
        present = (labels > 0.5).any(dim=1)[:, None, None]  # (B, 1, 1)
        out = torch.where((best >= low) & present, out, torch.full_like(out, IGNORE_INDEX))
        return out
    out = torch.where(best >= high, out, torch.full_like(out, IGNORE_INDEX))
    return torch.where(best < low, torch.zeros_like(out), out)


def foreground_activated_log_probs(semantic_logits: torch.Tensor, foreground_logit: torch.Tensor) -> torch.Tensor:
    """Combine the two branches: log p(c) = log p_sem(c) + log p_fg (c >= 1), log p_sem(0) + log(1 − p_fg) (c = 0),
    renormalised over the classes (FactSeg's collaborative probability).

    semantic_logits: (B, 1 + K, ...); foreground_logit: (B, 1, ...). Returns (B, 1 + K, ...) log-probabilities, i.e.
    logits whose softmax is the combined probability (what eval_seg / predict take the argmax or softmax of).
    """
    sem = F.log_softmax(semantic_logits, dim=1)
    fg = F.logsigmoid(foreground_logit)  # log p_fg
    bg = F.logsigmoid(-foreground_logit)  # log (1 − p_fg)
    joint = sem + torch.cat([bg, fg.expand_as(sem[:, 1:])], dim=1)
    return joint - torch.logsumexp(joint, dim=1, keepdim=True)


def dual_branch_losses(semantic_logits: torch.Tensor, foreground_logit: torch.Tensor,
                       target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(cross-entropy of the combined prediction, binary cross-entropy of the foreground branch) over the labelled
    pixels of ``target`` (B, H, W) int64 (255 ignored); both 0 when no pixel is labelled.

    semantic_logits (B, 1 + K, H, W) and foreground_logit (B, 1, H, W) at the target's size.
    """
    valid = target != IGNORE_INDEX
    count = int(valid.sum())
    if count == 0:
        zero = semantic_logits.sum() * 0 + foreground_logit.sum() * 0  # keeps the graph, so backward still works
        return zero, zero
    log_probs = foreground_activated_log_probs(semantic_logits, foreground_logit)
    seg = F.nll_loss(log_probs, target, ignore_index=IGNORE_INDEX, reduction="sum") / count
    fg_target = (target > 0).float()
    fg = F.binary_cross_entropy_with_logits(foreground_logit[:, 0][valid], fg_target[valid], reduction="mean")
    return seg, fg


def random_local_crops(images: torch.Tensor, num: int, size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """``num`` random square crops of side ``size`` of a batch (B, 3, H, W): one box per crop, shared by the batch.

    The boxes are drawn from ``generator`` (a CPU generator, so the same seed gives the same crops on any device).
    """
    h, w = images.shape[-2:]
    size = min(size, h, w)
    crops = []
    for _ in range(num):
        top = int(torch.randint(0, h - size + 1, (1,), generator=generator))
        left = int(torch.randint(0, w - size + 1, (1,), generator=generator))
        crops.append(images[..., top:top + size, left:left + size])
    return crops
