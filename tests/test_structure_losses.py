"""SBNet's structure-aware CAM losses (misc/structure_losses.py) and their hook into train_cam, on hand-made maps."""
import copy

import pytest
import torch
import torch.nn.functional as F

from misc.cli import build_parser
from misc.structure_losses import (boundary_loss, charbonnier, image_edges, laplacian, pseudo_boundary_target,
                                   smoothness_loss, sobel)
from misc.torchutils import save_checkpoint
from net.cam_net import CAMNet
from net.zoo import load_model
from step.train_cam import build_cam_net, cam_step_losses


def step_map(size: int = 8, col: int = 4) -> torch.Tensor:
    """(1, 1, size, size): 0 left of column ``col``, 1 from it on."""
    x = torch.zeros(1, 1, size, size)
    x[..., col:] = 1.0
    return x


def test_kernels_by_hand():
    gx, gy = sobel(step_map())
    # a unit step between columns 3 and 4 reads 4 on both sides of it (rows 1+2+1), nothing across rows
    assert torch.equal(gx[0, 0, :, 3], torch.full((8,), 4.0)) and torch.equal(gx[0, 0, :, 4], torch.full((8,), 4.0))
    assert gx[0, 0, :, :3].abs().max() == 0 and gx[0, 0, :, 5:].abs().max() == 0 and gy.abs().max() == 0
    lap = laplacian(step_map())
    assert torch.equal(lap[0, 0, :, 3], torch.full((8,), -3.0)) and torch.equal(lap[0, 0, :, 4], torch.full((8,), 3.0))
    assert charbonnier(torch.zeros(3)).abs().max() == 0
    assert charbonnier(torch.tensor([4.0])).item() == pytest.approx(4.0 - 1e-3, abs=1e-6)


def test_smoothness_is_zero_on_a_constant_cam():
    edges = image_edges(step_map().expand(1, 3, 8, 8), stride=1)
    for value in (0.0, 0.3, 1.0):
        assert smoothness_loss(torch.full((2, 1, 8, 8), value), edges.expand(2, 1, 8, 8)).item() == 0.0


def test_smoothness_is_switched_off_across_image_edges():
    cam = step_map()  # a CAM step between columns 3 and 4
    flat = image_edges(torch.full((1, 3, 8, 8), 0.5), stride=1)
    edged = image_edges(step_map().expand(1, 3, 8, 8), stride=1)  # an image edge at the same place
    assert flat.abs().max() == 0 and edged[0, 0, :, 3:5].min() == pytest.approx(1.0)  # a unit step reads 1
    across_flat = smoothness_loss(cam, flat).item()
    across_edge = smoothness_loss(cam, edged).item()
    # by hand: |gx| = 4 and |lap| = 3 on the 16 pixels of columns 3-4, weight 1:
    # s1 · mean ρ(gx) + s2 · mean ρ(lap) = 10 · 16·4/64 + 1 · 16·3/64 = 10.75 (ρ(s) ≈ s - 0.001)
    assert across_flat == pytest.approx(10.75, abs=0.01)
    # the same step on an image edge is weighted by exp(-10): s = 4e⁻¹⁰ = 1.82e-4 and 3e⁻¹⁰ = 1.36e-4 fall in
    # the Charbonnier's quadratic range, ρ(s) = s² / (sqrt(s² + ε²) + ε) = 1.636e-5 and 9.23e-6:
    # 10 · 16 · 1.636e-5 / 64 + 16 · 9.23e-6 / 64 = 4.32e-5
    assert across_edge == pytest.approx(4.32e-5, rel=0.01)
    assert across_edge < 0.001 * across_flat
    # the smoothness of absent classes is not counted
    assert smoothness_loss(cam, flat, torch.zeros(1, 1)).item() == 0.0


def test_image_edges_stride():
    image = torch.zeros(1, 3, 30, 30)
    image[..., 16:] = 1.0  # a step at a cell border of the stride-4 grid
    edges = image_edges(image, stride=4)
    assert edges.shape == (1, 1, 8, 8)  # ceil(30 / 4)
    assert edges[0, 0, :, 3:5].min() == pytest.approx(1.0) and edges[0, 0, :, :2].max() == 0


