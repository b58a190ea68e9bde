"""Semi-supervised training: confident pseudo labels, the S4GAN discriminator gate, and the train_semi pass. CPU, tiny."""
from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from misc.cli import build_parser, enabled_passes
from misc.semi import (confident_pseudo_labels, discriminator_gate, ema_decay_at, ema_update, feature_matching_loss,
                       gated_pseudo_labels, one_hot_labels)
from misc.torchutils import load_checkpoint
from net.discriminator import S4GANDiscriminator
from step import eval_seg, train_semi
from net.zoo import load_model


class FixedLogits(nn.Module):
    """A stand-in network that predicts the same logits (K, H, W) for every image."""

    def __init__(self, logits: torch.Tensor, learnable: bool = False):
        super().__init__()
        self.logits = nn.Parameter(logits.clone(), requires_grad=learnable)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(len(images), *self.logits.shape)


# --------------------------------------------------------------------------------------------------------------------
# Pseudo labels and the discriminator gate
# --------------------------------------------------------------------------------------------------------------------


def test_pixels_below_the_confidence_threshold_are_ignored():
    # 2 classes, 1x4 pixels: softmax of (z, 0) is sigmoid(z) for class 0
    logits = torch.tensor([[[3.0, 1.0, -3.0, 0.0]], [[0.0, 0.0, 0.0, 0.0]]])[None]  # (1, 2, 1, 4)
    probs = torch.softmax(logits, dim=1)  # class-0 probability 0.953, 0.731, 0.047, 0.5
    labels = confident_pseudo_labels(probs, threshold=0.9)
    assert labels.tolist() == [[[0, 255, 1, 255]]]
    valid = torch.tensor([[[False, True, True, True]]])
    assert confident_pseudo_labels(probs, threshold=0.9, valid=valid).tolist() == [[[255, 255, 1, 255]]]
    assert confident_pseudo_labels(probs, threshold=0.5).tolist() == [[[0, 0, 1, 0]]]  # ties go to class 0


def test_class_balanced_pseudo_labels_keep_the_most_confident_part_of_a_rare_class():
    # 8 background pixels, all confident (0.95..0.99); 4 building pixels, none above the global 0.9
    p_bg = torch.tensor([0.95, 0.96, 0.97, 0.98, 0.99, 0.95, 0.96, 0.97, 0.2, 0.3, 0.35, 0.4])
    probs = torch.stack([p_bg, 1 - p_bg])[None, :, None, :]  # (1, 2, 1, 12); building confidences 0.8, 0.7, 0.65, 0.6
    assert confident_pseudo_labels(probs, 0.9).tolist() == [[[0] * 8 + [255] * 4]]  # global: the buildings vanish
    balanced = confident_pseudo_labels(probs, 0.9, class_portion=0.5)[0, 0].tolist()
    assert balanced[:8] == [0] * 8  # background: its own 0.5 quantile is above 0.9, so the global 0.9 applies
    assert balanced[8:] == [1, 1, 255, 255]  # building: the more confident half (0.8, 0.7) is kept
    # padding stays 255 and takes no part in the quantiles: the building median is then that of 0.7, 0.65, 0.6
    # (with the padded 0.8 counted it would be 0.675 and drop the 0.65 pixel)
    valid = torch.ones(1, 1, 12, dtype=torch.bool)
    valid[0, 0, 8] = False
    assert confident_pseudo_labels(probs, 0.9, valid=valid, class_portion=0.5)[0, 0, 8:].tolist() == [255, 1, 1, 255]
    with pytest.raises(ValueError, match="class_portion"):
        confident_pseudo_labels(probs, 0.9, class_portion=1.5)


