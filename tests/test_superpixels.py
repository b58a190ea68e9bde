"""SLIC superpixels and superpixel pooling (misc/superpixels.py), on hand-made images."""
from __future__ import annotations

import numpy as np
import pytest

from misc.superpixels import slic, superpixel_pool


def two_colour_image(h=16, w=16, split=7):
    image = np.zeros((h, w, 3), np.uint8)
    image[:, :split] = (200, 30, 30)
    image[:, split:] = (30, 30, 200)
    return image


def test_slic_regions_never_cross_a_strong_colour_edge():
    # the edge at column 7 is not on the 8 px seed grid; colour outweighs position at compactness 1
    labels = slic(two_colour_image(), size=8, compactness=1.0, num_iter=5)
    assert labels.shape == (16, 16) and labels.dtype == np.int64
    left, right = set(labels[:, :7].ravel()), set(labels[:, 7:].ravel())
    assert left.isdisjoint(right)
    assert labels.min() >= 0 and labels.max() < 4  # 2 x 2 seeds


def test_slic_on_a_flat_image_is_the_seed_grid():
    labels = slic(np.full((16, 16, 3), 90, np.uint8), size=8, compactness=10.0)
    expected = (np.arange(16)[:, None] // 8) * 2 + np.arange(16)[None, :] // 8
    assert np.array_equal(labels, expected)


def test_pooling_averages_inside_each_region_and_keeps_the_mean():
    labels = np.array([[0, 0, 1], [0, 2, 1]])
    maps = np.array([[[3.0, 0.0, 4.0], [0.0, 5.0, 2.0]]])  # (1, 2, 3)
    pooled = superpixel_pool(maps, labels)
    assert np.allclose(pooled[0], [[1.0, 1.0, 3.0], [1.0, 5.0, 3.0]])
    assert np.isclose(pooled.mean(), maps.mean())


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="uint8"):
        slic(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="differ in size"):
        superpixel_pool(np.zeros((1, 4, 4)), np.zeros((4, 5), np.int64))
