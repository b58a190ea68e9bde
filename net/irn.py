"""The inter-pixel relation network (IRN, Ahn et al. CVPR 2019) with a choice of boundary branch.

A frozen backbone (the trained CAM network's, loaded by step/train_irn.py) feeds two trainable branches that both
end at stride 4:

* boundary: a 1-channel logit map; ``sigmoid`` gives the class-boundary probability that IRN turns into pairwise
  affinities (misc/pair_sampler.py) for the random walk.
    - ``plain``: IRN's branch: 1×1 conv + GroupNorm + ReLU on each stage, upsampled to stride 4, concatenated, 1×1
      conv to one channel.
    - ``gated``: the seed's gated-convolution module after GSCNN (Takikawa et al. 2019): a shape stream at stride 4,
      started from stage-1 features and refined by residual blocks, is gated three times by side outputs of stages
      1, 2, 3: ``alpha = sigmoid(conv(concat(stream, side)))``, ``stream = conv1x1(stream * alpha + stream)``. The gates
      let deep, semantic stages decide where the high-resolution stream may keep its edges; the stream is then fused
      with the stages' context features (as GSCNN fuses it with its regular stream) into the boundary logit.
* displacement: (dy, dx) in stride-4 pixels from each pixel to the centroid of its instance (IRN), from all stages
  fused coarse to fine.

Any input size: the normalised image is padded (replicating its edge) on the bottom/right to a multiple of 16, so the
stage maps are exactly H'/4, H'/8, H'/16, H'/16 and upsample onto one grid by whole factors; the outputs are then
cropped to ``ceil(H/4) × ceil(W/4)``, cell (y, x) covering input pixels [4y, 4y + 4) × [4x, 4x + 4).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from net.backbones import BACKBONES, build_backbone
from net.registry import DEFAULT_BACKBONE, IRN_BOUNDARIES

PAD_MULTIPLE = 16  # the backbone's coarsest stride


def _group_norm(channels: int) -> nn.GroupNorm:
    # IRN's groups: 32 ch → 4, 64 → 8, 128/256 → 16
    return nn.GroupNorm(min(16, max(1, channels // 8)), channels)


class ConvGNReLU(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 1):
        super().__init__(nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=False),
                         _group_norm(out_ch), nn.ReLU(inplace=True))


def _upsample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _stage_context(projections: nn.ModuleList, feats: list[torch.Tensor], size) -> list[torch.Tensor]:
    """IRN's per-stage context: each stage map through its projection (1×1 conv + GN + ReLU), upsampled to ``size``."""
    return [_upsample(m(f), size) for m, f in zip(projections, feats)]


