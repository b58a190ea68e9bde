"""Vision Transformer backbones (ViT-S/16, ViT-B/16) with timm's state-dict keys, for CTFA and as plain backbones.

    vit = build_backbone("vit_base_patch16", pretrained="/path/deit_base_patch16_224.pth")
    feats = vit(x)           # the Backbone contract: 4 maps at strides (4, 8, 16, 16), all with vit.embed_dim channels
    tokens = vit.tokens(x)   # ViTTokens: class token and patch-token map of every kept layer (vit.out_indices)

Keys are timm's `VisionTransformer` (and DeiT's, which is the same model): `cls_token`, `pos_embed`,
`patch_embed.proj.{weight,bias}`, `blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}.*`, `norm.*`. A file's
classifier (`head.*`, and the `pre_logits.*` of old ViT-B files) is dropped on load; everything else must match, so
a user's DeiT/ViT `.pth` loads as it is. A file trained at another resolution (e.g. 384²: a 24×24 `pos_embed`) has
its position embeddings resampled to the model's 14×14 grid before the strict load.

Any input size works: the image is zero-padded (after normalisation, i.e. with the mean colour) on the bottom/right
to a multiple of 16, so a (H, W) image gives ceil(H/16) × ceil(W/16) patch tokens, and the position embeddings are
interpolated (bicubic) to that grid.

The Backbone contract (strides 4, 8, 16, 16) comes from the outputs of 4 blocks (`out_indices`, by default 3, 6, 9
and 12 of 12 blocks, as DPT / ViTDet take them): each block's patch tokens as a (B, C, h16, w16) map, the first
upsampled ×4 and the second ×2 (bilinear, no parameters, so the keys stay timm's), the last after the final `norm`.
So CAMNet, SegNet and IRN run on a ViT unchanged. Unlike the CNNs the stages do not chain (stage 2 reads tokens,
not stage 1's upsampled map): `stage_modules()` partitions the parameters (for freezing and learning rates) but
`forward` is not their composition.
"""
from __future__ import annotations

import logging
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from net.backbones import BACKBONES, IMAGENET_MEAN, IMAGENET_STD, Backbone, _read_state_dict

logger = logging.getLogger(__name__)

PATCH_SIZE = 16
PRETRAIN_GRID = 14  # 224 / 16: the position-embedding grid of the usual ImageNet checkpoints


class ViTTokens(NamedTuple):
    """What a ViT forward keeps. ``cls[i]`` (B, C) and ``maps[i]`` (B, C, h, w) are the class token and the patch
    tokens after block ``layers[i]`` (0-based); the last kept layer's are after the final ``norm``. ``grid`` = (h, w)
    = (ceil(H/16), ceil(W/16))."""

    cls: list[torch.Tensor]
    maps: list[torch.Tensor]
    layers: tuple[int, ...]
    grid: tuple[int, int]


class PatchEmbed(nn.Module):
    """16×16 patches → tokens: a stride-16 convolution (timm: `patch_embed.proj`)."""

    def __init__(self, embed_dim: int, patch_size: int = PATCH_SIZE):
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) with H, W multiples of 16 → (B, C, H/16, W/16)."""
        return self.proj(x)


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection (timm: `attn.qkv`, `attn.proj`)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed dim {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # each (B, heads, N, C/heads)
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q kᵀ / sqrt(d)) v, (B, heads, N, C/heads)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    """fc1 → GELU → fc2 (timm: `mlp.fc1`, `mlp.fc2`)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x)). LayerNorm eps 1e-6 as timm's ViT."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def resample_pos_embed(pos_embed: torch.Tensor, grid: tuple[int, int], num_prefix: int = 1) -> torch.Tensor:
    """Position embeddings (1, prefix + g·g, C) of a square grid → (1, prefix + h·w, C) for grid (h, w).

    The prefix (class token) embedding is kept as it is; the grid part is interpolated bicubically, as timm does.
    The input is returned unchanged when it already has the grid.
    """
    prefix, patch = pos_embed[:, :num_prefix], pos_embed[:, num_prefix:]
    side = math.isqrt(patch.shape[1])
    if side * side != patch.shape[1]:
        raise ValueError(f"position embeddings of {patch.shape[1]} patches are not a square grid")
    if (side, side) == tuple(grid):
        return pos_embed
    patch = patch.reshape(1, side, side, -1).permute(0, 3, 1, 2)  # (1, C, g, g)
    patch = F.interpolate(patch.float(), size=tuple(grid), mode="bicubic", align_corners=False).to(pos_embed.dtype)
    return torch.cat([prefix, patch.flatten(2).transpose(1, 2)], dim=1)  # (1, prefix + h·w, C)


