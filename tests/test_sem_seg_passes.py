"""Contract tests of cam_to_ir_label, make_sem_seg_labels and eval_sem_seg on a generated tiny data set.

The IRN network is replaced by a stand-in whose boundary map is the image gradient at stride 4, so the passes run in
seconds and the walk has real edges to respect.
"""
import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from data.labels import save_cls_labels
from misc import artifacts
from misc.cli import build_parser
from misc.io import load_npz, load_png, save_npz, save_png, save_text_lines
from step import cam_to_ir_label, eval_sem_seg, make_sem_seg_labels

# name: (height, width, building box (top, left, bottom, right) or None)
IMAGES = {"a": (64, 64, (16, 16, 40, 44)), "b": (62, 50, (8, 20, 30, 46)), "empty": (64, 64, None)}


class GradientBoundary(torch.nn.Module):
    """Stand-in IRN: boundary probability = normalised colour gradient, averaged over 4x4 cells."""

    def __init__(self, stride: int = 4):
        super().__init__()
        self.calls = 0
        self.stride = stride

    def boundary_map(self, images: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        gray = images.mean(dim=1, keepdim=True)  # (B, 1, H, W)
        gy = F.pad((gray[:, :, 1:] - gray[:, :, :-1]).abs(), (0, 0, 0, 1))
        gx = F.pad((gray[..., 1:] - gray[..., :-1]).abs(), (0, 1))
        grad = F.max_pool2d(gy + gx, self.stride, ceil_mode=True)  # (B, 1, ceil(H/s), ceil(W/s))
        return (grad / grad.max().clamp_min(1e-6)).clamp(0, 1)


@pytest.fixture()
def dataset(tmp_path):
    root = tmp_path / "data"
    cam_dir = tmp_path / "cam"
    names = list(IMAGES)
    labels = []
    for name, (h, w, box) in IMAGES.items():
        image = np.full((h, w, 3), 40, np.uint8)
        mask = np.zeros((h, w), np.uint8)
        high = np.zeros((0, h, w), np.float32)
        if box:
            t, l, b, r = box
            image[t:b, l:r] = 210
            mask[t:b, l:r] = 1
            # a blurry CAM that spills 3 pixels over the roof and peaks at 1 inside
            high = np.zeros((1, h, w), np.float32)
            high[0, max(0, t - 3):b + 3, max(0, l - 3):r + 3] = 0.6
            high[0, t + 2:b - 2, l + 2:r - 2] = 1.0
        save_png(str(root / "JPEGImages" / f"{name}.png"), image)
        save_png(artifacts.mask_path(str(root), name), mask)
        keys = np.array([0] if box else [], np.int64)
        strided = F.interpolate(torch.from_numpy(high)[None], size=(-(-h // 4), -(-w // 4)), mode="bilinear",
                                align_corners=False)[0].numpy() if box else np.zeros((0, -(-h // 4), -(-w // 4)),
                                                                                      np.float32)
        save_npz(artifacts.cam_path(str(cam_dir), name), keys=keys, cam=strided, high_res=high)
        labels.append([1 if box else 0])
    (root / "classes.json").write_text(json.dumps({"classes": ["background", "building"]}))
    save_cls_labels(str(root / "cls_labels.npy"), names, np.array(labels, np.uint8))
    save_text_lines(str(tmp_path / "list.txt"), names)
    return tmp_path


def make_args(tmp_path, *extra):
    return build_parser().parse_args([
        "--device", "cpu", "--quiet", "--voc12_root", str(tmp_path / "data"),
        "--train_list", str(tmp_path / "list.txt"), "--infer_list", str(tmp_path / "list.txt"),
        "--cam_out_dir", str(tmp_path / "cam"), "--ir_label_out_dir", str(tmp_path / "ir"),
        "--sem_seg_out_dir", str(tmp_path / "sem"), "--irn_weights_name", str(tmp_path / "irn.pth"),
        "--conf_fg_thres", "0.5", "--conf_bg_thres", "0.4", "--sem_seg_bg_thres", "0.4", "--exp_times", "4",
        "--cam_num_overlays", "2", *extra])


@pytest.fixture()
def stand_in_irn(monkeypatch):
    model = GradientBoundary()
    loaded = []

    def load_boundary_model(path, device):
        loaded.append(path)
        return model

    monkeypatch.setattr("step.make_sem_seg_labels._load_boundary_model", load_boundary_model)
    model.loaded = loaded
    return model


def check_label_pngs(out_dir, allowed):
    for name, (h, w, _) in IMAGES.items():
        label = load_png(str(out_dir / f"{name}.png"))
        assert label.dtype == np.uint8 and label.shape == (h, w)
        assert set(np.unique(label)) <= allowed


def test_cam_to_ir_label_contract(dataset):
    args = make_args(dataset)
    cam_to_ir_label.run(args)
    out = dataset / "ir"
    check_label_pngs(out, {0, 1, 255})
    assert sorted(os.listdir(out / "overlays")) == ["a.png", "b.png"]
    assert json.loads((out / "args_cam_to_ir_label.json").read_text())["conf_fg_thres"] == 0.5
    label = load_png(str(out / "a.png"))
    assert (label[20:36, 20:40] == 1).all()  # roof core: confident building
    assert (label[:8] == 0).all() and (label[:, -8:] == 0).all()  # far ground: confident background
    assert (load_png(str(out / "empty.png")) == 0).all()
    # a finished item is skipped unless --overwrite
    save_png(str(out / "a.png"), np.full((64, 64), 7, np.uint8))
    cam_to_ir_label.run(args)
    assert (load_png(str(out / "a.png")) == 7).all()
    cam_to_ir_label.run(make_args(dataset, "--overwrite", "True", "--num_workers", "2"))
    assert (load_png(str(out / "a.png")) == label).all()


def test_make_and_eval_sem_seg_contract(dataset, stand_in_irn):
    make_sem_seg_labels.run(make_args(dataset))
    out = dataset / "sem"
    check_label_pngs(out, {0, 1})
    assert stand_in_irn.calls == 2 and stand_in_irn.loaded == [str(dataset / "irn.pth")]  # no call for "empty"
    assert (load_png(str(out / "empty.png")) == 0).all()
    assert sorted(os.listdir(out / "overlays")) == ["a.png", "b.png"]
    overlay = load_png(str(out / "overlays" / "a.png"))
    # title band (16) over image | boundary | pseudo mask | ground truth (64 each, 4-px gaps), legend row (18) below
    assert overlay.shape == (16 + 64 + 18, 4 * 64 + 3 * 4, 3)
    assert (out / "args_make_sem_seg.json").is_file()

    eval_sem_seg.run(make_args(dataset))
    result = json.loads((out / "eval_sem_seg.json").read_text())
    assert set(result["iou"]) == {"background", "building"}
    assert result["num_images"] == 3
    assert np.array(result["confusion"]).sum() == sum(h * w for h, w, _ in IMAGES.values())
    # the walk stops at the roof edges, so the pseudo masks fit the boxes well
    assert result["miou"] > 0.8


def test_make_sem_seg_skips_done_items_and_affinitynet_needs_its_weights(dataset, stand_in_irn):
    out = dataset / "sem"
    for name, (h, w, _) in IMAGES.items():
        save_png(str(out / f"{name}.png"), np.zeros((h, w), np.uint8))
    make_sem_seg_labels.run(make_args(dataset))
    assert stand_in_irn.calls == 0 and stand_in_irn.loaded == []
    # the affinitynet walk loads --aff_weights_name, never the IRN file (the full walk: tests/test_affinitynet.py)
    with pytest.raises(FileNotFoundError, match="aff.pth"):
        make_sem_seg_labels.run(make_args(dataset, "--rw_method", "affinitynet", "--overwrite", "True",
                                          "--aff_weights_name", str(dataset / "aff.pth")))
    assert stand_in_irn.loaded == []


def test_evaluate_label_dir_by_hand(tmp_path):
    root = tmp_path / "data"
    gt = np.array([[0, 0, 1, 1], [0, 0, 1, 255]], np.uint8)
    pred = np.array([[0, 1, 1, 1], [0, 0, 255, 1]], np.uint8)  # 255 counts as background
    save_png(artifacts.mask_path(str(root), "x"), gt)
    save_png(str(tmp_path / "pred" / "x.png"), pred)
    result = eval_sem_seg.evaluate_label_dir(str(tmp_path / "pred"), str(root), ["x"], ["background", "building"])
    # rows gt, cols pred over the 7 valid pixels: bg→bg 3, bg→b 1, b→bg 1 (the 255), b→b 2
    assert result["confusion"] == [[3, 1], [1, 2]]
    assert result["iou"] == pytest.approx({"background": 3 / 5, "building": 2 / 4})
    assert result["miou"] == pytest.approx((3 / 5 + 2 / 4) / 2)
    assert result["precision"]["building"] == pytest.approx(2 / 3)
    assert result["recall"]["building"] == pytest.approx(2 / 3)


def test_make_sem_seg_without_walk_writes_the_cam_labels(dataset, stand_in_irn):
    """--rw_method none: no network is loaded, and each pseudo mask is the CAM's thresholded label (eval_cam's rule)."""
    out = dataset / "sem_none"
    make_sem_seg_labels.run(make_args(dataset, "--rw_method", "none", "--sem_seg_out_dir", str(out),
                                      "--sem_seg_bg_thres", "0.5"))
    assert stand_in_irn.loaded == [] and stand_in_irn.calls == 0
    for name, (h, w, box) in IMAGES.items():
        mask = load_png(str(out / f"{name}.png"))
        expected = np.zeros((h, w), np.uint8)
        if box:  # the fixture's CAM is 0.6 over the roof plus a 3-pixel spill, so 0.6 >= 0.5 is building there
            t, l, b, r = box
            expected[max(0, t - 3):b + 3, max(0, l - 3):r + 3] = 1
        assert np.array_equal(mask, expected), name


def test_a_stride_2_boundary_map_walks_on_the_stride_2_grid(dataset, monkeypatch):
    """A stride-2 IRN (--irn_stride 2): the stride-4 CAMs are lifted onto its grid, the masks keep the image size,
    the saved walk scores stay on the stride-4 grid, and the roof is still found."""
    model = GradientBoundary(stride=2)
    monkeypatch.setattr("step.make_sem_seg_labels._load_boundary_model", lambda path, device: model)
    make_sem_seg_labels.run(make_args(dataset, "--sem_seg_save_rw", "True"))
    out = dataset / "sem"
    check_label_pngs(out, {0, 1})
    assert model.calls == 2
    scores = load_npz(artifacts.cam_path(artifacts.rw_scores_dir(str(out)), "a"))
    assert scores["cam"].shape == (1, 16, 16) and scores["high_res"].shape == (1, 64, 64)
    eval_sem_seg.run(make_args(dataset))
    assert json.loads((out / "eval_sem_seg.json").read_text())["iou"]["building"] > 0.5