def test_self_training_unlabelled_loss_is_cross_entropy_over_the_confident_teacher_pixels_only():
    teacher_logits = torch.tensor([[[4.0, 0.2]], [[0.0, 0.0]]])  # (K=2, 1, 2): pixel 0 confident (0.98), 1 not (0.55)
    student_logits = torch.tensor([[[0.5, -1.0]], [[1.5, 2.0]]])
    teacher, student = FixedLogits(teacher_logits), FixedLogits(student_logits, learnable=True)
    images_l = torch.zeros(1, 3, 1, 2)
    labels_l = torch.tensor([[[1, 255]]])
    out = train_semi.self_training_losses(student, teacher, images_l, labels_l, torch.zeros(1, 3, 1, 2),
                                          torch.ones(1, 1, 2, dtype=torch.bool), conf_thres=0.9)
    # only pixel 0 is pseudo-labelled (class 0): CE = -log softmax(0.5, 1.5)[0]
    expected = -F.log_softmax(torch.tensor([0.5, 1.5]), dim=0)[0]
    assert out["unsup"].item() == pytest.approx(expected.item(), abs=1e-6)
    assert out["pseudo_pixels"] == 1 and out["valid_pixels"] == 2
    assert out["sup"].item() == pytest.approx(-F.log_softmax(torch.tensor([0.5, 1.5]), dim=0)[1].item(), abs=1e-6)
    out["unsup"].backward()
    assert student.logits.grad[:, 0, 1].abs().sum() == 0  # the ignored pixel gets no gradient
    # a threshold above every teacher pixel leaves nothing to learn from the unlabelled tile: loss 0, not NaN
    none = train_semi.self_training_losses(student, teacher, images_l, labels_l, torch.zeros(1, 3, 1, 2),
                                           torch.ones(1, 1, 2, dtype=torch.bool), conf_thres=0.999)
    assert none["unsup"].item() == 0.0 and none["pseudo_pixels"] == 0


def test_discriminator_gate_accepts_whole_tiles_above_the_threshold():
    probs = torch.softmax(torch.tensor([[[[2.0, -1.0]], [[0.0, 0.0]]], [[[2.0, -1.0]], [[0.0, 0.0]]]]), dim=1)
    confidence = torch.tensor([0.9, 0.3])  # (B=2,)
    assert discriminator_gate(torch.tensor([0.61, 0.6, 0.2]), 0.6).tolist() == [True, False, False]
    labels = gated_pseudo_labels(probs, confidence, threshold=0.6)
    assert labels.tolist() == [[[0, 1]], [[255, 255]]]  # tile 0: the full argmax, even the hesitant pixel


def _disc_with_confidence(confidence: float, num_classes: int = 2) -> S4GANDiscriminator:
    """A discriminator whose output ignores its input: fc weight 0, bias logit(confidence)."""
    disc = S4GANDiscriminator(num_classes, base_channels=4)
    with torch.no_grad():
        disc.fc.weight.zero_()
        disc.fc.bias.fill_(math.log(confidence / (1 - confidence)))
    return disc


@pytest.mark.parametrize("confidence, accepted", [(0.8, 3), (0.4, 0)])
def test_s4gan_losses_use_a_tile_only_when_the_discriminator_accepts_it(confidence, accepted):
    torch.manual_seed(0)
    student = nn.Conv2d(3, 2, kernel_size=1)
    disc = _disc_with_confidence(confidence)
    images_l, labels_l = torch.rand(2, 3, 16, 16), torch.randint(0, 2, (2, 16, 16))
    images_u, valid_u = torch.rand(3, 3, 16, 16), torch.ones(3, 16, 16, dtype=torch.bool)
    out = train_semi.s4gan_losses(student, disc, images_l, labels_l, images_u, valid_u, disc_thres=0.6)
    assert out["accepted"] == accepted
    assert out["pseudo_pixels"] == (3 * 16 * 16 if accepted else 0)
    if accepted:  # the pseudo label is the student's own argmax: CE against it
        logits_u = student(images_u)
        expected = F.cross_entropy(logits_u, logits_u.argmax(1))
        assert out["unsup"].item() == pytest.approx(expected.item(), rel=1e-5)
    else:
        assert out["unsup"].item() == 0.0
    assert out["probs_u"].shape == (3, 2, 16, 16) and not out["probs_u"].requires_grad
    # the generator step does not train the discriminator, but its features pass gradient to the student
    (out["sup"] + out["unsup"] + out["fm"]).backward()
    assert all(p.grad is None for p in disc.parameters()) and all(p.requires_grad for p in disc.parameters())
    assert student.weight.grad is not None and student.weight.grad.abs().sum() > 0


