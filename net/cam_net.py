"""The CAM classifier: a backbone, global average pooling and a 1×1 classifier without bias.

Because pooling and a 1×1 convolution commute, ``logits = mean_xy(W · f(x))``: one forward pass gives both the
image-level logits (for the multi-label loss) and the class activation maps ``W · f(x)`` (for CAMs / AdvCAM).

Optionally (``boundary_head=True``, created only when SBNet's boundary loss is switched on, so checkpoints without it
still load) an auxiliary per-class semantic-boundary branch at stride 4 (misc/structure_losses.py).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from net.backbones import build_backbone
from net.registry import DEFAULT_BACKBONE


class SemanticBoundaryHead(nn.Module):
    """SBNet's auxiliary boundary branch: one boundary logit map per class at stride 4.

    Per stage a 1×1 conv + GroupNorm + ReLU to 32 channels, upsampled to the stage-1 grid, concatenated, and a 1×1
    conv to ``num_classes`` logits (IRN's boundary-branch layout, per class as SBNet's). Its loss reaches the shared
    backbone, which is the point: the classifier's features learn where objects end.
    """

    def __init__(self, channels: tuple[int, ...], num_classes: int, width: int = 32):
        super().__init__()
        self.stages = nn.ModuleList([
            nn.Sequential(nn.Conv2d(c, width, 1, bias=False), nn.GroupNorm(4, width), nn.ReLU(inplace=True))
            for c in channels])
        self.fuse = nn.Conv2d(width * len(channels), num_classes, 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """feats: the backbone's 4 stage maps. Returns (B, K, h4, w4) logits on the stage-1 grid."""
        size = feats[0].shape[-2:]
        maps = [m(f) for m, f in zip(self.stages, feats)]
        maps = [x if x.shape[-2:] == size else F.interpolate(x, size=size, mode="bilinear", align_corners=False)
                for x in maps]
        return self.fuse(torch.cat(maps, dim=1))


class CAMNet(nn.Module):
    """Multi-label classifier over ``num_classes`` foreground classes.

    Input: (B, 3, H, W) float images in [0, 1] (normalised here with the backbone's statistics).
    """

    def __init__(self, backbone: str = DEFAULT_BACKBONE, num_classes: int = 1, pretrained: str | None = "default",
                 frozen_stages: int = 1, boundary_head: bool = False, output_stride: int = 16):
        super().__init__()
        # output_stride 8 gives CAMs on a 2x finer grid (buildings are small at 0.5 m/px) for ~2x the compute
        self.backbone = build_backbone(backbone, pretrained=pretrained, freeze_bn=True, output_stride=output_stride)
        # The first stage (generic edges/colours at stride 4) stays at its ImageNet weights, as IRN keeps conv1: it
        # spares the most expensive part of the backward pass and little is learnt there from image-level labels.
        for stage in self.backbone.stage_modules()[:frozen_stages]:
            for param in stage.parameters():
                param.requires_grad_(False)
        self.classifier = nn.Conv2d(self.backbone.channels[-1], num_classes, kernel_size=1, bias=False)
        nn.init.xavier_uniform_(self.classifier.weight)
        self.register_buffer("mean", torch.tensor(self.backbone.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.backbone.std).view(1, 3, 1, 1), persistent=False)
        self.num_classes = num_classes
        self.backbone_name = backbone
        # None (no parameters, no state-dict keys) unless SBNet's boundary loss trains it
        self.boundary_head = SemanticBoundaryHead(self.backbone.channels, num_classes) if boundary_head else None

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The backbone's 4 stage features, strides (4, 8, 16, 16)."""
        return self.backbone((images - self.mean) / self.std)

    def raw_cams(self, images: torch.Tensor) -> torch.Tensor:
        """Class activation maps before ReLU: (B, K, H/16, W/16)."""
        return self.classifier(self.features(images)[-1])

    def forward(self, images: torch.Tensor, with_structure: bool = False):
        """Image-level logits (B, K).

        With ``with_structure`` (SBNet's losses, one backbone pass): (logits (B, K), raw CAMs (B, K, H/16, W/16),
        boundary logits (B, K, H/4, W/4) or None without a boundary head). A keyword of ``forward`` rather than a
        separate method so that DistributedDataParallel sees the call.
        """
        if not with_structure:
            return self.raw_cams(images).mean(dim=(2, 3))
        feats = self.features(images)
        raw = self.classifier(feats[-1])
        boundary = self.boundary_head(feats) if self.boundary_head is not None else None
        return raw.mean(dim=(2, 3)), raw, boundary

    def forward_with_cams(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, K) and ReLU'd CAMs (B, K, H/16, W/16) from a single forward pass."""
        raw = self.raw_cams(images)
        return raw.mean(dim=(2, 3)), torch.relu(raw)

    def param_groups(self, lr: float) -> list[dict]:
        """Pretrained backbone at ``lr``, the fresh classifier (and boundary head) at 10×lr (IRN's recipe)."""
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        fresh = list(self.classifier.parameters())
        if self.boundary_head is not None:
            fresh += list(self.boundary_head.parameters())
        return [{"params": backbone, "lr": lr}, {"params": fresh, "lr": 10 * lr}]
