"""Confusion-matrix metrics against hand-computed values."""
import numpy as np
import pytest

from misc.metrics import confusion_matrix, named_scores, scores_from_confusion


def test_confusion_matrix_by_hand():
    gt = np.array([[0, 0, 1], [1, 1, 255]])
    pred = np.array([[0, 1, 1], [1, 0, 0]])
    conf = confusion_matrix(pred, gt, num_classes=2)
    # gt 0: predicted 0 once, 1 once; gt 1: predicted 1 twice, 0 once; the 255 pixel is skipped
    assert conf.tolist() == [[1, 1], [1, 2]]


def test_iou_precision_recall_by_hand():
    conf = np.array([[1, 1], [1, 2]])
    s = scores_from_confusion(conf)
    # class 0: tp 1, fp 1, fn 1 -> IoU 1/3; class 1: tp 2, fp 1, fn 1 -> IoU 2/4
    assert s["iou"] == pytest.approx([1 / 3, 0.5])
    assert s["miou"] == pytest.approx((1 / 3 + 0.5) / 2)
    assert s["precision"] == pytest.approx([0.5, 2 / 3])
    assert s["recall"] == pytest.approx([0.5, 2 / 3])
    assert s["pixel_accuracy"] == pytest.approx(3 / 5)


def test_absent_class_is_left_out_of_the_mean():
    conf = np.array([[4, 0, 0], [0, 0, 0], [0, 0, 2]])
    s = scores_from_confusion(conf)
    assert np.isnan(s["iou"][1])
    assert s["miou"] == pytest.approx(1.0)
    named = named_scores(s, ["background", "road", "building"])
    assert named["iou"]["road"] is None and named["iou"]["building"] == 1.0


def test_shape_mismatch_and_out_of_range():
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.zeros((2, 2)), np.zeros((2, 3)), 2)
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix(np.full((2, 2), 3), np.zeros((2, 2)), 2)
