"""net/vit.py: timm key contract and strict loading, position-embedding resampling, token maps for odd sizes (CPU)."""
import math

import pytest
import torch

from net.backbones import BACKBONES, build_backbone
from net.vit import ViTSmall16Backbone, resample_pos_embed


@pytest.fixture(scope="module")
def vit_s():
    torch.manual_seed(0)
    return build_backbone("vit_small_patch16", pretrained=None).eval()


def timm_state_dict(dim: int = 384, depth: int = 12, grid: int = 14, classes: int = 1000, seed: int = 0) -> dict:
    """A state dict laid out as timm's `vit_small_patch16_224` / DeiT-S saves it, written out key by key here (not
    taken from our model), so the test fails if our names or shapes drift from timm's."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=gen) * 0.02

    state = {"cls_token": rand(1, 1, dim), "pos_embed": rand(1, 1 + grid * grid, dim),
             "patch_embed.proj.weight": rand(dim, 3, 16, 16), "patch_embed.proj.bias": rand(dim)}
    for i in range(depth):
        p = f"blocks.{i}."
        state.update({
            p + "norm1.weight": 1 + rand(dim), p + "norm1.bias": rand(dim),
            p + "attn.qkv.weight": rand(3 * dim, dim), p + "attn.qkv.bias": rand(3 * dim),
            p + "attn.proj.weight": rand(dim, dim), p + "attn.proj.bias": rand(dim),
            p + "norm2.weight": 1 + rand(dim), p + "norm2.bias": rand(dim),
            p + "mlp.fc1.weight": rand(4 * dim, dim), p + "mlp.fc1.bias": rand(4 * dim),
            p + "mlp.fc2.weight": rand(dim, 4 * dim), p + "mlp.fc2.bias": rand(dim)})
    state.update({"norm.weight": 1 + rand(dim), "norm.bias": rand(dim),
                  "head.weight": rand(classes, dim), "head.bias": rand(classes)})
    return state


def test_registered_and_keys_are_timms(vit_s):
    assert {"vit_small_patch16", "vit_base_patch16"} <= set(BACKBONES)
    expected = {k for k in timm_state_dict() if not k.startswith("head.")}
    assert set(vit_s.state_dict()) == expected
    for key, value in timm_state_dict().items():
        if not key.startswith("head."):
            assert vit_s.state_dict()[key].shape == value.shape, key


@pytest.mark.parametrize("wrapper", [None, "model", "state_dict"])
def test_strict_load_of_a_timm_file_drops_only_the_head(tmp_path, wrapper):
    state = timm_state_dict()
    path = tmp_path / "deit_small.pth"
    torch.save(state if wrapper is None else {wrapper: state, "epoch": 300}, path)
    model = build_backbone("vit_small_patch16", pretrained=str(path))
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_a_wrong_or_missing_key_is_an_error_naming_it(tmp_path):
    state = timm_state_dict()
    state["blocks.3.attn.qkv_typo.weight"] = state.pop("blocks.3.attn.qkv.weight")
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(RuntimeError, match=r"blocks\.3\.attn\.qkv\.weight.*blocks\.3\.attn\.qkv_typo\.weight"):
        ViTSmall16Backbone(pretrained=str(path))
    torch.save(timm_state_dict(dim=768), path)  # a ViT-B file into a ViT-S
    with pytest.raises(RuntimeError, match=r"pos_embed: file \(1, 197, 768\) vs model \(1, 197, 384\)"):
        ViTSmall16Backbone(pretrained=str(path))


def test_a_384_file_has_its_position_embeddings_resampled(tmp_path):
    state = timm_state_dict(grid=24)
    path = tmp_path / "vit_384.pth"
    torch.save(state, path)
    model = ViTSmall16Backbone(pretrained=str(path))
    assert model.pos_embed.shape == (1, 1 + 14 * 14, 384)
    assert torch.equal(model.pos_embed[:, 0], state["pos_embed"][:, 0])  # the class token's embedding is kept


def test_resample_pos_embed_of_a_linear_ramp_stays_a_ramp():
    # a grid embedding that depends on the row only (value = row) still does after a bicubic 2×2 → 4×4 resize, and
    # still grows down the rows (-0.105, 0.227, 0.773, 1.105 by the cubic kernel, a = -0.75)
    grid = torch.tensor([[0.0, 0.0], [1.0, 1.0]]).reshape(1, 4, 1)
    pos = torch.cat([torch.full((1, 1, 1), 7.0), grid], dim=1)  # (1, 1 + 4, 1)
    out = resample_pos_embed(pos, (4, 4))
    assert out.shape == (1, 17, 1) and out[0, 0, 0] == 7.0
    rows = out[0, 1:, 0].reshape(4, 4)
    assert torch.allclose(rows, rows[:, :1].expand(4, 4))  # constant along each row
    assert torch.allclose(rows[:, 0], torch.tensor([-0.1055, 0.2266, 0.7734, 1.1055]), atol=1e-3)
    assert resample_pos_embed(pos, (2, 2)) is pos


@pytest.mark.parametrize("size", [(64, 64), (65, 67), (33, 50), (16, 112), (17, 17)])
def test_token_maps_and_stage_shapes_for_odd_sizes(vit_s, size):
    h, w = size
    x = torch.randn(2, 3, h, w)
    with torch.no_grad():
        tokens = vit_s.tokens(x)
        feats = vit_s(x)
    grid = (math.ceil(h / 16), math.ceil(w / 16))
    assert tokens.grid == grid and tokens.layers == (2, 5, 8, 11)
    assert all(m.shape == (2, 384, *grid) for m in tokens.maps)
    assert all(c.shape == (2, 384) for c in tokens.cls)
    assert [tuple(f.shape) for f in feats] == [(2, 384, math.ceil(h / s), math.ceil(w / s)) for s in (4, 8, 16, 16)]
    # the stride-16 stages are the token maps themselves, unresampled
    assert torch.equal(feats[2], tokens.maps[2]) and torch.equal(feats[3], tokens.maps[3])


def test_patch_token_map_is_row_major_over_the_image(vit_s):
    # a change in one 16×16 patch of the input changes that token first: compare the first block's map of two
    # images differing only in the patch at row 1, column 2 (attention mixes tokens, so look at the largest change)
    x = torch.zeros(1, 3, 48, 64)
    y = x.clone()
    y[:, :, 16:32, 32:48] = 3.0
    with torch.no_grad():
        a = vit_s.tokens(x, layers=(0,)).maps[0]
        b = vit_s.tokens(y, layers=(0,)).maps[0]
    change = (a - b).norm(dim=1)[0]  # (3, 4)
    assert change.shape == (3, 4)
    assert divmod(int(change.argmax()), 4) == (1, 2)


def test_gradients_reach_the_embeddings_and_intermediate_layers_are_kept():
    torch.manual_seed(0)
    model = build_backbone("vit_small_patch16", pretrained=None).train()
    tokens = model.tokens(torch.randn(1, 3, 32, 48), layers=(4, 11))
    assert tokens.layers == (4, 11) and len(tokens.maps) == 2
    (tokens.maps[-1].pow(2).mean() + tokens.cls[-1].pow(2).mean()).backward()
    for param in (model.cls_token, model.pos_embed, model.patch_embed.proj.weight, model.blocks[0].attn.qkv.weight):
        assert param.grad is not None and param.grad.abs().sum() > 0


def test_output_stride_8_is_refused_and_cuda_follows_the_module():
    with pytest.raises(ValueError, match="output_stride"):
        ViTSmall16Backbone(pretrained=None, output_stride=8)
    if torch.cuda.is_available():
        model = build_backbone("vit_small_patch16", pretrained=None).cuda().eval()
        with torch.no_grad():
            feats = model(torch.randn(1, 3, 40, 40, device="cuda"))
        assert all(f.is_cuda for f in feats)
