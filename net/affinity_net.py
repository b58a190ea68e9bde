"""AffinityNet (Ahn & Kwak, CVPR 2018): a feature embedding whose L1 distances give inter-pixel semantic affinities.

A backbone (the trained CAM network's, loaded by step/train_aff.py, and frozen as IRN's is) feeds an embedding head
at stride 4: each of the 4 stages is reduced by a 1×1 conv + GroupNorm + ReLU (32, 64, 128, 256 channels, the deeper
the wider, as AffinityNet's 64/128/256 from its last three stages), upsampled to the stage-1 grid and concatenated;
a 1×1 conv + GroupNorm + ReLU and a last 1×1 conv give the ``embed_dim``-channel embedding. The affinity of two pixels
is ``exp(-mean_c |f_i - f_j|)`` (misc/affinity.py).

The backbone is frozen (unlike AffinityNet, which fine-tunes its ResNet-38) for the reasons IRN freezes it: the IR
labels of a few hundred patches are noisy, and a CPU run then needs no backward pass through the backbone. Any input
size: the image is padded (edge replicated) to a multiple of 16 and the embedding cropped to ceil(H/4) × ceil(W/4),
cell (y, x) covering input pixels [4y, 4y + 4) × [4x, 4x + 4), the grid of the stride-4 CAMs.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from net.backbones import BACKBONES, build_backbone
from net.registry import DEFAULT_BACKBONE
from net.irn import PAD_MULTIPLE, ConvGNReLU

STAGE_WIDTHS = (32, 64, 128, 256)


class AffinityNet(nn.Module):
    """Embedding network over a frozen backbone. Input: (B, 3, H, W) float images in [0, 1].

    Args:
        backbone: a key of net.backbones.BACKBONES.
        pretrained: backbone weights for build_backbone (None when the CAM network's are loaded afterwards).
        embed_dim: channels of the embedding.
    """

    def __init__(self, backbone: str = DEFAULT_BACKBONE, pretrained: str | None = None, embed_dim: int = 128):
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {backbone!r}; choose one of {sorted(BACKBONES)}")
        self.backbone_name = backbone
        self.embed_dim = int(embed_dim)
        self.backbone = build_backbone(backbone, pretrained=pretrained, freeze_bn=True)
        for param in self.backbone.parameters():
            param.requires_grad_(False)
        channels = tuple(self.backbone.channels)
        self.stages = nn.ModuleList([ConvGNReLU(c, w) for c, w in zip(channels, STAGE_WIDTHS)])
        self.fuse = ConvGNReLU(sum(STAGE_WIDTHS), 256)
        self.embed = nn.Conv2d(256, self.embed_dim, 1)
        self.register_buffer("mean", torch.tensor(self.backbone.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.backbone.std).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> "AffinityNet":
        super().train(mode)
        self.backbone.eval()  # frozen: never in training mode
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Embedding (B, embed_dim, ceil(H/4), ceil(W/4))."""
        h, w = images.shape[-2:]
        h4, w4 = math.ceil(h / 4), math.ceil(w / 4)
        x = (images - self.mean) / self.std
        pad_h, pad_w = -h % PAD_MULTIPLE, -w % PAD_MULTIPLE
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        with torch.no_grad():
            feats = [f.detach() for f in self.backbone(x)]
        size = feats[0].shape[-2:]
        maps = []
        for module, feat in zip(self.stages, feats):
            m = module(feat)
            maps.append(m if m.shape[-2:] == size else F.interpolate(m, size=size, mode="bilinear",
                                                                     align_corners=False))
        out = self.embed(self.fuse(torch.cat(maps, dim=1)))  # (B, embed_dim, H'/4, W'/4)
        return out[..., :h4, :w4]

    def param_groups(self, lr: float | None = None) -> list[dict]:
        """The trainable head (the backbone is frozen), at ``lr`` when given."""
        group = {"params": [p for p in self.parameters() if p.requires_grad]}
        if lr is not None:
            group["lr"] = lr
        return [group]
