"""SBNet's structure-aware supervision of the CAM classifier (Liu et al., IJCNN 2021), without pixel labels.

SBNet adds two terms to the classification loss while the CAM network trains:

* **smoothness** (``smoothness/__init__.py`` of the seed's code): an edge-aware penalty on the first and second
  derivatives of the class maps, switched off across edges,

      L_smooth = s1 · mean_c( ρ(|∂x p_c| · w) + ρ(|∂y p_c| · w) ) + s2 · mean_c( ρ(|Δ p_c| · w) ),
      w = exp(-α · e),   ρ(s) = sqrt(s² + ε²) - ε  (Charbonnier, shifted so that ρ(0) = 0),

  with ``p_c = sigmoid(raw CAM of class c)``, ∂x/∂y the 3×3 Sobel kernels, Δ the 8-neighbour Laplacian kernel,
  α = 10, s1 = 10, s2 = 1 as in the seed, and the mean taken over the classes present in the image. The seed's edge
  map ``e`` is a pre-computed semantic boundary map (``sb_map``); with image-level labels only, ``e`` here is the
  image's own gradient magnitude (:func:`image_edges`, a unit intensity step reads 1), i.e. the edge-aware total
  variation of unsupervised depth/flow: activation may change where the image changes, and must stay flat elsewhere.
* **semantic boundary** (``loss_ct`` of ``train_SB.py``): an auxiliary branch predicts one boundary map per class,
  trained by binary cross-entropy towards ``sb_map × present(c)``. Without an ``sb_map``, the pseudo target of class
  c is the image edge strength restricted to where the current (detached) CAM of c changes
  (:func:`pseudo_boundary_target`): image edges that separate the object from its surroundings, not texture inside
  a roof or across a field far from any object.

Everything works on one grid (the pipeline uses stride 4 of the training crop): the caller resizes the CAMs there.
Pure functions over tensors; the device is the input's.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))
LAPLACIAN = ((-1.0, -1.0, -1.0), (-1.0, 8.0, -1.0), (-1.0, -1.0, -1.0))


def _depthwise3x3(x: torch.Tensor, kernel) -> torch.Tensor:
    """The same 3×3 kernel on every channel of (B, C, h, w); edges replicated, so a constant map gives exactly 0."""
    channels = x.shape[1]
    weight = torch.tensor(kernel, dtype=x.dtype, device=x.device).expand(channels, 1, 3, 3)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), weight, groups=channels)


def sobel(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(d/dx, d/dy) of (B, C, h, w) with the raw 3×3 Sobel kernels (a unit step reads 4 on both sides of it)."""
    gx = _depthwise3x3(x, SOBEL_X)
    gy = _depthwise3x3(x, tuple(zip(*SOBEL_X)))  # the transposed kernel
    return gx, gy


def laplacian(x: torch.Tensor) -> torch.Tensor:
    """8-neighbour Laplacian of (B, C, h, w) (replicated edges)."""
    return _depthwise3x3(x, LAPLACIAN)