def test_discriminator_shapes_and_a_few_steps_separate_ground_truth_from_predictions():
    torch.manual_seed(0)
    disc = S4GANDiscriminator(num_classes=2, base_channels=4, dropout=0.0)
    images = torch.rand(4, 3, 32, 32)
    labels = (images[:, 0] > 0.5).long()  # (4, 32, 32)
    logits, features = disc(images, one_hot_labels(labels, 2))
    assert logits.shape == (4,) and features.shape == (4, 32)
    fake = torch.full((4, 2, 32, 32), 0.5)  # hesitant predictions
    optimizer = torch.optim.Adam(disc.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss = train_semi.discriminator_loss(disc, images, labels, images, fake)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    with torch.no_grad():
        real_conf = torch.sigmoid(disc(images, one_hot_labels(labels, 2))[0])
        fake_conf = torch.sigmoid(disc(images, fake)[0])
    assert (real_conf > 0.6).all() and (fake_conf < 0.6).all()


def test_one_hot_feature_matching_and_ema_by_hand():
    one_hot = one_hot_labels(torch.tensor([[[0, 1, 255]]]), 2)  # (1, 2, 1, 3)
    assert one_hot[0, :, 0].tolist() == [[1, 0, 0], [0, 1, 0]]  # the ignored pixel is all zero
    real, fake = torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([[0.0, 0.0]])
    assert feature_matching_loss(real, fake).item() == pytest.approx((2 + 3) / 2)
    teacher, student = nn.Linear(1, 1), nn.Linear(1, 1)
    with torch.no_grad():
        teacher.weight.fill_(1.0)
        student.weight.fill_(3.0)
    ema_update(teacher, student, 0.75)
    assert teacher.weight.item() == pytest.approx(0.75 * 1 + 0.25 * 3)
    ema_update(teacher, student, 0.0)
    assert teacher.weight.item() == 3.0
    assert [ema_decay_at(k, 0.99) for k in (0, 1, 3, 1000)] == pytest.approx([0.0, 0.5, 0.75, 0.99])
    with pytest.raises(ValueError, match="decay"):
        ema_update(teacher, student, 1.0)


def test_unlabelled_tiles_default_to_the_train_list_minus_the_labelled_ones():
    assert train_semi.split_names(["b"], None, ["a", "b", "c"]) == (["b"], ["a", "c"])
    assert train_semi.split_names(["b"], ["b", "d"], None) == (["b"], ["d"])
    with pytest.raises(ValueError, match="no unlabelled"):
        train_semi.split_names(["a"], None, ["a"])
    args = build_parser().parse_args(["--train_seg_pass", "--train_semi_pass", "--eval_seg_pass"])
    assert enabled_passes(args) == ["train_seg", "train_semi", "eval_seg"]
    assert args.semi_conf_thres == 0.9 and args.s4gan_disc_thres == 0.6 and args.semi_method == "self_training"


# --------------------------------------------------------------------------------------------------------------------
# The pass on a tiny fixture
# --------------------------------------------------------------------------------------------------------------------

NAMES = ["t0", "t1", "t2", "t3", "t4", "t5"]
CLASSES = ["background", "building"]


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory):
    """6 tiles 40x40: red roofs (class 1) on dark noisy ground; t1 and t4 are the labelled ones."""
    root = tmp_path_factory.mktemp("semi_data")
    for sub in ("JPEGImages", "SegmentationClassAug"):
        (root / sub).mkdir()
    rng = np.random.default_rng(0)
    for i, name in enumerate(NAMES):
        image = rng.integers(20, 70, size=(40, 40, 3)).astype(np.uint8)
        gt = np.zeros((40, 40), np.uint8)
        top, left = 3 + 4 * i, 22 - 3 * i
        gt[top:top + 15, left:left + 12] = 1
        image[gt == 1] = (220, 60, 50)
        cv2.imwrite(str(root / "JPEGImages" / f"{name}.png"), image[..., ::-1])
        cv2.imwrite(str(root / "SegmentationClassAug" / f"{name}.png"), gt)
    (root / "classes.json").write_text(json.dumps({"classes": CLASSES}))
    (root / "train.txt").write_text("\n".join(NAMES) + "\n")
    (root / "labeled.txt").write_text("t1\nt4\n")
    return root


def _args(root, tmp_path, *extra):
    return build_parser().parse_args([
        "--device", "cpu", "--voc12_root", str(root), "--train_list", str(root / "train.txt"),
        "--semi_labeled_list", str(root / "labeled.txt"), "--semi_weights_name", str(tmp_path / "semi.pth"),
        "--seg_weights_name", str(tmp_path / "semi.pth"), "--seg_out_dir", str(tmp_path / "seg_out"),
        "--seg_crop_size", "32", "--seg_batch_size", "2", "--seg_learning_rate", "0.01", "--pretrained", "none",
        "--seg_head_channels", "16", *extra])


