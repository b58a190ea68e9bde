"""Predict engines (misc/inference_engine.py): BN folding and ONNX Runtime give the exact engine's logits, and the
FLOP yardstick counts by hand. Tiny random networks, CPU."""
from __future__ import annotations

import importlib.util

import pytest
import torch

from misc.engine import fold_batchnorm
from misc.inference_engine import available_engines, conv_macs, engine_model_fn
from net.seg_net import SegNet


@pytest.fixture(autouse=True)
def one_thread():
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def tiny_seg_net() -> SegNet:
    torch.manual_seed(0)
    model = SegNet("efficientnet_lite0", num_classes=3, pretrained=None, head_channels=16).eval()
    with torch.no_grad():  # non-trivial BN statistics, so that folding has something to fold
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        model.classifier.weight.normal_(std=1.0)
    return model


def test_conv_macs_by_hand():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Conv2d(4, 4, 3, padding=1, groups=4),
                              torch.nn.Conv2d(4, 2, 1, stride=2))
    # 5×5 outputs: 4 ch × 25 px × 27 taps; depthwise 4 × 25 × 9; stride 2 → 3×3 outputs: 2 × 9 × 4
    assert conv_macs(net, torch.zeros(1, 3, 5, 5)) == 4 * 25 * 27 + 4 * 25 * 9 + 2 * 9 * 4


def test_fold_batchnorm_keeps_the_logits():
    model = tiny_seg_net()
    folded = fold_batchnorm(model, torch.rand(1, 3, 32, 32))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    x = torch.rand(2, 3, 48, 64)
    with torch.no_grad():
        want, got = model(x), folded(x)
    assert want.abs().max() > 0.1
    assert (got - want).abs().max() <= 1e-4 * want.abs().max()


@pytest.mark.parametrize("engine", ["fast", pytest.param("onnx", marks=pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None,
    reason="needs onnxruntime and onnx"))])
def test_engines_match_exact(engine):
    model = tiny_seg_net()
    crops = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    with torch.inference_mode():
        want = engine_model_fn(model, "exact")(crops)
        fn = engine_model_fn(model, engine)
        got = fn(crops)
        again = fn(crops[:1])  # another batch size reuses the same (shape-keyed) engine
    assert got.shape == want.shape == (2, 3, 64, 64) and got.dtype == torch.float32
    assert (got - want).abs().max() <= 1e-4 * want.abs().max()
    assert torch.allclose(again, got[:1], rtol=1e-5, atol=1e-5)
    assert engine in available_engines()


def test_unknown_engine_is_an_error():
    with pytest.raises(ValueError, match="predict engine"):
        engine_model_fn(tiny_seg_net(), "turbo")


def test_fold_batchnorm_refuses_a_convolution_read_elsewhere():
    class Shared(torch.nn.Module):  # the conv output feeds its BN and a skip: folding would change the skip
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)
            self.bn = torch.nn.BatchNorm2d(3).eval()
            with torch.no_grad():
                self.bn.running_var.fill_(4.0)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y

    with pytest.raises(RuntimeError, match="feed nothing but"):
        fold_batchnorm(Shared(), torch.rand(1, 3, 8, 8))
