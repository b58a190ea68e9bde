"""Pixel-adaptive refinement (PAR) of CAMs over local image-colour affinities (AFA, Ru et al., CVPR 2022; ToCo and
CTFA use the same module).

For every pixel i and its 8 neighbours j at each dilation d (so 8·len(dilations) neighbours):

    κ_rgb(i, j) = −( |I_i − I_j| / (σ_i + ε) / w_rgb )²   averaged over the colour channels,
                  σ_i = the standard deviation of the neighbours' colours around i (per channel);
    κ_pos(i, j) = −( p_ij / σ_p / w_rgb )²,  p_ij = d (axis neighbours) or d·√2 (diagonals), σ_p their std;
    a(i, j)     = softmax_j κ_rgb + w_pos · softmax_j κ_pos;

and the CAMs are propagated ``num_iter`` times: cam_i ← Σ_j a(i, j) cam_j / (1 + w_pos) (the division keeps the
CAMs' scale; AFA leaves it out, which only matters to a threshold). Borders replicate. Scores flow between pixels
of similar colour, so an activation that spills over a roof edge onto the street is pulled back to the roof.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

PAR_DILATIONS = (1, 2, 4, 8, 12, 24)
# (dy, dx) of the 8 neighbours of a 3×3 window, without the centre
_NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


def _neighbours(x: torch.Tensor, dilations: tuple[int, ...]) -> torch.Tensor:
    """(C, H, W) → (C, 8·len(dilations), H, W): each pixel's neighbours at every dilation, borders replicated."""
    c, h, w = x.shape
    out = []
    for d in dilations:
        padded = F.pad(x[None], (d, d, d, d), mode="replicate")[0]  # (C, H + 2d, W + 2d)
        for dy, dx in _NEIGHBOURS:
            out.append(padded[:, d + dy * d:d + dy * d + h, d + dx * d:d + dx * d + w])
    return torch.stack(out, dim=1)


def par_affinity(image: torch.Tensor, *, dilations: tuple[int, ...] = PAR_DILATIONS, w_rgb: float = 0.3,
                 w_pos: float = 0.01) -> torch.Tensor:
    """Affinities (N, H, W) of every pixel to its N = 8·len(dilations) neighbours; each pixel's sum is 1.

    image: (3, H, W) float (any scale: the colour term divides by the local standard deviation).
    """
    if image.ndim != 3:
        raise ValueError(f"image must be (C, H, W), got {tuple(image.shape)}")
    if not dilations or min(dilations) < 1:
        raise ValueError(f"dilations must be positive integers, got {dilations}")
    image = image.float()
    near = _neighbours(image, dilations)  # (C, N, H, W)
    diff = (near - image[:, None]).abs()
    std = near.std(dim=1, keepdim=True)  # (C, 1, H, W)
    kappa_rgb = (-(diff / (std + 1e-8) / w_rgb) ** 2).mean(dim=0)  # (N, H, W)
    dist = torch.tensor([d * (math.sqrt(2.0) if dy and dx else 1.0) for d in dilations for dy, dx in _NEIGHBOURS],
                        dtype=image.dtype, device=image.device)  # (N,)
    kappa_pos = -(dist / dist.std() / w_rgb) ** 2  # (N,), the same at every pixel
    aff = kappa_rgb.softmax(dim=0) + w_pos * kappa_pos.softmax(dim=0)[:, None, None]
    return aff / (1.0 + w_pos)


def par_refine(image: torch.Tensor, cams: torch.Tensor, *, num_iter: int = 10,
               dilations: tuple[int, ...] = PAR_DILATIONS, w_rgb: float = 0.3, w_pos: float = 0.01) -> torch.Tensor:
    """Refine CAMs (k, H, W) with ``num_iter`` propagation steps over the affinities of ``image`` (3, H, W).

    Returns (k, H, W) on the CAMs' scale (each step is a convex combination of neighbours, so a constant map stays
    constant and values stay within the input's range).
    """
    if cams.shape[-2:] != image.shape[-2:]:
        raise ValueError(f"CAMs {tuple(cams.shape)} and image {tuple(image.shape)} differ in size")
    if num_iter < 0:
        raise ValueError(f"num_iter must be >= 0, got {num_iter}")
    if cams.shape[0] == 0 or num_iter == 0:
        return cams.clone()
    aff = par_affinity(image, dilations=dilations, w_rgb=w_rgb, w_pos=w_pos)  # (N, H, W)
    out = cams.float()
    for _ in range(num_iter):
        out = (_neighbours(out, dilations) * aff[None]).sum(dim=1)  # (k, H, W)
    return out
