"""The CAM classifier: a backbone, global average pooling and a 1×1 classifier without bias.

Because pooling and a 1×1 convolution commute, ``logits = mean_xy(W · f(x))``: one forward pass gives both the
image-level logits (for the multi-label loss) and the class activation maps ``W · f(x)`` (for CAMs / AdvCAM).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from net.backbones import build_backbone


class CAMNet(nn.Module):
    """Multi-label classifier over ``num_classes`` foreground classes.

    Input: (B, 3, H, W) float images in [0, 1] (normalised here with the backbone's statistics).
    """

    def __init__(self, backbone: str = "efficientnet_lite0", num_classes: int = 1, pretrained: str | None = "default",
                 frozen_stages: int = 1):
        super().__init__()
        self.backbone = build_backbone(backbone, pretrained=pretrained, freeze_bn=True)
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

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The backbone's 4 stage features, strides (4, 8, 16, 16)."""
        return self.backbone((images - self.mean) / self.std)

    def raw_cams(self, images: torch.Tensor) -> torch.Tensor:
        """Class activation maps before ReLU: (B, K, H/16, W/16)."""
        return self.classifier(self.features(images)[-1])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Image-level logits (B, K)."""
        return self.raw_cams(images).mean(dim=(2, 3))

    def forward_with_cams(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, K) and ReLU'd CAMs (B, K, H/16, W/16) from a single forward pass."""
        raw = self.raw_cams(images)
        return raw.mean(dim=(2, 3)), torch.relu(raw)

    def param_groups(self, lr: float) -> list[dict]:
        """Pretrained backbone at ``lr``, the fresh classifier at 10×lr (IRN's recipe)."""
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        return [{"params": backbone, "lr": lr}, {"params": list(self.classifier.parameters()), "lr": 10 * lr}]
