"""net/ctfa_net.py: the CTFA network on a ViT and on a CNN backbone, its segmenter half, and the loaders that take
its checkpoints (make_cam's, seg_net's). Tiny inputs, random weights, CPU."""
import pytest
import torch

from misc.cli import build_parser
from misc.torchutils import save_checkpoint
from net.ctfa_net import CTFANet, CTFASegmenter, ctfa_from_checkpoint
from net.zoo import build_model, load_model
from step.train_ctfa import ctfa_step_losses

WEIGHTS = {"patch": 0.2, "class": 0.5, "seg": 0.1, "fg": 0.1}


def _step(model, size=32):
    torch.manual_seed(1)
    images = torch.rand(2, 3, size, size)
    labels = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    return ctfa_step_losses(model, images, labels, weights=WEIGHTS, with_pseudo_labels=True, high=0.6, low=0.2,
                            no_background=False, par_num_iter=1, par_dilations=(1,), num_local=1, local_size=16,
                            generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def vit_net():
    torch.manual_seed(0)
    return CTFANet(backbone="vit_small_patch16", num_classes=2, pretrained=None, head_channels=16, embed_dim=8)


def test_vit_outputs_and_the_default_aux_layer(vit_net):
    assert vit_net.aux_layer == 8  # 3/4 of 12 blocks, 0-based
    out = vit_net(torch.rand(2, 3, 40, 56), with_ctfa=True)
    assert out.logits.shape == (2, 2) and out.cams.shape == (2, 2, 3, 4)
    assert out.final.shape == out.intermediate.shape == (2, 384, 3, 4)
    assert out.embedding.shape == (2, 8)
    assert out.semantic.shape == (2, 3, 3, 4) and out.foreground.shape == (2, 1, 3, 4)
    # the final and intermediate maps are different layers' tokens
    assert not torch.allclose(out.final, out.intermediate)
    logits, cams = vit_net.forward_with_cams(torch.rand(1, 3, 40, 56))
    assert logits.shape == (1, 2) and cams.shape == (1, 2, 3, 4) and cams.min() >= 0
    with pytest.raises(ValueError, match="aux_layer"):
        CTFANet(backbone="vit_small_patch16", num_classes=1, pretrained=None, aux_layer=11)


def test_every_term_reaches_its_parameters(vit_net):
    vit_net.zero_grad(set_to_none=True)
    loss, logits, parts = _step(vit_net)
    assert {"cls", "patch", "class", "seg", "fg", "labelled_fraction"} <= set(parts)
    assert torch.isfinite(loss) and logits.shape == (2, 2)
    loss.backward()
    # classifier (cls), projector (class-wise), both decoder branches (seg, fg), the backbone's first block
    for param in (vit_net.classifier.weight, vit_net.projector[-1].weight,
                  vit_net.decoder.semantic_classifier.weight, vit_net.decoder.foreground_classifier.weight,
                  vit_net.backbone.blocks[0].attn.qkv.weight):
        assert param.grad is not None and param.grad.abs().sum() > 0


def test_ctfa_losses_on_a_cnn_backbone():
    torch.manual_seed(0)
    model = CTFANet(backbone="efficientnet_lite0", num_classes=2, pretrained=None, head_channels=16, embed_dim=8)
    assert model.aux_layer is None
    loss, _, parts = _step(model)
    assert {"patch", "class", "seg", "fg"} <= set(parts) and torch.isfinite(loss)
    loss.backward()
    stage3 = [p for p in model.backbone.stage_modules()[2].parameters() if p.requires_grad]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in stage3)


def test_segmenter_is_the_networks_half(vit_net):
    seg = CTFASegmenter("vit_small_patch16", 3, pretrained=None, head_channels=16)
    seg.load_state_dict(vit_net.segmenter_state_dict(), strict=True)
    seg.eval()
    vit_net.eval()
    images = torch.rand(1, 3, 37, 50)
    with torch.no_grad():
        logits = seg(images)
        out = vit_net(images, with_ctfa=True)
    assert logits.shape == (1, 3, 37, 50)
    # softmax of the output is a distribution (the combined log-probabilities, upsampled)
    assert torch.allclose(logits.exp().sum(1), torch.ones(1, 37, 50), atol=1e-3)
    from misc.ctfa import foreground_activated_log_probs

    coarse = foreground_activated_log_probs(out.semantic, out.foreground)
    up = torch.nn.functional.interpolate(coarse, size=(37, 50), mode="bilinear", align_corners=False)
    assert torch.allclose(logits, up, atol=1e-5)


def test_checkpoints_load_through_the_zoo(vit_net, tmp_path):
    path = tmp_path / "ctfa.pth"
    save_checkpoint(str(path), model=vit_net, args=build_parser().parse_args([]), step=0,
                    extra={"kind": "ctfa", "num_classes": 2, "model_config": dict(vit_net.config)})
    loaded, _ = load_model(str(path), "cam", torch.device("cpu"))
    assert isinstance(loaded, CTFANet) and not loaded.training
    images = torch.rand(1, 3, 32, 48)
    vit_net.eval()
    with torch.no_grad():
        assert torch.allclose(loaded.forward_with_cams(images)[1], vit_net.forward_with_cams(images)[1], atol=1e-6)
    config = {k: v for k, v in vit_net.config.items() if k != "backbone"}
    rebuilt = build_model("seg", vit_net.config["backbone"], {**config, "num_classes": 3})
    assert isinstance(rebuilt, CTFASegmenter) and set(rebuilt.state_dict()) == set(vit_net.segmenter_state_dict())
    with pytest.raises(ValueError, match="model_config"):
        ctfa_from_checkpoint({"state_dict": {}})
