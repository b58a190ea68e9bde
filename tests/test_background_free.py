"""Land-cover mode on background-free data: argmax labels, the IR labels' "unsure" margin, the palettes' background.

Hand-worked expected values; the K = 3 pass contract is in test_pipeline_contract_landcover.py.
"""
import json

import numpy as np
import pytest
import torch

from data.labels import background_free
from data.palettes import decode_mask, is_background_free, load_palette, resolve_fg_classes
from misc.cam import cams_to_label
from misc.random_walk import label_from_random_walk
from step.cam_to_ir_label import make_ir_label_background_free


def test_margin_ir_label_by_hand():
    # two present classes (0-based keys 1 and 3 → labels 2 and 4), three pixels in a row
    cams = np.array([[[0.9, 0.50, 0.1]],
                     [[0.2, 0.45, 0.8]]], np.float32)  # (k=2, H=1, W=3)
    image = np.zeros((1, 3, 3), np.uint8)
    label = make_ir_label_background_free(image, cams, np.array([1, 3]), conf_margin=0.2, use_crf=False)
    # pixel 0: 0.9 - 0.2 = 0.7 >= 0.2 → class 2; pixel 1: 0.50 - 0.45 = 0.05 < 0.2 → unsure; pixel 2: 0.8 - 0.1 → 4
    assert label.tolist() == [[2, 255, 4]]
    # a margin of 0 makes every pixel confident; a margin of 0.75 leaves only nothing (0.7 is the widest)
    assert make_ir_label_background_free(image, cams, np.array([1, 3]), conf_margin=0.0,
                                         use_crf=False).tolist() == [[2, 2, 4]]
    assert (make_ir_label_background_free(image, cams, np.array([1, 3]), conf_margin=0.75,
                                          use_crf=False) == 255).all()


def test_margin_ir_label_uses_the_two_best_of_three():
    cams = np.array([[[0.75]], [[0.5]], [[0.125]]], np.float32)  # best 0.75, second 0.5: margin 0.25 (exact)
    image = np.zeros((1, 1, 3), np.uint8)
    keys = np.array([0, 1, 2])
    assert make_ir_label_background_free(image, cams, keys, conf_margin=0.25, use_crf=False).item() == 1
    assert make_ir_label_background_free(image, cams, keys, conf_margin=0.26, use_crf=False).item() == 255


def test_margin_ir_label_on_mean_scaled_scores_by_hand():
    """With --class_scale mean the margin is taken on the scores the argmax compares, brought back into [0, 1]."""
    # class a: one strong peak (mean 0.4); class b: broad (mean 0.6)
    cams = np.array([[[1.0, 0.1, 0.1]],
                     [[0.6, 0.6, 0.6]]], np.float32)
    image = np.zeros((1, 3, 3), np.uint8)
    keys = np.array([0, 1])
    # mean-scaled: a = 1/0.4 = 2.5, 0.25, 0.25; b = 1, 1, 1; divided by the largest (2.5): a = 1, 0.1, 0.1, b = 0.4
    # margins: 0.6 (a wins), 0.3, 0.3 (b wins). With max scaling pixel 0 would be a by only 0.4.
    label = make_ir_label_background_free(image, cams, keys, conf_margin=0.5, class_scale="mean", use_crf=False)
    assert label.tolist() == [[1, 255, 255]]
    label = make_ir_label_background_free(image, cams, keys, conf_margin=0.25, class_scale="mean", use_crf=False)
    assert label.tolist() == [[1, 2, 2]]
    assert make_ir_label_background_free(image, cams, keys, conf_margin=0.5, class_scale="max",
                                         use_crf=False).tolist() == [[255, 2, 2]]


def test_comparable_scores_keep_the_argmax():
    from misc.cam import comparable_scores, scale_classes
    rng = np.random.default_rng(1)
    maps = rng.uniform(0, 1, (3, 5, 7)).astype(np.float32)
    scored = comparable_scores(maps, "mean")
    assert scored.max() == pytest.approx(1.0) and scored.min() >= 0
    assert (scored.argmax(0) == scale_classes(maps, "mean").argmax(0)).all()
    assert np.array_equal(comparable_scores(maps, "max"), maps)


def test_margin_ir_label_single_and_no_class():
    image = np.zeros((2, 2, 3), np.uint8)
    one = make_ir_label_background_free(image, np.full((1, 2, 2), 0.01, np.float32), np.array([2]), conf_margin=0.5)
    assert (one == 3).all()  # the only tag of the image: every pixel is that class, however faint its CAM
    none = make_ir_label_background_free(image, np.zeros((0, 2, 2), np.float32), np.array([], np.int64),
                                         conf_margin=0.5)
    assert (none == 255).all()  # no tag: nothing is known, and there is no background to fall back on
    with pytest.raises(ValueError, match="conf_margin"):
        make_ir_label_background_free(image, np.zeros((1, 2, 2), np.float32), np.array([0]), conf_margin=1.5)


