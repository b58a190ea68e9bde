"""Dense CRF refinement (misc/crf.py) and the IR label construction of step/cam_to_ir_label.py."""
import numpy as np
import pytest

from misc.crf import crf_inference_label
from step.cam_to_ir_label import combine_confident, confident_label, make_ir_label


def test_crf_on_flat_image_keeps_uniform_labels():
    image = np.full((24, 20, 3), 120, np.uint8)
    for value in range(3):
        labels = np.full((24, 20), value)
        out = crf_inference_label(image, labels, n_labels=3)
        assert out.dtype == np.int64 and out.shape == (24, 20)
        assert (out == value).all()


def test_crf_keeps_labels_that_follow_flat_colour_regions():
    image = np.zeros((32, 32, 3), np.uint8)
    image[:, 16:] = 200  # two flat halves
    labels = np.zeros((32, 32), np.int64)
    labels[:, 16:] = 1
    assert (crf_inference_label(image, labels, n_labels=2) == labels).all()


def test_crf_removes_an_isolated_pixel_on_a_flat_image():
    image = np.full((32, 32, 3), 90, np.uint8)
    labels = np.zeros((32, 32), np.int64)
    labels[16, 16] = 1
    assert (crf_inference_label(image, labels, n_labels=2) == 0).all()


def test_crf_rejects_labels_out_of_range():
    with pytest.raises(ValueError, match="labels must lie"):
        crf_inference_label(np.zeros((4, 4, 3), np.uint8), np.full((4, 4), 2), n_labels=2)


def test_confident_label_ties_go_to_background():
    high = np.array([[[0.5, 0.51, 0.2, 0.9]], [[0.4, 0.1, 0.5, 0.95]]], np.float32)  # 2 classes, 1x4 image
    # threshold 0.5: 0.5 is not above it (background wins the tie); 0.51 → class 1; 0.2/0.5 → bg; 0.95 → class 2
    assert confident_label(high, np.array([0, 3]), 0.5).tolist() == [[0, 1, 0, 2]]


def test_combine_confident_by_hand():
    fg = np.array([[1, 0, 0, 2]])
    bg = np.array([[1, 1, 0, 0]])
    # class where fg says so; 0 only where both say background; unsure where only the low threshold sees a class
    assert combine_confident(fg, bg).tolist() == [[1, 255, 0, 2]]


def test_ir_label_at_the_thresholds_without_crf():
    high = np.array([[[0.6, 0.5, 0.45, 0.4, 0.1]]], np.float32)  # one class (key 0 → label 1), 1x5 image
    image = np.zeros((1, 5, 3), np.uint8)
    label = make_ir_label(image, high, np.array([0]), conf_fg_thres=0.5, conf_bg_thres=0.4, use_crf=False)
    # > fg → 1; == fg → unsure; between → unsure; == bg → background; below → background
    assert label.dtype == np.uint8 and label.tolist() == [[1, 255, 255, 0, 0]]


def test_ir_label_with_crf_snaps_to_the_colour_edge():
    image = np.full((16, 16, 3), 220, np.uint8)
    image[:, :8] = 30  # dark roof on the left, bright ground on the right
    high = np.zeros((1, 16, 16), np.float32)
    high[0, :, :10] = 0.9  # the CAM spills two columns over the roof edge
    label = make_ir_label(image, high, np.array([0]), conf_fg_thres=0.5, conf_bg_thres=0.4)
    assert label.shape == (16, 16) and label.dtype == np.uint8
    assert (label[:, :8] == 1).all() and (label[:, 8:] == 0).all()
    # without the CRF the spill stays
    raw = make_ir_label(image, high, np.array([0]), conf_fg_thres=0.5, conf_bg_thres=0.4, use_crf=False)
    assert (raw[:, 8:10] == 1).all()


def test_ir_label_without_present_class_is_background():
    label = make_ir_label(np.zeros((3, 4, 3), np.uint8), np.zeros((0, 3, 4), np.float32), np.zeros(0, np.int64),
                          conf_fg_thres=0.5, conf_bg_thres=0.4)
    assert label.tolist() == [[0] * 4] * 3


def test_ir_label_rejects_swapped_thresholds():
    with pytest.raises(ValueError, match="conf_bg_thres"):
        make_ir_label(np.zeros((2, 2, 3), np.uint8), np.zeros((1, 2, 2), np.float32), np.array([0]),
                      conf_fg_thres=0.3, conf_bg_thres=0.5)
