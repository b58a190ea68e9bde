"""CAM normalisation, fusion and background thresholding."""
import numpy as np
import pytest
import torch

from misc.cam import cams_to_label, fuse_scales, max_normalize


def test_max_normalized_cam_peaks_at_one():
    cams = torch.rand(3, 7, 9) * torch.tensor([0.5, 4.0, 100.0])[:, None, None]
    out = max_normalize(cams)
    assert out.flatten(1).max(dim=1)[0] == pytest.approx([1.0, 1.0, 1.0], abs=1e-4)
    assert out.min() >= 0


def test_zero_cam_stays_zero():
    out = max_normalize(torch.zeros(1, 4, 4))
    assert torch.count_nonzero(out) == 0 and torch.isfinite(out).all()


def test_fuse_scales_sums_resized_maps():
    a = torch.ones(1, 2, 2)
    b = 2 * torch.ones(1, 4, 4)
    assert torch.allclose(fuse_scales([a, b], (4, 4)), 3 * torch.ones(1, 4, 4))


def test_cams_to_label_threshold_and_keys():
    high = np.array([[[0.1, 0.6], [0.9, 0.2]], [[0.2, 0.7], [0.1, 0.3]]], np.float32)
    label = cams_to_label(high, keys=np.array([0, 2]), bg_threshold=0.5)
    # top-left below the threshold -> background; top-right: class key 2 (0.7) wins -> 3; bottom-left key 0 -> 1
    assert label.tolist() == [[0, 3], [1, 0]]
    assert cams_to_label(high[:0], keys=np.array([], np.int64), bg_threshold=0.5).tolist() == [[0, 0], [0, 0]]
