"""Pixel-adaptive refinement: hand-checked properties on tiny tensors, and the refine_cam pass's contract."""
import math

import numpy as np
import pytest
import torch

from misc.par import _neighbours, par_affinity, par_refine


def test_neighbours_by_hand():
    x = torch.arange(9, dtype=torch.float32).view(1, 3, 3)
    near = _neighbours(x, (1,))  # (1, 8, 3, 3)
    # the centre pixel (value 4) sees its 8 neighbours in raster order
    assert near[0, :, 1, 1].tolist() == [0, 1, 2, 3, 5, 6, 7, 8]
    # the corner (value 0) sees replicated borders: up-left, up, up-right, left are itself or its row/column
    assert near[0, :, 0, 0].tolist() == [0, 0, 1, 0, 1, 3, 3, 4]


def test_affinity_sums_to_one_and_prefers_similar_colours():
    image = torch.zeros(3, 5, 5)
    image[:, :, 3:] = 1.0  # a dark left part, a bright right part
    aff = par_affinity(image, dilations=(1,))
    assert torch.allclose(aff.sum(0), torch.ones(5, 5), atol=1e-6)
    # pixel (2, 2) is dark; its right neighbour (2, 3) is bright, its left neighbour (2, 1) dark
    left, right = 3, 4  # indices of (0, -1) and (0, +1) in the neighbour order
    assert aff[left, 2, 2] > 10 * aff[right, 2, 2]


def test_position_term_by_hand():
    # on a flat image the colour term is uniform (1/8 each); the position term weights the 4 axis neighbours
    # (distance 1) above the 4 diagonals (√2): std of [√2,1,√2,1,1,√2,1,√2] = (√2 - 1) / 2 · √(8/7)
    aff = par_affinity(torch.zeros(3, 3, 3), dilations=(1,), w_rgb=0.3, w_pos=0.01)
    d = torch.tensor([math.sqrt(2), 1, math.sqrt(2), 1, 1, math.sqrt(2), 1, math.sqrt(2)])
    pos = (-(d / d.std() / 0.3) ** 2).softmax(0)
    expected = (torch.full((8,), 1 / 8) + 0.01 * pos) / 1.01
    assert torch.allclose(aff[:, 1, 1], expected, atol=1e-6)


def test_refine_keeps_constants_and_pulls_spill_back():
    flat = torch.full((2, 6, 6), 0.7)
    assert torch.allclose(par_refine(torch.rand(3, 6, 6), flat, num_iter=5, dilations=(1, 2)), flat, atol=1e-6)
    image = torch.zeros(3, 8, 8)
    image[:, :, 4:] = 1.0
    cam = torch.zeros(1, 8, 8)
    cam[0, :, :5] = 1.0  # the left object's activation spills one column onto the bright right part
    out = par_refine(image, cam, num_iter=10, dilations=(1, 2))
    assert out[0, :, 4].mean() < 0.5  # the spilled column falls toward its own (bright, inactive) region
    assert out[0, :, :3].mean() > 0.9  # the object's inside stays active
    with pytest.raises(ValueError, match="differ in size"):
        par_refine(image, torch.zeros(1, 4, 4))


def test_refine_cam_pass(tmp_path):
    from misc import artifacts
    from misc.io import load_npz, save_npz
    from step.refine_cam import refine_one

    image = np.zeros((9, 10, 3), np.uint8)
    high = np.random.default_rng(0).uniform(0, 1, (2, 9, 10)).astype(np.float32)
    strided, refined = refine_one(image, np.array([0, 2]), high, num_iter=3, dilations=(1,))
    assert strided.shape == (2, 3, 3) and refined.shape == (2, 9, 10)
    assert np.allclose(refined.reshape(2, -1).max(1), 1.0, atol=1e-4)
    empty = refine_one(image, np.array([], np.int64), np.zeros((0, 9, 10), np.float32), num_iter=3, dilations=(1,))
    assert empty[0].shape == (0, 3, 3) and empty[1].shape == (0, 9, 10)


def test_refine_one_superpixel_pools_inside_regions():
    """--refine_method superpixel: a flat image's SLIC regions are the 4 px grid cells, so each refined map is the
    cell mean of the input (then max-normalised)."""
    from step.refine_cam import refine_one

    image = np.full((8, 8, 3), 120, np.uint8)
    high = np.zeros((1, 8, 8), np.float32)
    high[0, 0, 0] = 1.0  # one hot pixel in the top-left 4 x 4 cell
    high[0, 5, 6] = 0.5  # a weaker one in the bottom-right cell
    _, refined = refine_one(image, np.array([1]), high, num_iter=0, dilations=(1,), method="superpixel",
                            superpixel_size=4)
    expected = np.zeros((8, 8), np.float32)
    expected[:4, :4] = 1.0
    expected[4:, 4:] = 0.5
    assert np.allclose(refined[0], expected, atol=1e-3)  # max_normalize divides by peak + 1e-5
    with pytest.raises(ValueError, match="unknown refine method"):
        refine_one(image, np.array([1]), high, num_iter=0, dilations=(1,), method="crf")