class ResidualBlock(nn.Module):
    """Two 3×3 conv + GroupNorm with an identity path (the shape stream's refinement block)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.norm1 = _group_norm(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.norm2 = _group_norm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.norm1(self.conv1(x)))
        return F.relu(x + self.norm2(self.conv2(out)))


class GatedConv2d(nn.Module):
    """GSCNN's gated convolution layer.

    ``alpha = sigmoid(f(concat(stream, side)))`` with f = 1×1 conv, GroupNorm, ReLU, 1×1 conv to one channel;
    output ``conv1x1(stream * alpha + stream)``: the gate can only amplify the stream (by up to 2×), never block it
    entirely, so gradients always reach the stream.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.gate_conv = nn.Sequential(
            nn.Conv2d(channels + 1, channels + 1, 1), nn.GroupNorm(1, channels + 1), nn.ReLU(inplace=True),
            nn.Conv2d(channels + 1, 1, 1))
        self.conv = nn.Conv2d(channels, channels, 1, bias=False)

    def gate(self, stream: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
        """alpha (B, 1, h, w) in [0, 1] from the stream (B, C, h, w) and a side output (B, 1, h, w)."""
        return torch.sigmoid(self.gate_conv(torch.cat([stream, side], dim=1)))

    def forward(self, stream: torch.Tensor, side: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        alpha = self.gate(stream, side)
        return self.conv(stream * alpha + stream), alpha


class GatedBoundary(nn.Module):
    """Shape stream at stride 4: stem (stage 1) → 3 × [residual block, 1×1 channel reduction, gate by the side
    output of stage k]; widths 64 → 32 → 16 → 8 as GSCNN's. As GSCNN fuses its shape stream with the regular
    stream's semantic features before the output, the stream's 8 channels are fused with the stages' context
    features (IRN's 1×1 conv + GN + ReLU to 32 channels per stage, upsampled) by a 1×1 conv to the boundary logit.

    Without that fusion the logit would see the deep stages only through three 1-channel gates: on Dubai such a
    stream learned image edges, not class boundaries (affinity losses flat at ~0.6 over 90 steps, where IRN's plain
    branch fell to ~0.4).
    """

    widths = (64, 32, 16, 8)

    def __init__(self, channels: tuple[int, ...]):
        super().__init__()
        w = self.widths
        self.side = nn.ModuleList([nn.Conv2d(channels[k], 1, 1) for k in range(3)])  # side outputs of stages 1-3
        self.stem = ConvGNReLU(channels[0], w[0])
        self.blocks = nn.ModuleList([ResidualBlock(w[k]) for k in range(3)])
        self.reduce = nn.ModuleList([nn.Conv2d(w[k], w[k + 1], 1) for k in range(3)])
        self.gates = nn.ModuleList([GatedConv2d(w[k + 1]) for k in range(3)])
        self.context = nn.ModuleList([ConvGNReLU(c, 32) for c in channels])
        self.fuse = nn.Conv2d(w[-1] + 32 * len(channels), 1, 1)

    def forward(self, feats: list[torch.Tensor], return_gates: bool = False):
        """feats: the 4 stage maps. Returns logits (B, 1, h4, w4) [and the 3 gates (B, 1, h4, w4)]."""
        size = feats[0].shape[-2:]
        stream = self.stem(feats[0])  # (B, 64, h4, w4)
        gates = []
        for k in range(3):
            side = _upsample(self.side[k](feats[k]), size)  # (B, 1, h4, w4)
            stream = self.reduce[k](self.blocks[k](stream))
            stream, alpha = self.gates[k](stream, side)
            gates.append(alpha)
        logits = self.fuse(torch.cat([stream, *_stage_context(self.context, feats, size)], dim=1))
        return (logits, gates) if return_gates else logits


class PlainBoundary(nn.Module):
    """IRN's boundary branch: per-stage 1×1 conv + GN + ReLU to 32 channels, upsampled, concatenated, 1×1 conv."""

    def __init__(self, channels: tuple[int, ...]):
        super().__init__()
        self.stages = nn.ModuleList([ConvGNReLU(c, 32) for c in channels])
        self.fuse = nn.Conv2d(32 * len(channels), 1, 1)

    def forward(self, feats: list[torch.Tensor], return_gates: bool = False):
        size = feats[0].shape[-2:]
        logits = self.fuse(torch.cat(_stage_context(self.stages, feats, size), dim=1))
        return (logits, []) if return_gates else logits


class DisplacementBranch(nn.Module):
    """IRN's displacement-field branch: stages 3+4 (stride 16) fused and lifted to stride 8 with stage 2, then to
    stride 4 with stage 1; a last 1×1 conv gives (dy, dx)."""

    def __init__(self, channels: tuple[int, ...]):
        super().__init__()
        self.s1 = ConvGNReLU(channels[0], 64)
        self.s2 = ConvGNReLU(channels[1], 128)
        self.s3 = ConvGNReLU(channels[2], 256)
        self.s4 = ConvGNReLU(channels[3], 256)
        self.mid = ConvGNReLU(128 + 256 + 256, 256)
        self.head = nn.Sequential(ConvGNReLU(64 + 256, 256), nn.Conv2d(256, 2, 1))

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        size4, size8 = feats[0].shape[-2:], feats[1].shape[-2:]
        deep = _upsample(torch.cat([self.s3(feats[2]), self.s4(feats[3])], dim=1), size8)  # (B, 512, h8, w8)
        mid = _upsample(self.mid(torch.cat([self.s2(feats[1]), deep], dim=1)), size4)  # (B, 256, h4, w4)
        return self.head(torch.cat([self.s1(feats[0]), mid], dim=1))  # (B, 2, h4, w4)


BOUNDARY_BRANCHES = {"gated": GatedBoundary, "plain": PlainBoundary}
assert tuple(BOUNDARY_BRANCHES) == IRN_BOUNDARIES, "net/registry.py IRN_BOUNDARIES must list BOUNDARY_BRANCHES"


class IRNet(nn.Module):
    """IRN over a frozen backbone. Input: (B, 3, H, W) float images in [0, 1].

    Args:
        backbone: a key of net.backbones.BACKBONES.
        boundary: "gated" (GSCNN-style shape stream, the seed's) or "plain" (IRN's).
        pretrained: backbone weights for build_backbone (None when the CAM network's are loaded afterwards).
    """

    def __init__(self, backbone: str = DEFAULT_BACKBONE, boundary: str = "gated", pretrained: str | None = None,
                 stride: int = 4):
        super().__init__()
        if stride not in (4, 2):
            raise ValueError(f"IRN stride {stride!r}: choose 4 or 2")
        self.stride = int(stride)  # 2: the input is upsampled ×2, so the stride-4 outputs are stride 2 of the image
        if boundary not in BOUNDARY_BRANCHES:
            raise ValueError(f"unknown boundary branch {boundary!r}; choose one of {sorted(BOUNDARY_BRANCHES)}")
        if backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {backbone!r}; choose one of {sorted(BACKBONES)}")
        self.backbone_name = backbone
        self.boundary_kind = boundary
        self.backbone = build_backbone(backbone, pretrained=pretrained, freeze_bn=True)
        for param in self.backbone.parameters():  # IRN trains only its two branches
            param.requires_grad_(False)
        channels = tuple(self.backbone.channels)
        self.boundary_branch = BOUNDARY_BRANCHES[boundary](channels)
        self.displacement_branch = DisplacementBranch(channels)
        self.register_buffer("mean", torch.tensor(self.backbone.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.backbone.std).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> "IRNet":
        super().train(mode)
        self.backbone.eval()  # frozen: never in training mode
        return self

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Stage maps of the edge-padded image (sizes H'/4, H'/8, H'/16, H'/16 with H' = H rounded up to 16).
        No gradient: the backbone is frozen."""
        h, w = images.shape[-2:]
        x = (images - self.mean) / self.std
        pad_h, pad_w = -h % PAD_MULTIPLE, -w % PAD_MULTIPLE
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        with torch.no_grad():
            return [f.detach() for f in self.backbone(x)]

    def forward(self, images: torch.Tensor, return_gates: bool = False):
        """(boundary logits (B, 1, h4, w4), displacement (B, 2, h4, w4)), h4 = ceil(H/s), w4 = ceil(W/s) for the
        model's stride s (4, or 2), displacements in grid cells.
        With return_gates, also the gated branch's 3 gate maps (B, 1, h4, w4) (an empty list for "plain")."""
        h4, w4 = self.grid_size(images)
        if self.stride != 4:
            images = F.interpolate(images, scale_factor=4 // self.stride, mode="bilinear", align_corners=False)
        feats = self.features(images)
        logits, gates = self.boundary_branch(feats, return_gates=True)
        displacement = self.displacement_branch(feats)
        logits, displacement = logits[..., :h4, :w4], displacement[..., :h4, :w4]
        if return_gates:
            return logits, displacement, [g[..., :h4, :w4] for g in gates]
        return logits, displacement

    def grid_size(self, images: torch.Tensor) -> tuple[int, int]:
        """(ceil(H/s), ceil(W/s)): the output grid of ``images`` at the model's stride s."""
        return math.ceil(images.shape[-2] / self.stride), math.ceil(images.shape[-1] / self.stride)

    @staticmethod
    def _pad_to_4(images: torch.Tensor) -> torch.Tensor:
        # flipping an image whose width is not a multiple of 4 would move the stride-4 grid; pad first so the
        # flipped copy's cells cover exactly the original's cells
        pad_h, pad_w = -images.shape[-2] % 4, -images.shape[-1] % 4
        return F.pad(images, (0, pad_w, 0, pad_h), mode="replicate") if (pad_h or pad_w) else images

    def boundary_map(self, images: torch.Tensor) -> torch.Tensor:
        """Boundary probability (B, 1, ceil(H/s), ceil(W/s)) in [0, 1] for the model's stride s, averaged over the
        image and its flip."""
        b = images.shape[0]
        x = self._pad_to_4(images)
        logits, _ = self(torch.cat([x, x.flip(-1)], dim=0))
        prob = torch.sigmoid(logits)
        h, w = self.grid_size(images)
        return ((prob[:b] + prob[b:].flip(-1)) / 2)[..., :h, :w]

    def displacement(self, images: torch.Tensor) -> torch.Tensor:
        """Displacement field (B, 2, ceil(H/4), ceil(W/4)) as (dy, dx) in stride-4 pixels, averaged over the image
        and its horizontal flip (whose dx is negated)."""
        b = images.shape[0]
        x = self._pad_to_4(images)
        _, dp = self(torch.cat([x, x.flip(-1)], dim=0))
        flipped = dp[b:].flip(-1) * torch.tensor([1.0, -1.0], device=dp.device, dtype=dp.dtype).view(1, 2, 1, 1)
        h, w = self.grid_size(images)
        dp = ((dp[:b] + flipped) / 2)[..., :h, :w]
        if self.stride != 4:  # to the stride-4 grid and its units, which the instance pass works in
            factor = 4 // self.stride
            dp = F.avg_pool2d(dp, factor, ceil_mode=True) / factor
        return dp

    def param_groups(self, lr: float | None = None) -> list[dict]:
        """The trainable branches (the backbone is frozen), both at ``lr`` (IRN's recipe) when given."""
        groups = [{"params": [p for p in self.boundary_branch.parameters() if p.requires_grad]},
                  {"params": [p for p in self.displacement_branch.parameters() if p.requires_grad]}]
        if lr is not None:
            for g in groups:
                g["lr"] = lr
        return groups