def _is_vit_head_key(key: str) -> bool:
    return key.startswith(("head.", "pre_logits."))


class _ViTStage(nn.Module):
    """A view of some of the ViT's modules / parameters (not registered in the ViT: its keys stay timm's)."""

    def __init__(self, modules: dict[str, nn.Module], params: dict[str, nn.Parameter] | None = None):
        super().__init__()
        for name, module in modules.items():
            self.add_module(name, module)
        for name, param in (params or {}).items():
            self.register_parameter(name, param)

    def forward(self, *_):
        raise TypeError("ViT stages partition the parameters; run the backbone itself")


class ViTBackbone(Backbone):
    """Plain ViT (pre-norm blocks, class token, learned position embeddings), patch 16.

    Args:
        pretrained: a timm/DeiT-format weights file (raw state dict, or under "model"/"state_dict"; `head.*` dropped,
            the rest strict), or None / "default" for random init (timm's: truncated normal 0.02 for the linear
            layers and embeddings; a warning for "default": no ViT weights ship with the toolkit).
        freeze_bn: accepted for the Backbone interface (a ViT has LayerNorm only; nothing to freeze).
        output_stride: only 16 (the patch size).
        out_indices: the 0-based blocks whose tokens are kept (4 of them give the Backbone's 4 stages).
    """

    embed_dim: int
    depth: int
    num_heads: int
    mean = IMAGENET_MEAN  # DeiT's (and ToCo/CTFA's) normalisation; timm's augreg ViTs use 0.5, 0.5, 0.5
    std = IMAGENET_STD
    chained_stages = False

    def __init__(self, pretrained: str | None = "default", freeze_bn: bool = True, output_stride: int = 16,
                 out_indices: tuple[int, ...] | None = None):
        super().__init__(freeze_bn=freeze_bn)
        if output_stride != 16:
            raise ValueError(f"output_stride must be 16 for a patch-16 ViT, got {output_stride}")
        self.output_stride = 16
        dim = self.embed_dim
        self.out_indices = tuple(out_indices) if out_indices else tuple(self.depth * i // 4 - 1 for i in (1, 2, 3, 4))
        if len(self.out_indices) != 4 or not all(0 <= i < self.depth for i in self.out_indices) \
                or list(self.out_indices) != sorted(set(self.out_indices)):
            raise ValueError(f"out_indices must be 4 increasing block indices in [0, {self.depth}), "
                             f"got {self.out_indices}")
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + PRETRAIN_GRID * PRETRAIN_GRID, dim))
        self.patch_embed = PatchEmbed(dim)
        self.blocks = nn.ModuleList([Block(dim, self.num_heads) for _ in range(self.depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self._init_weights()

        if pretrained is None or pretrained == "default":
            log = logger.warning if pretrained == "default" else logger.debug
            log("%s: no ImageNet weights given (pretrained=%r), using random init; pass a timm/DeiT .pth path to "
                "start from ImageNet", type(self).__name__, pretrained)
        else:
            self.load_timm_weights(pretrained)

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def load_timm_weights(self, path: str) -> None:
        """Load a timm/DeiT file strictly apart from its head; errors name the file and every mismatching key."""
        state = {k: v for k, v in _read_state_dict(path).items() if not _is_vit_head_key(k)}
        if "pos_embed" in state and state["pos_embed"].shape != self.pos_embed.shape \
                and state["pos_embed"].shape[-1] == self.embed_dim:
            state["pos_embed"] = resample_pos_embed(state["pos_embed"], (PRETRAIN_GRID, PRETRAIN_GRID))
        expected = self.state_dict()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        bad_shape = sorted(f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
                           for k in set(expected) & set(state) if state[k].shape != expected[k].shape)
        if missing or unexpected or bad_shape:
            raise RuntimeError(f"weights file {path} does not match {type(self).__name__}: missing keys {missing}, "
                               f"unexpected keys {unexpected}, shape mismatches {bad_shape}")
        self.load_state_dict(state, strict=True)
        logger.info("loaded %s weights from %s", type(self).__name__, path)

    def stage_modules(self) -> list[nn.Module]:
        """Stage 1 = embeddings + blocks up to out_indices[0], ..., stage 4 = the last blocks + the final norm."""
        ends = [i + 1 for i in self.out_indices]
        ends[-1] = self.depth  # blocks after the last kept one still belong to a stage (they are not run)
        starts = [0] + ends[:-1]
        stages = []
        for s, (start, end) in enumerate(zip(starts, ends)):
            modules = {f"block{i}": self.blocks[i] for i in range(start, end)}
            params = None
            if s == 0:
                modules["patch_embed"] = self.patch_embed
                params = {"cls_token": self.cls_token, "pos_embed": self.pos_embed}
            if s == 3:
                modules["norm"] = self.norm
            stages.append(_ViTStage(modules, params))
        return stages

    def tokens(self, x: torch.Tensor, layers: tuple[int, ...] | None = None) -> ViTTokens:
        """x: (B, 3, H, W) normalised → ViTTokens of the blocks ``layers`` (default ``out_indices``).

        The final ``norm`` is applied to the last requested layer only when it is the last block; intermediate
        tokens are the raw residual stream (their scale grows with depth; consumers normalise or use cosines).
        """
        layers = tuple(sorted(set(layers))) if layers else self.out_indices
        if not all(0 <= i < self.depth for i in layers):
            raise ValueError(f"layers must be in [0, {self.depth}), got {layers}")
        b, _, h, w = x.shape
        grid = (math.ceil(h / PATCH_SIZE), math.ceil(w / PATCH_SIZE))
        pad_h, pad_w = grid[0] * PATCH_SIZE - h, grid[1] * PATCH_SIZE - w
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))  # zero = the mean colour after normalisation
        patches = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, h·w, C)
        seq = torch.cat([self.cls_token.expand(b, -1, -1), patches], dim=1)  # (B, 1 + h·w, C)
        seq = seq + resample_pos_embed(self.pos_embed, grid)
        cls_out, maps = [], []
        for i, block in enumerate(self.blocks[: layers[-1] + 1]):
            seq = block(seq)
            if i in layers:
                out = self.norm(seq) if i == self.depth - 1 else seq
                cls_out.append(out[:, 0])  # (B, C)
                maps.append(out[:, 1:].transpose(1, 2).reshape(b, -1, *grid))  # (B, C, h, w)
        return ViTTokens(cls=cls_out, maps=maps, layers=layers, grid=grid)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: (B, 3, H, W) normalised → 4 maps (B, C, ceil(H/s), ceil(W/s)) at strides (4, 8, 16, 16)."""
        tokens = self.tokens(x, self.out_indices)
        feats = []
        for m, stride in zip(tokens.maps, self.strides):
            if stride != PATCH_SIZE:
                size = (math.ceil(x.shape[-2] / stride), math.ceil(x.shape[-1] / stride))
                m = F.interpolate(m, size=size, mode="bilinear", align_corners=False)
            feats.append(m)
        if self.out_indices[-1] != self.depth - 1:
            feats[-1] = self.norm(feats[-1].permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return feats


class ViTSmall16Backbone(ViTBackbone):
    """ViT-S/16 (DeiT-S): 384 channels, 12 blocks, 6 heads, ~22 M parameters."""

    embed_dim, depth, num_heads = 384, 12, 6
    channels = (384, 384, 384, 384)


class ViTBase16Backbone(ViTBackbone):
    """ViT-B/16 (DeiT-B; ToCo and CTFA's backbone): 768 channels, 12 blocks, 12 heads, ~86 M parameters."""

    embed_dim, depth, num_heads = 768, 12, 12
    channels = (768, 768, 768, 768)


BACKBONES.update({"vit_small_patch16": ViTSmall16Backbone, "vit_base_patch16": ViTBase16Backbone})