def test_margin_ir_label_crf_disagreement_is_unsure():
    """Where the CRF moves a pixel to another class, the pixel is unsure even with a wide margin."""
    rng = np.random.default_rng(0)
    image = np.zeros((16, 16, 3), np.uint8)
    image[:, 8:] = 255  # two flat halves
    cams = np.zeros((2, 16, 16), np.float32)
    cams[0, :, :9] = 1.0  # class 0 spills one column into the white half
    cams[1, :, 9:] = 1.0
    cams += rng.uniform(0, 0.01, cams.shape).astype(np.float32)
    label = make_ir_label_background_free(image, cams, np.array([0, 1]), conf_margin=0.5)
    assert (label[:, :8] == 1).all() and (label[:, 9:] == 2).all()
    assert set(np.unique(label)) <= {1, 2, 255}


def test_cam_argmax_without_background():
    cams = np.array([[[0.05, 0.3]], [[0.01, 0.9]]], np.float32)
    # with a threshold, a pixel whose CAMs are all weak is background; without one the best class wins anyway
    assert cams_to_label(cams, np.array([0, 2]), 0.1).tolist() == [[0, 3]]
    assert cams_to_label(cams, np.array([0, 2]), float("-inf")).tolist() == [[1, 3]]


def test_walk_label_without_background():
    walked = torch.tensor([[[0.02, 0.02], [0.02, 0.02]], [[0.01, 0.03], [0.01, 0.03]]])  # (2, 2, 2), stride 1
    keys = np.array([0, 1])
    thresholded = label_from_random_walk(walked, keys, (2, 2), bg_threshold=0.5, stride=1, normalize=False)
    assert (thresholded == 0).all()
    free = label_from_random_walk(walked, keys, (2, 2), bg_threshold=float("-inf"), stride=1, normalize=False)
    assert free.tolist() == [[1, 2], [1, 2]]


def test_palettes_background():
    dubai = load_palette("dubai")
    assert resolve_fg_classes(dubai, ["all"]) == ["building", "land", "road", "vegetation", "water"]
    assert is_background_free(dubai, resolve_fg_classes(dubai, ["all"]))
    assert not is_background_free(dubai, ["building"])
    isprs = load_palette("isprs")
    fg = resolve_fg_classes(isprs, ["all"])
    assert fg == ["impervious_surfaces", "building", "low_vegetation", "tree", "car"]  # clutter stays background
    assert not is_background_free(isprs, fg)
    red = np.zeros((1, 2, 3), np.uint8)
    red[0, 0] = (255, 0, 0)  # clutter
    red[0, 1] = (0, 0, 255)  # building
    label, _ = decode_mask(red, isprs, ["all"])
    assert label.tolist() == [[0, 2]]
    binary = load_palette("binary")
    assert resolve_fg_classes(binary, ["all"]) == ["building"]
    assert not is_background_free(binary, ["building"])


def test_background_mode_resolution(tmp_path):
    assert background_free(str(tmp_path), "none") and not background_free(str(tmp_path), "threshold")
    assert not background_free(str(tmp_path), "auto")  # no classes.json: IRN's threshold
    (tmp_path / "classes.json").write_text(json.dumps({"classes": ["background", "a", "b"],
                                                       "background_free": True}))
    assert background_free(str(tmp_path), "auto")
    assert not background_free(str(tmp_path), "threshold")
    with pytest.raises(ValueError, match="--background"):
        background_free(str(tmp_path), "maybe")


def test_mean_class_scale_by_hand():
    from misc.cam import scale_classes

    # a peaky class (1 at one pixel, 0.1 elsewhere: mean 0.325) against a broad one (0.5 everywhere: mean 0.5)
    peaky = np.array([[1.0, 0.1], [0.1, 0.1]], np.float32)
    broad = np.full((2, 2), 0.5, np.float32)
    maps = np.stack([peaky, broad])
    keys = np.array([0, 1])
    assert cams_to_label(maps, keys, float("-inf")).tolist() == [[1, 2], [2, 2]]  # max: broad wins 3 pixels
    scaled = scale_classes(maps, "mean")
    assert scaled[0, 0, 0] == pytest.approx(1.0 / 0.325, rel=1e-4) and scaled[1, 0, 0] == pytest.approx(1.0, rel=1e-4)
    torch_scaled = scale_classes(torch.from_numpy(maps), "mean")
    assert torch.allclose(torch_scaled, torch.from_numpy(scaled))
    with pytest.raises(ValueError, match="class scale"):
        scale_classes(maps, "median")


def test_mean_class_scale_changes_the_argmax():
    from misc.cam import scale_classes

    a = np.array([[0.9, 0.6, 0.05, 0.05]], np.float32)  # peaky: mean 0.4
    b = np.array([[1.0, 0.8, 0.8, 0.8]], np.float32)  # broad: mean 0.85
    maps = np.stack([a, b])  # (2, 1, 4)
    keys = np.array([0, 1])
    assert cams_to_label(maps, keys, float("-inf")).tolist() == [[2, 2, 2, 2]]  # as written, the broad class wins
    # divided by the means: a → 2.25, 1.5, 0.125, 0.125; b → 1.18, 0.94, 0.94, 0.94
    assert cams_to_label(scale_classes(maps, "mean"), keys, float("-inf")).tolist() == [[1, 1, 2, 2]]
