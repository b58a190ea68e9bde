"""S4GAN's discriminator: tells ground-truth label maps from the segmenter's predictions, given the image.

    [image (3) ‖ class map (K)] ─ 4 × (conv 4×4 stride 2 → LeakyReLU 0.2 → Dropout2d 0.5) ─ global average pool ─ fc → 1

As in S4GAN (Mittal et al., "Semi-Supervised Semantic Segmentation with High- and Low-level Consistency", 2019;
ALS4GAN's ``s4GAN_discriminator``): channel widths c, 2c, 4c, 8c; the pooled last-stage features double as the
features of the feature-matching loss. The class map is a one-hot ground truth (real) or a softmax (fake).
"""
from __future__ import annotations

import torch
import torch.nn as nn


class S4GANDiscriminator(nn.Module):
    """Input (B, 3 + K, H, W) with H, W ≥ 16; output logits (B,) ("this map is ground truth") and features (B, 8c)."""

    def __init__(self, num_classes: int, base_channels: int = 64, dropout: float = 0.5):
        super().__init__()
        widths = [base_channels * m for m in (1, 2, 4, 8)]
        layers: list[nn.Module] = []
        in_ch = 3 + num_classes
        for out_ch in widths:
            layers += [nn.Conv2d(in_ch, out_ch, kernel_size=4, stride=2, padding=1),
                       nn.LeakyReLU(0.2, inplace=True), nn.Dropout2d(dropout)]
            in_ch = out_ch
        self.convs = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], 1)
        self.num_classes = num_classes
        self.config = {"num_classes": num_classes, "base_channels": base_channels, "dropout": dropout}

    def forward(self, images: torch.Tensor, class_maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, 3, H, W) in [0, 1], class_maps (B, K, H, W) → logits (B,), pooled features (B, 8c)."""
        x = self.convs(torch.cat([images, class_maps], dim=1))  # (B, 8c, H/16, W/16)
        features = self.pool(x).flatten(1)  # (B, 8c)
        return self.fc(features).squeeze(1), features
