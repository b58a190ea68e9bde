"""IRN: pair sampler, network shapes and gates, dataset, training, checkpoints. CPU, 64×64 inputs, random weights."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from data.irn_dataset import IRNDataset
from misc import artifacts
from misc.cli import build_parser
from misc.io import save_jpg, save_png
from misc.neighbourhood import line_pixels
from misc.pair_sampler import (affinity_labels, boundary_to_affinity, downsample_label, gather_pairs,
                               pair_losses, pair_offsets)
from misc.torchutils import PolyOptimizer, load_checkpoint, save_checkpoint
from net.irn import IRNet

# ---------------------------------------------------------------------------------------------------------------------
# Fixture: two bright rectangular buildings on a dark ground, masks, IR labels (1 core, 255 band, 0 outside)
# ---------------------------------------------------------------------------------------------------------------------

BUILDINGS = {"a": [(8, 28, 8, 30), (36, 56, 34, 58)], "b": [(4, 30, 30, 60)], "c": [(20, 44, 10, 40)]}


def make_fixture(root, names=("a", "b", "c"), size=64):
    """Writes JPEGImages/*.jpg, SegmentationClassAug/*.png, classes.json, a list file and IR labels; returns paths."""
    root = str(root)
    ir_dir = os.path.join(root, "ir_label")
    rng = np.random.default_rng(0)
    for name in names:
        mask = np.zeros((size, size), np.uint8)
        ir = np.zeros((size, size), np.uint8)
        for y0, y1, x0, x1 in BUILDINGS[name]:
            mask[y0:y1, x0:x1] = 1
            ir[max(y0 - 2, 0):y1 + 2, max(x0 - 2, 0):x1 + 2] = 255  # unsure band around each building
        for y0, y1, x0, x1 in BUILDINGS[name]:
            ir[y0 + 2:y1 - 2, x0 + 2:x1 - 2] = 1
        image = np.where(mask[..., None] > 0, 200, 50).astype(np.float32) + rng.normal(0, 5, (size, size, 3))
        save_jpg(os.path.join(root, "JPEGImages", f"{name}.jpg"), image.clip(0, 255).astype(np.uint8))
        save_png(artifacts.mask_path(root, name), mask)
        save_png(artifacts.ir_label_path(ir_dir, name), ir)
    with open(os.path.join(root, "classes.json"), "w") as f:
        json.dump({"classes": ["background", "building"]}, f)
    list_file = os.path.join(root, "train.txt")
    with open(list_file, "w") as f:
        f.write("\n".join(names) + "\n")
    return {"root": root, "ir_dir": ir_dir, "list": list_file}


def fixture_args(paths, tmp_path, *extra):
    return build_parser().parse_args([
        "--device", "cpu", "--quiet", "--voc12_root", paths["root"], "--train_list", paths["list"],
        "--infer_list", paths["list"], "--ir_label_out_dir", paths["ir_dir"],
        "--cam_weights_name", str(tmp_path / "sess" / "cam.pth"), "--irn_weights_name", str(tmp_path / "sess" / "irn.pth"),
        "--irn_crop_size", "64", "--irn_batch_size", "2", "--irn_num_epochs", "1", "--pretrained", "none",
        "--cam_num_overlays", "1", *extra])


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    # The test box has 2 cores shared by several jobs: intra-op threads on these tiny tensors gain nothing, while
    # oversubscription makes each call 10-30x slower. Restored afterwards so other modules keep their setting.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    return {b: IRNet("efficientnet_lite0", boundary=b, pretrained=None) for b in ("gated", "plain")}


# ---------------------------------------------------------------------------------------------------------------------
# Pair sampler
# ---------------------------------------------------------------------------------------------------------------------


def test_offsets_radius_2_by_hand():
    # dy² + dx² < 4 in the half-plane (dy > 0, or dy == 0 and dx > 0)
    assert pair_offsets(2).tolist() == [[0, 1], [1, -1], [1, 0], [1, 1]]


def test_offsets_radius_10_cover_half_the_disk():
    offsets = pair_offsets(10)
    assert len(offsets) == 152  # (305 lattice points with y² + x² < 100, minus the origin) / 2
    assert all(dy * dy + dx * dx < 100 for dy, dx in offsets)
    assert all(dy > 0 or (dy == 0 and dx > 0) for dy, dx in offsets)
    as_set = {tuple(o) for o in offsets.tolist()}
    assert len(as_set) == len(offsets)
    assert not any((-dy, -dx) in as_set for dy, dx in as_set)  # each unordered pair once


def test_line_points_do_not_let_a_diagonal_slip_through():
    assert sorted(line_pixels(1, 1)) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert sorted(line_pixels(0, 3)) == [(0, 0), (0, 1), (0, 2), (0, 3)]


def test_affinity_labels_of_a_hand_made_label():
    label = torch.tensor([[0, 0, 1, 1],
                          [0, 255, 1, 1],
                          [2, 2, 1, 1],
                          [0, 0, 0, 0]], dtype=torch.uint8)
    out = {k: v.numpy().astype(int) for k, v in affinity_labels(label, radius=2).items()}
    assert out["bg_pos"].shape == (4, 4, 4)
    right = 0  # offset (0, 1): pair (y, x) → (y, x + 1)
    assert out["bg_pos"][right].tolist() == [[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 0]]
    assert out["fg_pos"][right].tolist() == [[0, 0, 1, 0], [0, 0, 1, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    assert out["neg"][right].tolist() == [[0, 1, 0, 0], [0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]]
    down = 2  # offset (1, 0): pair (y, x) → (y + 1, x)
    assert out["bg_pos"][down].tolist() == [[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    assert out["fg_pos"][down].tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]]
    assert out["neg"][down].tolist() == [[0, 0, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]]
    down_left = 1  # offset (1, -1): (0, 2)=1 → (1, 1)=255 is no pair; (2, 2)=1 → (3, 1)=0 is negative
    assert out["neg"][down_left][2].tolist() == [0, 1, 1, 1]
    assert out["fg_pos"][down_left][0].tolist() == [0, 0, 0, 1]
    # the three kinds never overlap
    assert ((out["bg_pos"] + out["fg_pos"] + out["neg"]) <= 1).all()


def test_downsample_label_takes_cell_centres_and_pads_unsure():
    label = np.arange(36, dtype=np.uint8).reshape(6, 6)
    small = downsample_label(label, stride=4)
    assert small.dtype == np.uint8 and small.shape == (2, 2)
    # cell (0, 0) takes pixel (2, 2) = 14; cells beyond the 6×6 image sample the 255 padding
    assert small.tolist() == [[14, 255], [255, 255]]


def test_affinity_is_zero_across_a_boundary_line():
    boundary = torch.zeros(1, 1, 5, 6)
    boundary[..., 2] = 1.0  # a vertical boundary in column 2
    aff = boundary_to_affinity(boundary, radius=4)
    offsets = pair_offsets(4).tolist()
    right1, right3 = offsets.index([0, 1]), offsets.index([0, 3])
    assert aff[0, right3, :, 0].tolist() == [0.0] * 5  # (y, 0) → (y, 3) crosses column 2
    assert aff[0, right1, :, 0].tolist() == [1.0] * 5  # (y, 0) → (y, 1) does not
    assert aff[0, right1, :, 3].tolist() == [1.0] * 5  # (y, 3) → (y, 4) is right of the boundary
    assert gather_pairs(torch.arange(4.0).view(1, 4), [[0, 1]], fill=-1).tolist() == [[[1.0, 2.0, 3.0, -1.0]]]



def test_affinity_matches_an_explicit_max_along_each_line():
    torch.manual_seed(0)
    boundary = torch.rand(2, 1, 11, 13, requires_grad=True)
    aff = boundary_to_affinity(boundary, radius=5, max_elements=1000)  # small chunks: the chunking must not matter
    reference = torch.stack([1 - gather_pairs(boundary[:, 0], line_pixels(dy, dx), fill=0.0).max(dim=1).values
                             for dy, dx in pair_offsets(5).tolist()], dim=1)  # (2, D, 11, 13)
    assert aff.shape == reference.shape == (2, len(pair_offsets(5)), 11, 13)
    assert torch.equal(aff, reference)
    grad, = torch.autograd.grad(aff.sum(), boundary)
    grad_ref, = torch.autograd.grad(reference.sum(), boundary)
    assert torch.equal(grad, grad_ref) and grad.abs().sum() > 0

# ---------------------------------------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("boundary", ["gated", "plain"])
@pytest.mark.parametrize("size", [(33, 50), (21, 19)])
def test_output_shapes_for_odd_sizes(nets, boundary, size):
    model = nets[boundary].eval()
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        logits, dp = model(x)
        prob = model.boundary_map(x)
        disp = model.displacement(x)
    h4, w4 = -(-size[0] // 4), -(-size[1] // 4)
    assert logits.shape == (2, 1, h4, w4) and dp.shape == (2, 2, h4, w4)
    assert prob.shape == (2, 1, h4, w4) and disp.shape == (2, 2, h4, w4)
    assert 0 <= prob.min() and prob.max() <= 1


def test_boundary_map_is_flip_equivariant(nets):
    model = nets["gated"].eval()
    x = torch.rand(1, 3, 37, 52)  # odd height; a width that is a multiple of 4 keeps the flipped grid on the same cells
    with torch.no_grad():
        a = model.boundary_map(x)
        b = model.boundary_map(x.flip(-1)).flip(-1)
        da = model.displacement(x)
        db = model.displacement(x.flip(-1)).flip(-1)
    assert torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(da[:, 0], db[:, 0], atol=1e-4) and torch.allclose(da[:, 1], -db[:, 1], atol=1e-4)


def test_gates_in_unit_interval_and_gradient_reaches_shape_stream(nets):
    model = nets["gated"].train()
    model.zero_grad(set_to_none=True)
    logits, dp, gates = model(torch.rand(2, 3, 48, 40), return_gates=True)
    assert len(gates) == 3
    for g in gates:
        assert g.shape == (2, 1, 12, 10) and 0 <= g.min() and g.max() <= 1
    logits.sum().backward()
    branch = model.boundary_branch
    for module in (branch.stem, branch.blocks[0], branch.side[0], branch.gates[2].gate_conv):
        grads = [p.grad for p in module.parameters()]
        assert all(g is not None and g.abs().sum() > 0 for g in grads)
    assert all(p.grad is None for p in model.backbone.parameters())  # frozen
    trainable = {id(p) for g in model.param_groups(0.1) for p in g["params"]}
    assert not trainable & {id(p) for p in model.backbone.parameters()}
    assert model.backbone.training is False


# ---------------------------------------------------------------------------------------------------------------------
# Dataset and training
# ---------------------------------------------------------------------------------------------------------------------


def test_dataset_augments_image_and_label_alike(tmp_path):
    root = str(tmp_path)
    label = np.zeros((40, 48), np.uint8)
    label[5:30, 10:20] = 1
    label[30:, 30:] = 255
    image = np.stack([np.minimum(label.astype(int) * 100 + 50, 255)] * 3, axis=-1).astype(np.uint8)  # the colour encodes the label
    save_png(os.path.join(root, "JPEGImages", "x.png"), image)
    save_png(artifacts.ir_label_path(os.path.join(root, "ir"), "x"), label)
    ds = IRNDataset(root, ["x"], os.path.join(root, "ir"), crop_size=32, scale_range=(1.0, 1.0), seed=3)
    for epoch in range(4):
        ds.set_epoch(epoch)
        item = ds[0]
        assert item["img"].shape == (3, 32, 32) and item["label"].shape == (8, 8)
        assert item["label"].dtype == torch.uint8
        centres = item["img"][0, 2::4, 2::4]  # the pixels the stride-4 label samples
        lab = item["label"]
        assert torch.allclose(centres[lab == 1], torch.tensor(150 / 255)), epoch
        assert torch.allclose(centres[lab == 0], torch.tensor(50 / 255)), epoch


def test_a_few_training_steps_decrease_the_loss(tmp_path):
    paths = make_fixture(tmp_path)
    ds = IRNDataset(paths["root"], ["a", "b", "c"], paths["ir_dir"], crop_size=64, seed=0)
    batch = torch.utils.data.default_collate([ds[i] for i in range(3)])
    assert set(batch["label"].unique().tolist()) == {0, 1, 255}
    torch.manual_seed(0)
    model = IRNet("efficientnet_lite0", boundary="gated", pretrained=None).train()
    optimizer = PolyOptimizer(model.param_groups(0.05), lr=0.05, weight_decay=1e-4, max_step=100)
    losses = []
    for _ in range(8):
        logits, dp = model(batch["img"])
        loss = pair_losses(logits, dp, batch["label"])["total"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.8 * losses[0], losses


def test_train_pass_checkpoint_round_trip_and_cam_backbone(tmp_path):
    from net.cam_net import CAMNet
    from net.zoo import load_model
    from step.train_irn import run

    paths = make_fixture(tmp_path)
    args = fixture_args(paths, tmp_path, "--irn_boundary", "plain")
    torch.manual_seed(1)
    cam = CAMNet("efficientnet_lite0", num_classes=1, pretrained=None)
    save_checkpoint(args.cam_weights_name, model=cam, args={"backbone": "efficientnet_lite0"}, step=0,
                    extra={"kind": "cam", "num_classes": 1})
    run(args)
    ckpt = load_checkpoint(args.irn_weights_name)
    assert ckpt["kind"] == "irn" and ckpt["boundary"] == "plain" and ckpt["backbone"] == "efficientnet_lite0"
    assert ckpt["epoch"] == 1 and ckpt["step"] == 1 and np.isfinite(ckpt["metrics"]["total"])
    assert os.path.isfile(artifacts.irn_boundary_overlay_path(args.irn_weights_name, "a"))
    assert os.path.isfile(artifacts.args_json_path(str(tmp_path / "sess"), "train_irn"))

    model = load_model(args.irn_weights_name, "irn")[0]
    assert isinstance(model, IRNet) and model.boundary_kind == "plain" and not model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, ckpt["state_dict"][key]), key
    # the frozen backbone is the CAM network's, untouched by training
    for key, value in cam.backbone.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[key], value), key

    # --resume with everything done trains nothing more and keeps the step
    args.resume = True
    run(args)
    assert load_checkpoint(args.irn_weights_name)["step"] == 1


def test_load_irn_model_rejects_other_files(tmp_path, nets):
    from net.cam_net import CAMNet
    from net.zoo import load_model

    cam_file = str(tmp_path / "cam.pth")
    save_checkpoint(cam_file, model=CAMNet("efficientnet_lite0", 1, pretrained=None), args={}, step=0,
                    extra={"kind": "cam"})
    with pytest.raises(ValueError, match="cam.pth.*not an IRN checkpoint"):
        load_model(cam_file, "irn")
    # an IRN file that says "gated" but holds the plain branch's weights
    bad_file = str(tmp_path / "bad_irn.pth")
    save_checkpoint(bad_file, model=nets["plain"], args={"backbone": "efficientnet_lite0"}, step=0,
                    extra={"kind": "irn", "boundary": "gated", "backbone": "efficientnet_lite0"})
    with pytest.raises(ValueError, match="bad_irn.pth"):
        load_model(bad_file, "irn")


def test_displacement_branch_learns_offsets_to_object_centres():
    """The displacement loss must fall well below what a constant field scores (a field that ignores the image):
    on bright squares over a flat background the branch can see where each square is, so it can point at its centre."""
    rng = np.random.default_rng(0)

    def batch(n=4, size=96):
        images = np.full((n, 3, size, size), 0.3, np.float32)
        labels = np.zeros((n, size // 4, size // 4), np.uint8)
        for b in range(n):
            for _ in range(2):
                y, x = rng.integers(0, size - 36, 2)
                h, w = rng.integers(16, 36, 2)
                images[b, :, y:y + h, x:x + w] = rng.uniform(0.6, 1.0, (3, 1, 1))
                mask = np.zeros((size, size), np.uint8)
                mask[y:y + h, x:x + w] = 1
                labels[b] = np.maximum(labels[b], downsample_label(mask))
        return torch.from_numpy(images), torch.from_numpy(labels)

    torch.manual_seed(0)
    model = IRNet("efficientnet_lite0", boundary="plain", pretrained="default").train()
    steps = 40
    optimizer = PolyOptimizer(model.param_groups(0.1), lr=0.1, weight_decay=1e-4, max_step=steps)
    test_images, test_labels = batch()
    with torch.no_grad():
        logits, dp = model(test_images)
        start = pair_losses(logits, torch.zeros_like(dp), test_labels)["dp_fg"].item()  # a constant field's loss
    for _ in range(steps):
        images, labels = batch()
        logits, dp = model(images)
        loss = pair_losses(logits, dp, labels)["total"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        logits, dp = model(test_images)
        end = pair_losses(logits, dp, test_labels)["dp_fg"].item()
    assert end < 0.6 * start, (start, end)


def test_a_stride_2_irn_doubles_its_grid_and_keeps_displacements_in_stride_4_units():
    model = IRNet("efficientnet_lite0", boundary="gated", pretrained=None, stride=2).eval()
    x = torch.rand(1, 3, 33, 50)
    with torch.no_grad():
        logits, dp = model(x)
        disp = model.displacement(x)
        native = model(model._pad_to_4(x))[1]
    assert logits.shape == (1, 1, 17, 25) and dp.shape == (1, 2, 17, 25)
    assert model.boundary_map(x).shape == (1, 1, 17, 25)
    assert disp.shape == (1, 2, 9, 13)  # the instance pass's stride-4 grid
    # one stride-4 cell = the mean of its 2x2 stride-2 cells (image and flip averaged), in stride-4 pixels
    flipped = model(model._pad_to_4(x).flip(-1))[1].flip(-1) * torch.tensor([1.0, -1.0]).view(1, 2, 1, 1)
    both = (native + flipped) / 2
    assert torch.allclose(disp[0, :, 0, 0], both[0, :, :2, :2].mean(dim=(-2, -1)) / 2, atol=1e-6)
    with pytest.raises(ValueError, match="stride 3"):
        IRNet("efficientnet_lite0", pretrained=None, stride=3)


def test_the_stride_travels_with_the_weights_and_labels_shrink_to_it(tmp_path):
    from net.zoo import load_model, save_model

    model = IRNet("efficientnet_lite0", boundary="plain", pretrained=None, stride=2)
    save_model(str(tmp_path / "irn.pth"), model, args={"backbone": "efficientnet_lite0"}, step=0)
    assert load_model(str(tmp_path / "irn.pth"), "irn")[0].stride == 2
    paths = make_fixture(tmp_path)
    item = IRNDataset(paths["root"], ["a"], paths["ir_dir"], crop_size=32, stride=2)[0]
    assert item["img"].shape == (3, 32, 32) and item["label"].shape == (16, 16)