def test_self_training_lowers_the_loss_and_writes_a_checkpoint_eval_seg_loads(dataset_root, tmp_path):
    torch.manual_seed(0)
    train_semi.run(_args(dataset_root, tmp_path, "--semi_num_epochs", "6", "--semi_warmup_epochs", "2",
                         "--semi_conf_thres", "0.6"))
    ckpt = load_checkpoint(str(tmp_path / "semi.pth"))
    assert ckpt["kind"] == "seg" and ckpt["num_classes"] == 2 and ckpt["class_names"] == CLASSES
    assert ckpt["label_source"] == "semi_self_training" and ckpt["semi"]["num_unlabeled"] == 4
    assert ckpt["epoch"] == 6 and ckpt["step"] == 6 * 2  # 4 unlabelled tiles / batch 2
    assert set(ckpt["teacher_state_dict"]) == set(ckpt["state_dict"])
    sup = ckpt["metrics"]["loss_sup_per_epoch"]
    assert len(sup) == 6 and all(np.isfinite(sup))
    assert np.mean(sup[-2:]) < 0.8 * np.mean(sup[:2]), sup
    assert ckpt["metrics"]["unsup_weight"] == 1.0 and ckpt["metrics"]["pseudo_pixel_fraction"] > 0

    eval_seg.run(_args(dataset_root, tmp_path, "--seg_val_list", str(dataset_root / "train.txt"),
                       "--predict_window", "32", "--predict_overlap", "8", "--seg_num_overlays", "1"))
    result = json.loads((tmp_path / "seg_out" / "eval_seg.json").read_text())
    assert result["num_images"] == 6 and 0 <= result["miou"] <= 1 and set(result["iou"]) == set(CLASSES)


def test_s4gan_trains_the_discriminator_and_resumes(dataset_root, tmp_path):
    torch.manual_seed(0)
    extra = ("--semi_method", "s4gan", "--semi_warmup_epochs", "0", "--s4gan_disc_channels", "4")
    train_semi.run(_args(dataset_root, tmp_path, "--semi_num_epochs", "1", *extra))
    first = load_checkpoint(str(tmp_path / "semi.pth"))
    assert first["label_source"] == "semi_s4gan" and first["epoch"] == 1 and first["step"] == 2
    assert "discriminator" in first and "teacher_state_dict" not in first
    assert 0 <= first["metrics"]["accepted_tile_fraction"] <= 1 and np.isfinite(first["metrics"]["loss_disc"])
    train_semi.run(_args(dataset_root, tmp_path, "--semi_num_epochs", "2", "--resume", "True", *extra))
    second = load_checkpoint(str(tmp_path / "semi.pth"))
    assert second["epoch"] == 2 and second["step"] == 4
    assert second["metrics"]["loss_per_epoch"][0] == first["metrics"]["loss_per_epoch"][0]  # epoch 1 not redone
    assert any(not torch.equal(first["discriminator"][k], second["discriminator"][k]) for k in first["discriminator"])
    model, _ = load_model(str(tmp_path / "semi.pth"), "seg")
    assert model(torch.rand(1, 3, 32, 32)).shape == (1, 2, 32, 32)


def test_self_training_resumed_run_equals_an_uninterrupted_one(dataset_root, tmp_path, monkeypatch):
    extra = ("--semi_num_epochs", "2", "--semi_warmup_epochs", "1", "--semi_conf_thres", "0.6")
    torch.manual_seed(0)
    train_semi.run(_args(dataset_root, tmp_path / "straight", *extra))

    real_save = train_semi.save_model

    def save_then_die(*args, **kwargs):  # the run is killed right after its first checkpoint
        real_save(*args, **kwargs)
        raise KeyboardInterrupt

    torch.manual_seed(0)
    monkeypatch.setattr(train_semi, "save_model", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_semi.run(_args(dataset_root, tmp_path / "resumed", *extra))
    monkeypatch.setattr(train_semi, "save_model", real_save)
    assert load_checkpoint(str(tmp_path / "resumed" / "semi.pth"))["epoch"] == 1
    train_semi.run(_args(dataset_root, tmp_path / "resumed", "--resume", "True", *extra))
    straight = load_checkpoint(str(tmp_path / "straight" / "semi.pth"))
    resumed = load_checkpoint(str(tmp_path / "resumed" / "semi.pth"))
    assert resumed["step"] == straight["step"] == 4
    for key in ("state_dict", "teacher_state_dict"):
        for name, value in straight[key].items():
            assert torch.allclose(value, resumed[key][name], atol=1e-6), (key, name)


def test_train_semi_without_a_labelled_list_is_an_error(dataset_root, tmp_path):
    args = _args(dataset_root, tmp_path)
    args.semi_labeled_list = None
    with pytest.raises(ValueError, match="semi_labeled_list"):
        train_semi.run(args)
