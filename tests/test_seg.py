"""SegNet, the segmentation dataset (pseudo / gt / mixed labels) and the train_seg / eval_seg passes. CPU, tiny."""
from __future__ import annotations

import json
import os
import shutil

import cv2
import numpy as np
import pytest
import torch

from data.seg_dataset import SegmentationDataset, label_sources
from misc.cli import build_parser
from misc.torchutils import load_checkpoint
from net.seg_net import SegNet
from step import eval_seg, train_seg

@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny convolutions run faster on one thread, and far faster than two threads on a busy 2-core CI box."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


NAMES = ["t0", "t1", "t2", "t3"]
CLASSES = ["background", "building"]


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory):
    """4 tiles 48x48: red roofs (class 1) on dark noisy ground; pseudo masks = roofs shrunk by 3 px."""
    root = tmp_path_factory.mktemp("data")
    for sub in ("JPEGImages", "SegmentationClassAug", "pseudo"):
        (root / sub).mkdir()
    rng = np.random.default_rng(0)
    for i, name in enumerate(NAMES):
        image = rng.integers(20, 70, size=(48, 48, 3)).astype(np.uint8)
        gt = np.zeros((48, 48), np.uint8)
        top, left = 4 + 6 * i, 30 - 5 * i
        gt[top:top + 18, left:left + 14] = 1
        gt[0, :] = 255  # an ignored row, as real masks have
        image[gt == 1] = (220, 60, 50)
        pseudo = np.zeros_like(gt)
        pseudo[top + 3:top + 15, left + 3:left + 11] = 1
        cv2.imwrite(str(root / "JPEGImages" / f"{name}.png"), image[..., ::-1])
        cv2.imwrite(str(root / "SegmentationClassAug" / f"{name}.png"), gt)
        cv2.imwrite(str(root / "pseudo" / f"{name}.png"), pseudo)
    (root / "classes.json").write_text(json.dumps({"classes": CLASSES}))
    (root / "train.txt").write_text("\n".join(NAMES) + "\n")
    (root / "pixel.txt").write_text("t1\nt3\n")
    return root


def _args(root, tmp_path, *extra):
    return build_parser().parse_args([
        "--device", "cpu", "--voc12_root", str(root), "--train_list", str(root / "train.txt"),
        "--sem_seg_out_dir", str(root / "pseudo"), "--seg_weights_name", str(tmp_path / "seg.pth"),
        "--seg_out_dir", str(tmp_path / "seg_out"), "--seg_crop_size", "32", "--seg_batch_size", "2",
        "--seg_learning_rate", "0.01", "--pretrained", "none", "--seg_head_channels", "16", *extra])


# --------------------------------------------------------------------------------------------------------------------
# Network
# --------------------------------------------------------------------------------------------------------------------


