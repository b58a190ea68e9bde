"""DeepLabV3+-style segmentation network: the fully/pseudo-supervised model that turns pseudo masks into maps.

    backbone (frozen BN) ─┬─ stage 1 (stride 4)  ── 1×1 → 48 ch ─────────────────┐
                          └─ stage 4 (stride 16) ── ASPP (1×1, 3 atrous, pooling) ─ ×4 up ┴─ 2 sep. 3×3 ─ 1×1 ─ up ×4

As in DeepLabV3+ (Chen et al., 2018) the ASPP and decoder convolutions are depthwise-separable: on the stride-4
decoder a dense 3×3 conv over 304 channels costs ~10× more than the whole EfficientNet-Lite0 backbone, and the
prediction pass must map 10⁸-pixel scenes on a CPU. The head normalises with GroupNorm instead of BatchNorm: CPU
batches are small, and GroupNorm behaves the same in training and in inference.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from net.backbones import build_backbone
from net.registry import DEFAULT_BACKBONE, SEG_DECODERS

ASPP_RATES = (6, 12, 18)  # atrous rates at output stride 16 (DeepLabV3+)
LOW_LEVEL_CHANNELS = 48
# "deeplab": DeepLabV3+ (ASPP at s16, one skip from s4); "fpn": the same plus a top-down step through the stride-8
# stage (ASPP → ×2 → + s8 lateral → ×2 → + s4 lateral), so building edges see the s8 features too.
DECODERS = SEG_DECODERS


def he_init_convs(module: nn.Module) -> None:
    """He (fan-out, ReLU) initialisation of every convolution in ``module``, biases zero: the heads' fresh layers."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(32, channels), channels)


class SeparableConvNormReLU(nn.Sequential):
    """3×3 depthwise (optionally dilated) → 1×1 pointwise → GroupNorm → ReLU; keeps the spatial size."""

    def __init__(self, in_ch: int, out_ch: int, dilation: int = 1):
        super().__init__(
            nn.Conv2d(in_ch, in_ch, 3, padding=dilation, dilation=dilation, groups=in_ch, bias=False),
            nn.Conv2d(in_ch, out_ch, 1, bias=False),
            _group_norm(out_ch),
            nn.ReLU(inplace=True),
        )


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: a 1×1 branch, one separable branch per rate, and image pooling."""

    def __init__(self, in_ch: int, out_ch: int, rates: tuple[int, ...] = ASPP_RATES):
        super().__init__()
        self.branches = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, bias=False), _group_norm(out_ch), nn.ReLU(inplace=True))]
            + [SeparableConvNormReLU(in_ch, out_ch, dilation=r) for r in rates])
        # no norm on the pooled branch: it is one value per channel, nothing to normalise over
        self.pooling = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_ch, out_ch, 1), nn.ReLU(inplace=True))
        self.project = nn.Sequential(
            nn.Conv2d(out_ch * (len(rates) + 2), out_ch, 1, bias=False), _group_norm(out_ch), nn.ReLU(inplace=True),
            nn.Dropout(0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C_in, h, w) → (B, C_out, h, w)."""
        outs = [branch(x) for branch in self.branches]
        outs.append(self.pooling(x).expand(-1, -1, *x.shape[-2:]))  # (B, C_out, h, w)
        return self.project(torch.cat(outs, dim=1))


class SegNet(nn.Module):
    """Per-pixel classifier over ``num_classes`` classes (background included).

    Input: (B, 3, H, W) float images in [0, 1] (normalised here with the backbone's statistics), any H, W.
    Output: (B, num_classes, H, W) logits.
    """

    def __init__(self, backbone: str = DEFAULT_BACKBONE, num_classes: int = 2, pretrained: str | None = "default",
                 head_channels: int = 256, decoder: str = "deeplab"):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"SegNet needs at least 2 classes (background + 1), got {num_classes}")
        if decoder not in DECODERS:
            raise ValueError(f"unknown segmentation decoder {decoder!r}: choose one of {DECODERS}")
        self.backbone = build_backbone(backbone, pretrained=pretrained, freeze_bn=True)
        low_ch, mid_ch, _, high_ch = self.backbone.channels
        self.aspp = ASPP(high_ch, head_channels)
        self.decoder_kind = decoder
        # fpn: the s8 lateral is added to the upsampled ASPP output, then refined once at s8
        self.mid_level = (nn.Sequential(nn.Conv2d(mid_ch, head_channels, 1, bias=False), _group_norm(head_channels),
                                        nn.ReLU(inplace=True), SeparableConvNormReLU(head_channels, head_channels))
                          if decoder == "fpn" else None)
        self.low_level = nn.Sequential(
            nn.Conv2d(low_ch, LOW_LEVEL_CHANNELS, 1, bias=False), _group_norm(LOW_LEVEL_CHANNELS), nn.ReLU(inplace=True))
        self.decoder = nn.Sequential(
            SeparableConvNormReLU(head_channels + LOW_LEVEL_CHANNELS, head_channels),
            SeparableConvNormReLU(head_channels, head_channels),
            nn.Dropout(0.1))
        self.classifier = nn.Conv2d(head_channels, num_classes, 1)
        self.register_buffer("mean", torch.tensor(self.backbone.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.backbone.std).view(1, 3, 1, 1), persistent=False)
        self.num_classes = num_classes
        self.backbone_name = backbone
        self.config = {"backbone": backbone, "num_classes": num_classes, "head_channels": head_channels,
                       "decoder": decoder}
        for module in self.head_modules():
            he_init_convs(module)
        # The last layer starts small: He init there gives logits of std ~16 and a first-epoch loss of 5+ on a binary
        # problem, which the pretrained backbone then pays for with large, damaging updates.
        nn.init.normal_(self.classifier.weight, std=0.01)

    def head_modules(self) -> list[nn.Module]:
        mid = [self.mid_level] if self.mid_level is not None else []
        return [self.aspp, *mid, self.low_level, self.decoder, self.classifier]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        size = images.shape[-2:]
        feats = self.backbone((images - self.mean) / self.std)
        low, high = feats[0], feats[-1]  # (B, C1, H/4, W/4), (B, C4, H/16, W/16)
        x = self.aspp(high)  # (B, head, H/16, W/16)
        if self.mid_level is not None:
            mid = feats[1]  # (B, C2, H/8, W/8)
            x = F.interpolate(x, size=mid.shape[-2:], mode="bilinear", align_corners=False)
            x = x + self.mid_level[:3](mid)  # (B, head, H/8, W/8)
            x = self.mid_level[3](x)
        x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=False)  # (B, head, H/4, W/4)
        x = self.decoder(torch.cat([x, self.low_level(low)], dim=1))  # (B, head, H/4, W/4)
        logits = self.classifier(x)  # (B, K, H/4, W/4)
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)  # (B, K, H, W)

    def param_groups(self, lr: float) -> list[dict]:
        """Pretrained backbone at ``lr``, the fresh head at 10×lr (frozen BN parameters are left out)."""
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        head = [p for m in self.head_modules() for p in m.parameters()]
        return [{"params": backbone, "lr": lr}, {"params": head, "lr": 10 * lr}]