def test_pseudo_boundary_target_keeps_image_edges_where_the_cam_changes():
    image = torch.full((1, 3, 16, 16), 0.2)
    image[..., 4:12, 4:12] = 0.9  # a roof
    image[..., 0:2, 12:16] = 0.9  # a bright patch far from any activation (texture, not this object)
    edges = image_edges(image, stride=1)
    cam = torch.zeros(1, 2, 16, 16)
    cam[:, :, 3:13, 3:13] = 0.5
    cam[:, :, 5:11, 5:11] = 1.0  # a blurry CAM over the roof, for both classes
    target = pseudo_boundary_target(cam, edges, torch.tensor([[1.0, 0.0]]))
    assert target.shape == (1, 2, 16, 16) and not target.requires_grad
    assert 0 <= target.min() and target.max() <= 1
    assert target[0, 0, 8, 3:5].max() == pytest.approx(1.0)  # the roof's left edge
    assert target[0, 0, 0:2, 12:16].max() == 0  # an image edge where the CAM is flat
    assert target[0, 0, 7:9, 7:9].max() == 0  # inside the roof: no image edge
    assert target[0, 1].max() == 0  # class 2 is absent


def test_boundary_loss_decreases_when_the_head_trains():
    torch.manual_seed(0)
    image = torch.full((1, 3, 32, 32), 0.2)
    image[..., 8:24, 8:24] = 0.9
    edges = image_edges(image, stride=4)  # (1, 1, 8, 8)
    cam = F.interpolate(image[:, :1] - 0.2, size=(8, 8), mode="bilinear", align_corners=False)
    target = pseudo_boundary_target(cam, edges, torch.ones(1, 1))
    assert target.max() > 0.5  # the fixture has a boundary to learn
    model = CAMNet("efficientnet_lite0", num_classes=1, pretrained=None, boundary_head=True).train()
    optimizer = torch.optim.SGD(model.param_groups(0.01), lr=0.01, momentum=0.9)
    losses = []
    for _ in range(8):
        _, _, boundary_logits = model(image, with_structure=True)
        assert boundary_logits.shape == (1, 1, 8, 8)
        loss = boundary_loss(boundary_logits, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def _args(*extra):
    return build_parser().parse_args(["--pretrained", "none", *extra])


def test_zero_weights_train_exactly_as_the_plain_classifier():
    torch.manual_seed(0)
    model = build_cam_net(_args(), num_classes=2)
    assert model.boundary_head is None
    assert set(model.state_dict()) == set(CAMNet("efficientnet_lite0", 2, pretrained=None).state_dict())
    reference = copy.deepcopy(model)
    images = torch.rand(2, 3, 32, 32)
    labels = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    opt_a = torch.optim.SGD(model.param_groups(0.01), lr=0.01, momentum=0.9)
    opt_b = torch.optim.SGD(reference.param_groups(0.01), lr=0.01, momentum=0.9)
    for _ in range(3):
        loss_a, _, parts = cam_step_losses(model, images, labels, smooth_weight=0.0, boundary_weight=0.0)
        loss_b = F.multilabel_soft_margin_loss(reference(images), labels)  # the training step before SBNet
        assert parts == {} and loss_a.item() == loss_b.item()
        for opt, loss in ((opt_a, loss_a), (opt_b, loss_b)):
            opt.zero_grad()
            loss.backward()
            opt.step()
    for (key, a), b in zip(model.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(a, b), key
    # and the weights do change the loss: cls + w_s · smooth + w_b · boundary
    structured = build_cam_net(_args("--cam_boundary_loss", "0.5"), num_classes=2)
    structured.load_state_dict(model.state_dict(), strict=False)
    loss, _, parts = cam_step_losses(structured, images, labels, smooth_weight=0.1, boundary_weight=0.5)
    assert set(parts) == {"cls", "smooth", "boundary"} and parts["smooth"] > 0 and parts["boundary"] > 0
    assert loss.item() == pytest.approx(parts["cls"] + 0.1 * parts["smooth"] + 0.5 * parts["boundary"], rel=1e-5)


def test_checkpoints_with_and_without_the_boundary_head_load(tmp_path):
    for head in (False, True):
        model = CAMNet("efficientnet_lite0", num_classes=1, pretrained=None, boundary_head=head)
        path = str(tmp_path / f"cam_{head}.pth")
        save_checkpoint(path, model=model, args=_args(), step=0, extra={"num_classes": 1, "kind": "cam"})
        loaded = load_model(path, "cam")[0]
        assert (loaded.boundary_head is not None) == head
        x = torch.rand(1, 3, 32, 32)
        assert torch.equal(loaded(x), model.eval()(x))