def test_segnet_logits_at_input_size_frozen_bn_and_10x_head_lr():
    torch.manual_seed(0)
    model = SegNet("efficientnet_lite0", num_classes=3, pretrained=None, head_channels=16).train()
    for size in [(64, 80), (65, 67)]:
        logits = model(torch.rand(2, 3, *size))
        assert logits.shape == (2, 3, *size)
    bns = [m for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(not m.training and not m.weight.requires_grad for m in bns)
    backbone_group, head_group = model.param_groups(0.01)
    assert backbone_group["lr"] == 0.01 and head_group["lr"] == pytest.approx(0.1)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert {id(p) for g in (backbone_group, head_group) for p in g["params"]} == trainable


def test_segnet_rejects_a_single_class():
    with pytest.raises(ValueError, match="at least 2"):
        SegNet("efficientnet_lite0", num_classes=1, pretrained=None)


# --------------------------------------------------------------------------------------------------------------------
# Dataset and label sources
# --------------------------------------------------------------------------------------------------------------------


def test_label_sources():
    assert label_sources(["a", "b"], "pseudo") == {"a": "pseudo", "b": "pseudo"}
    assert label_sources(["a", "b"], "gt") == {"a": "gt", "b": "gt"}
    assert label_sources(["a", "b", "c"], "mixed", ["b", "z"]) == {"a": "pseudo", "b": "gt", "c": "pseudo"}
    with pytest.raises(ValueError, match="seg_pixel_list"):
        label_sources(["a"], "mixed", None)


def test_mixed_source_uses_ground_truth_for_listed_names_and_pseudo_masks_for_the_others(dataset_root):
    ds = SegmentationDataset(str(dataset_root), NAMES, num_classes=2, crop_size=32, label_source="mixed",
                             pseudo_dir=str(dataset_root / "pseudo"), pixel_names=["t1", "t3"])
    for name in NAMES:
        gt = cv2.imread(str(dataset_root / "SegmentationClassAug" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        pseudo = cv2.imread(str(dataset_root / "pseudo" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        assert not np.array_equal(gt, pseudo)
        expected = gt if name in ("t1", "t3") else pseudo
        assert np.array_equal(ds.load_label(name), expected), name
    # the augmented sample keeps the source's label values: only gt masks have the ignored row
    item = ds[1]
    assert item["img"].shape == (3, 32, 32) and item["img"].dtype == torch.float32
    assert item["label"].shape == (32, 32) and item["label"].dtype == torch.int64
    assert set(item["label"].unique().tolist()) <= {0, 1, 255}


def test_augmentation_is_seeded_by_epoch_and_index(dataset_root):
    ds = SegmentationDataset(str(dataset_root), NAMES, num_classes=2, crop_size=32, label_source="gt", seed=3)
    a, b = ds[2], ds[2]
    assert torch.equal(a["img"], b["img"]) and torch.equal(a["label"], b["label"])
    ds.set_epoch(1)
    assert not torch.equal(ds[2]["img"], a["img"])


def test_no_augmentation_is_the_plain_crop(dataset_root):
    """--seg_augment none: a 48x48 tile cropped to 48 is the tile itself, unchanged."""
    ds = SegmentationDataset(str(dataset_root), NAMES, num_classes=2, crop_size=48, label_source="gt",
                             augment=())
    item = ds[1]
    image = cv2.imread(str(dataset_root / "JPEGImages" / "t1.png"))[:, :, ::-1].astype(np.float32) / 255
    assert np.allclose(item["img"].numpy().transpose(1, 2, 0), image, atol=1e-6)
    assert np.array_equal(item["label"].numpy(), ds.load_label("t1"))
    # dihedral only: the label is a flip/rotation of the mask (no rescale, no new values)
    ds = SegmentationDataset(str(dataset_root), NAMES, num_classes=2, crop_size=48, label_source="gt",
                             augment=("dihedral",))
    label = ds.load_label("t1")
    variants = [np.rot90(v, k) for v in (label, label[:, ::-1]) for k in range(4)]
    assert any(np.array_equal(ds[1]["label"].numpy(), v) for v in variants)


@pytest.mark.parametrize("text, expected", [("none", ()), ("jitter,scale", ("scale", "jitter")),
                                            ("scale,dihedral,jitter", ("scale", "dihedral", "jitter"))])
def test_seg_augment_flag(text, expected):
    assert build_parser().parse_args(["--seg_augment", text]).seg_augment == expected


def test_seg_augment_flag_rejects_unknown_names(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--seg_augment", "flip"])
    assert "--seg_augment" in capsys.readouterr().err


def test_missing_pseudo_mask_is_a_clear_error(dataset_root, tmp_path):
    pseudo = tmp_path / "pseudo"
    shutil.copytree(dataset_root / "pseudo", pseudo)
    os.remove(pseudo / "t2.png")
    with pytest.raises(FileNotFoundError, match="t2.png"):
        SegmentationDataset(str(dataset_root), NAMES, num_classes=2, crop_size=32, label_source="pseudo",
                            pseudo_dir=str(pseudo))


def test_label_outside_the_classes_is_an_error(dataset_root, tmp_path):
    pseudo = tmp_path / "pseudo"
    shutil.copytree(dataset_root / "pseudo", pseudo)
    cv2.imwrite(str(pseudo / "t0.png"), np.full((48, 48), 3, np.uint8))
    ds = SegmentationDataset(str(dataset_root), NAMES, num_classes=2, crop_size=32, pseudo_dir=str(pseudo))
    with pytest.raises(ValueError, match="t0.png.*label value 3"):
        ds.load_label("t0")


# --------------------------------------------------------------------------------------------------------------------
# Passes
# --------------------------------------------------------------------------------------------------------------------


def test_train_seg_lowers_the_loss_and_writes_a_self_describing_checkpoint(dataset_root, tmp_path):
    torch.manual_seed(0)
    args = _args(dataset_root, tmp_path, "--seg_num_epochs", "6", "--seg_label_source", "pseudo")
    train_seg.run(args)
    ckpt = load_checkpoint(str(tmp_path / "seg.pth"))
    assert ckpt["kind"] == "seg" and ckpt["num_classes"] == 2 and ckpt["class_names"] == CLASSES
    assert ckpt["backbone"] == "efficientnet_lite0" and ckpt["head_channels"] == 16
    assert ckpt["epoch"] == 6 and ckpt["step"] == 6 * 2  # 4 images / batch 2
    losses = ckpt["metrics"]["loss_per_epoch"]
    assert len(losses) == 6 and all(np.isfinite(losses))
    assert np.mean(losses[-2:]) < 0.8 * np.mean(losses[:2]), losses
    assert ckpt["args"]["seg_label_source"] == "pseudo"
    assert os.path.isfile(tmp_path / "args_train_seg.json")

    # eval_seg on the same tiles: a prediction PNG per image, overlays for the first N, per-class scores
    eval_args = _args(dataset_root, tmp_path, "--seg_val_list", str(dataset_root / "train.txt"),
                      "--predict_window", "32", "--predict_overlap", "8", "--seg_num_overlays", "2")
    eval_seg.run(eval_args)
    out = tmp_path / "seg_out"
    for name in NAMES:
        pred = cv2.imread(str(out / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        assert pred.dtype == np.uint8 and pred.shape == (48, 48) and pred.max() <= 1
    assert sorted(os.listdir(out / "overlays")) == ["t0.png", "t1.png"]
    result = json.loads((out / "eval_seg.json").read_text())
    for key in ("iou", "precision", "recall", "f1"):
        assert set(result[key]) == set(CLASSES)
    assert 0 <= result["miou"] <= 1 and result["num_images"] == 4


def test_train_seg_resumes_from_the_saved_epoch(dataset_root, tmp_path):
    torch.manual_seed(0)
    train_seg.run(_args(dataset_root, tmp_path, "--seg_num_epochs", "1", "--seg_label_source", "gt"))
    first = load_checkpoint(str(tmp_path / "seg.pth"))
    assert first["epoch"] == 1 and first["step"] == 2
    train_seg.run(_args(dataset_root, tmp_path, "--seg_num_epochs", "2", "--seg_label_source", "gt",
                        "--resume", "True"))
    second = load_checkpoint(str(tmp_path / "seg.pth"))
    assert second["epoch"] == 2 and second["step"] == 4
    losses = second["metrics"]["loss_per_epoch"]
    assert len(losses) == 2 and losses[0] == first["metrics"]["loss_per_epoch"][0]  # epoch 1 was not redone
    changed = [k for k in first["state_dict"] if not torch.equal(first["state_dict"][k], second["state_dict"][k])]
    assert changed  # the second epoch trained


def test_train_seg_mixed_without_pixel_list_is_an_error(dataset_root, tmp_path):
    with pytest.raises(ValueError, match="seg_pixel_list"):
        train_seg.run(_args(dataset_root, tmp_path, "--seg_num_epochs", "1", "--seg_label_source", "mixed"))
