"""Self-training labels (misc/relabel.py), worked by hand."""
import numpy as np
import pytest
import torch

from misc.relabel import tag_restricted_label


def _probs():
    # 3 pixels, classes: 0 background, 1 building, 2 road, 3 water
    return torch.tensor([[0.50, 0.10, 0.05],
                         [0.30, 0.20, 0.15],
                         [0.10, 0.60, 0.20],
                         [0.10, 0.10, 0.60]]).reshape(4, 1, 3)


def test_only_tagged_classes_and_background_compete():
    # tags: building and road (keys 0, 1). Pixel 2's water (0.60) is not allowed: road (0.20) beats building (0.15)
    label = tag_restricted_label(_probs(), np.array([0, 1]), has_background=True)
    assert label.tolist() == [[0, 2, 2]]
    # background-free: background cannot win either; pixel 0: building 0.30 > road 0.10
    label = tag_restricted_label(_probs(), np.array([0, 1]), has_background=False)
    assert label.tolist() == [[1, 2, 2]]


def test_confidence_threshold_on_the_renormalised_winner():
    # background-free, tags building + road: pixel 0: 0.30 / 0.40 = 0.75; pixel 1: 0.60 / 0.80 = 0.75;
    # pixel 2: 0.20 / 0.35 = 0.571
    label = tag_restricted_label(_probs(), np.array([0, 1]), has_background=False, conf_thres=0.6)
    assert label.tolist() == [[1, 2, 255]]
    label = tag_restricted_label(_probs(), np.array([0, 1]), has_background=False, conf_thres=0.76)
    assert label.tolist() == [[255, 255, 255]]


def test_untagged_image_and_bad_inputs():
    assert (tag_restricted_label(_probs(), np.array([], np.int64), has_background=False) == 255).all()
    assert (tag_restricted_label(_probs(), np.array([], np.int64), has_background=True) == 0).all()
    with pytest.raises(ValueError, match="outputs"):
        tag_restricted_label(_probs(), np.array([5]), has_background=True)
    with pytest.raises(ValueError, match="confidence"):
        tag_restricted_label(_probs(), np.array([0]), has_background=True, conf_thres=1.0)
