"""Flip test-time augmentation of the segmenter, and the FPN decoder's shapes."""
import torch

from misc.tta import flip_tta
from net.seg_net import SegNet
from net.zoo import build_model, checkpoint_spec, describe


def test_flip_tta_by_hand():
    x = torch.arange(2 * 3 * 2 * 4, dtype=torch.float32).view(2, 3, 2, 4)
    ramp = torch.tensor([1.0, 2.0, 3.0, 4.0])  # a weight per column: not flip-invariant left-right
    calls = []

    def model_fn(crops):
        calls.append(crops.shape[0])
        return crops * ramp

    out = flip_tta(model_fn)(x)
    # identity: x·w; horizontal flip and back: x·flip(w); vertical flip and back: x·w  →  x·(2w + flip(w)) / 3
    assert torch.allclose(out, x * (2 * ramp + ramp.flip(0)) / 3)
    assert calls == [6]  # the three views of the two crops in one batch
    assert torch.allclose(flip_tta(lambda c: c * 2)(x), x * 2)  # a flip-equivariant model is unchanged


def test_fpn_decoder_shapes_and_rebuild():
    torch.manual_seed(0)
    model = SegNet("efficientnet_lite0", num_classes=4, pretrained=None, head_channels=16, decoder="fpn").eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 70, 90))
    assert out.shape == (1, 4, 70, 90) and torch.isfinite(out).all()
    kind, name, config = describe(model)
    rebuilt = build_model(kind, name, config).eval()
    rebuilt.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt(torch.rand(1, 3, 64, 64) * 0 + 0.5), model(torch.rand(1, 3, 64, 64) * 0 + 0.5))
    old = {"kind": "seg", "backbone": "efficientnet_lite0", "num_classes": 2}  # a checkpoint from before the decoders
    assert build_model("seg", *checkpoint_spec(old, "seg")).decoder_kind == "deeplab"