def charbonnier(s: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """``sqrt(s² + eps²) - eps``: |s| for large s, smooth at 0, and exactly 0 there.

    Written as ``s² / (sqrt(s² + eps²) + eps)`` (the same value): s = 0 gives 0 exactly, not a rounding residue.
    """
    sq = s * s
    return sq / (torch.sqrt(sq + eps * eps) + eps)


def image_edges(images: torch.Tensor, *, stride: int = 4) -> torch.Tensor:
    """Edge strength of images on the stride-``stride`` grid.

    Args:
        images: (B, 3, H, W) float in [0, 1].
    Returns:
        (B, 1, ceil(H/stride), ceil(W/stride)) float ≥ 0: the Sobel gradient magnitude of the grey image averaged over
        stride×stride cells, divided by 4 so that a unit intensity step between two cells reads 1 (a 0.2-contrast roof
        edge reads 0.2).
    """
    gray = images.mean(dim=1, keepdim=True)  # (B, 1, H, W)
    if stride > 1:
        gray = F.avg_pool2d(gray, stride, ceil_mode=True)  # (B, 1, h, w)
    gx, gy = sobel(gray)
    return torch.sqrt(gx * gx + gy * gy) / 4.0


def _masked_mean(values: torch.Tensor, class_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of (B, K, h, w) over pixels and the (B, K) classes of ``class_mask`` (all when None); 0 if none."""
    if class_mask is None:
        return values.mean()
    mask = class_mask.to(values.dtype)[:, :, None, None]  # (B, K, 1, 1)
    count = mask.sum() * values.shape[-2] * values.shape[-1]
    return (values * mask).sum() / count.clamp_min(1.0)


def smoothness_loss(probs: torch.Tensor, edges: torch.Tensor, class_mask: torch.Tensor | None = None, *,
                    alpha: float = 10.0, first_order_weight: float = 10.0, second_order_weight: float = 1.0,
                    eps: float = 1e-3) -> torch.Tensor:
    """SBNet's edge-aware smoothness of class maps (formula in the module docstring).

    Args:
        probs: (B, K, h, w) class maps in [0, 1] (SBNet: sigmoid of the raw CAMs).
        edges: (B, 1, h, w) edge strength ≥ 0 on the same grid (:func:`image_edges`).
        class_mask: (B, K) 1 for the classes whose maps are smoothed (the present ones); None = all.
        alpha: edge sensitivity of the weight ``exp(-alpha · edge)`` (SBNet: 10).
        first_order_weight, second_order_weight: s1, s2 (SBNet: 10, 1).
    Returns:
        scalar tensor; 0 for constant maps, small where the maps change across strong edges.
    """
    if probs.dim() != 4 or edges.shape != (probs.shape[0], 1) + probs.shape[2:]:
        raise ValueError(f"probs (B, K, h, w) {tuple(probs.shape)} and edges (B, 1, h, w) {tuple(edges.shape)} "
                         f"must share B, h, w")
    weight = torch.exp(-alpha * edges)  # (B, 1, h, w): ~0 on edges, 1 on flat regions
    gx, gy = sobel(probs)
    first = charbonnier(gx.abs() * weight, eps) + charbonnier(gy.abs() * weight, eps)  # (B, K, h, w)
    second = charbonnier(laplacian(probs).abs() * weight, eps)
    return (first_order_weight * _masked_mean(first, class_mask)
            + second_order_weight * _masked_mean(second, class_mask))


def pseudo_boundary_target(cams: torch.Tensor, edges: torch.Tensor, class_mask: torch.Tensor, *,
                           cam_gradient_fraction: float = 0.3, edge_scale: float = 0.25) -> torch.Tensor:
    """Per-class pseudo semantic-boundary targets from the image edges and the current CAMs (no gradient).

    ``target_c = clamp(edge / edge_scale, 0, 1) · clamp(g_c / (cam_gradient_fraction · max g_c), 0, 1) · present_c``
    where ``g_c`` is the Sobel gradient magnitude of the max-normalised CAM of class c: an image edge counts as a
    boundary of class c where that class's activation changes by at least ``cam_gradient_fraction`` of its steepest
    change in the image. Absent classes have no boundary (SBNet's ``sb_map × label``).

    Args:
        cams: (B, K, h, w) non-negative CAMs on the grid of ``edges`` (any scale; normalised here per map).
        edges: (B, 1, h, w) from :func:`image_edges`.
        class_mask: (B, K) 1 where class k is present.
        edge_scale: edge strength that counts as a full boundary (0.25 = a quarter-intensity step).
    Returns:
        (B, K, h, w) float targets in [0, 1], detached.
    """
    with torch.no_grad():
        cams = cams.detach().float().clamp_min(0)
        peak = cams.flatten(2).max(dim=2).values[:, :, None, None]  # (B, K, 1, 1)
        gx, gy = sobel(cams / peak.clamp_min(1e-5))
        grad = torch.sqrt(gx * gx + gy * gy)  # (B, K, h, w)
        grad_peak = grad.flatten(2).max(dim=2).values[:, :, None, None]
        gate = (grad / (cam_gradient_fraction * grad_peak).clamp_min(1e-6)).clamp(0, 1)
        strength = (edges.detach().float() / edge_scale).clamp(0, 1)  # (B, 1, h, w)
        return strength * gate * class_mask.float()[:, :, None, None]


def boundary_loss(boundary_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the per-class boundary logits (B, K, h, w) towards soft targets (B, K, h, w) in [0, 1]
    (SBNet's ``BCELoss(sigmoid(edge), sb_map × label)``, computed from the logits for stability)."""
    if boundary_logits.shape != target.shape:
        raise ValueError(f"boundary logits {tuple(boundary_logits.shape)} and target {tuple(target.shape)} differ")
    return F.binary_cross_entropy_with_logits(boundary_logits, target.to(boundary_logits.dtype))
