"""CTFA's single-stage network: classifier (CAMs), dual-branch segmentation decoder and class-token projector on one
backbone (step/train_ctfa.py trains it; misc/ctfa.py holds the losses).

    images ─ backbone ─┬─ intermediate map (B, C, h, w) ───────────────── relation target (CTLM patch-wise)
                       ├─ final map (B, C, h, w) ─┬─ 1×1 classifier → CAMs (B, K, h, w); GMP → logits (B, K)
                       │                          └─ dual-branch decoder → semantic (B, 1 + K, h, w), foreground (B, 1, h, w)
                       └─ class token (B, C) ─ projector → (B, D)                       (CTLM class-wise)

On a ViT (net/vit.py) the maps are the patch tokens of block ``aux_layer`` and of the last block, and the class token
is the last block's. On a CNN backbone the same terms use stage 3 and stage 4 (both at stride 16) and the global
average of stage 4 as the "class token": the relation and consistency losses apply to any grid of features.

:class:`CTFASegmenter` is the deployable half (backbone + decoder): its state-dict keys are the CTFANet's own
(``backbone.*``, ``decoder.*``), and ``net.zoo`` builds it (kind "seg") for a checkpoint whose config says
``decoder: "ctfa"``, so eval_seg and predict run it like a SegNet.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from misc.ctfa import foreground_activated_log_probs
from net.backbones import build_backbone
from net.seg_net import he_init_convs
from net.vit import ViTBackbone


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(32, channels), channels)


def _conv_gn_relu(in_ch: int, out_ch: int, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=dilation, dilation=dilation, bias=False),
                         _group_norm(out_ch), nn.ReLU(inplace=True))


class DualBranchDecoder(nn.Module):
    """A shared 3×3 conv, then a semantic branch (1 + K logits) and a foreground branch (1 logit), each a dilated
    3×3 conv and a 1×1 classifier. The foreground branch activates the semantic features: they are scaled by
    (1 + p_fg) before the semantic classifier, and the two outputs are combined as a product of probabilities
    (misc.ctfa.foreground_activated_log_probs), so a pixel is a class only where the foreground branch agrees."""

    def __init__(self, in_ch: int, num_classes: int, width: int = 256, dilation: int = 2):
        super().__init__()
        self.shared = _conv_gn_relu(in_ch, width)
        self.semantic = _conv_gn_relu(width, width, dilation)
        self.foreground = _conv_gn_relu(width, width, dilation)
        self.semantic_classifier = nn.Conv2d(width, num_classes, 1)
        self.foreground_classifier = nn.Conv2d(width, 1, 1)
        he_init_convs(self)
        # small last layers: the first pseudo labels are noisy, large initial logits would only amplify them
        nn.init.normal_(self.semantic_classifier.weight, std=0.01)
        nn.init.normal_(self.foreground_classifier.weight, std=0.01)

    def forward(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """feats (B, C, h, w) → (semantic logits (B, 1 + K, h, w), foreground logit (B, 1, h, w))."""
        x = self.shared(feats)
        fg = self.foreground_classifier(self.foreground(x))  # (B, 1, h, w)
        sem = self.semantic(x) * (1 + torch.sigmoid(fg))  # foreground-activated features
        return self.semantic_classifier(sem), fg


class _Encoded(NamedTuple):
    final: torch.Tensor  # (B, C, h, w)
    intermediate: torch.Tensor  # (B, C', h, w)
    token: torch.Tensor  # (B, C)


class CTFAOutputs(NamedTuple):
    """One training forward: logits (B, K), raw CAMs (B, K, h, w), the two token maps, the projected class token
    (B, D), semantic (B, 1 + K, h, w) and foreground (B, 1, h, w) decoder logits at the feature grid."""

    logits: torch.Tensor
    cams: torch.Tensor
    final: torch.Tensor
    intermediate: torch.Tensor
    embedding: torch.Tensor
    semantic: torch.Tensor
    foreground: torch.Tensor


def resolve_aux_layer(backbone: nn.Module, aux_layer: int | None) -> int | None:
    """The ViT block whose tokens give the relation target (default: 3/4 of the depth, block 9 of 12 as ToCo's
    auxiliary layer); None for a CNN (stage 3 is used)."""
    if not isinstance(backbone, ViTBackbone):
        return None
    last = backbone.depth - 1
    aux = backbone.depth * 3 // 4 - 1 if aux_layer is None or aux_layer < 0 else int(aux_layer)
    if not 0 <= aux < last:
        raise ValueError(f"aux_layer must be a block before the last one (0..{last - 1}), got {aux}")
    return aux


class CTFANet(nn.Module):
    """The CTFA training network over ``num_classes`` foreground classes; input (B, 3, H, W) in [0, 1], any size.

    ``forward(images)`` gives the image-level logits (B, K) (global max pooling of the final map, then the 1×1
    classifier, as ToCo); ``forward(images, with_ctfa=True)`` the :class:`CTFAOutputs` of one pass, ``forward(crop, embed_only=True)`` a local
    crop's projected class token (B, D) (keywords of forward, so DistributedDataParallel sees the calls);
    ``forward_with_cams`` the make_cam interface.
    """

    def __init__(self, backbone: str = "vit_base_patch16", num_classes: int = 1, pretrained: str | None = "default",
                 aux_layer: int | None = None, head_channels: int = 256, embed_dim: int = 256):
        super().__init__()
        self.backbone = build_backbone(backbone, pretrained=pretrained, freeze_bn=True)
        channels = self.backbone.channels[-1]
        self.aux_layer = resolve_aux_layer(self.backbone, aux_layer)
        self.classifier = nn.Conv2d(channels, num_classes, 1, bias=False)
        nn.init.xavier_uniform_(self.classifier.weight)
        self.decoder = DualBranchDecoder(channels, num_classes + 1, width=head_channels)
        self.projector = nn.Sequential(nn.Linear(channels, channels), nn.GELU(), nn.Linear(channels, embed_dim))
        self.register_buffer("mean", torch.tensor(self.backbone.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.backbone.std).view(1, 3, 1, 1), persistent=False)
        self.num_classes = num_classes
        self.config = {"backbone": backbone, "num_classes": num_classes + 1, "head_channels": head_channels,
                       "decoder": "ctfa", "aux_layer": self.aux_layer, "embed_dim": embed_dim}

    def encode(self, images: torch.Tensor) -> _Encoded:
        """images (B, 3, H, W) in [0, 1] → final map, intermediate map, class token."""
        x = (images - self.mean) / self.std
        if self.aux_layer is not None:  # a ViT
            tokens = self.backbone.tokens(x, layers=(self.aux_layer, self.backbone.depth - 1))
            return _Encoded(tokens.maps[1], tokens.maps[0], tokens.cls[1])
        feats = self.backbone(x)
        return _Encoded(feats[-1], feats[-2], feats[-1].mean(dim=(2, 3)))

    def forward(self, images: torch.Tensor, with_ctfa: bool = False, embed_only: bool = False):
        encoded = self.encode(images)
        if embed_only:  # a local crop: only its projected class token (B, D) is needed
            return self.projector(encoded.token)
        logits = self.classifier(F.adaptive_max_pool2d(encoded.final, 1)).flatten(1)  # (B, K)
        if not with_ctfa:
            return logits
        semantic, foreground = self.decoder(encoded.final)
        return CTFAOutputs(logits, self.classifier(encoded.final), encoded.final, encoded.intermediate,
                           self.projector(encoded.token), semantic, foreground)

    def forward_with_cams(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, K) and ReLU'd CAMs (B, K, h16, w16) from one pass (what step/make_cam.py calls)."""
        final = self.encode(images).final
        return self.classifier(F.adaptive_max_pool2d(final, 1)).flatten(1), torch.relu(self.classifier(final))

    def segmenter_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights of the :class:`CTFASegmenter` half (same key names)."""
        return {k: v for k, v in self.state_dict().items() if k.startswith(("backbone.", "decoder."))}

    def param_groups(self, lr: float) -> list[dict]:
        """The backbone at ``lr``, the fresh classifier, decoder and projector at 10×lr (ToCo's recipe)."""
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        fresh = [p for m in (self.classifier, self.decoder, self.projector) for p in m.parameters()]
        return [{"params": backbone, "lr": lr}, {"params": fresh, "lr": 10 * lr}]


class CTFASegmenter(nn.Module):
    """Backbone + dual-branch decoder of a trained CTFANet: (B, 3, H, W) in [0, 1] → (B, 1 + K, H, W) logits (the
    foreground-activated log-probabilities, upsampled bilinearly)."""

    def __init__(self, backbone: str, num_classes: int, pretrained: str | None = None, head_channels: int = 256):
        super().__init__()
        self.backbone = build_backbone(backbone, pretrained=pretrained, freeze_bn=True)
        self.decoder = DualBranchDecoder(self.backbone.channels[-1], num_classes, width=head_channels)
        self.register_buffer("mean", torch.tensor(self.backbone.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.backbone.std).view(1, 3, 1, 1), persistent=False)
        self.num_classes = num_classes
        self.config = {"backbone": backbone, "num_classes": num_classes, "head_channels": head_channels,
                       "decoder": "ctfa"}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images - self.mean) / self.std
        if isinstance(self.backbone, ViTBackbone):
            final = self.backbone.tokens(x, layers=(self.backbone.depth - 1,)).maps[0]
        else:
            final = self.backbone(x)[-1]
        semantic, foreground = self.decoder(final)
        out = foreground_activated_log_probs(semantic, foreground)  # (B, 1 + K, h, w)
        return F.interpolate(out, size=images.shape[-2:], mode="bilinear", align_corners=False)


def ctfa_from_checkpoint(ckpt: dict) -> CTFANet:
    """Rebuild a CTFANet (random weights) from the config stored in a kind="ctfa" checkpoint."""
    config = ckpt.get("model_config") or {}
    if not config:
        raise ValueError("CTFA checkpoint without 'model_config'")
    return CTFANet(backbone=config["backbone"], num_classes=int(config["num_classes"]) - 1, pretrained=None,
                   aux_layer=config.get("aux_layer"), head_channels=int(config.get("head_channels", 256)),
                   embed_dim=int(config.get("embed_dim", 256)))
