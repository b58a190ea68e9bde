"""bench/bench_official.py's pure helpers, by hand (the official code itself is not needed here)."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from bench_official import cam_difference, drop_last_iterate, max_normalised, torchvision_state_dict  # noqa: E402


def test_drop_last_iterate_sums_x0_to_x_t_minus_1_per_scale():
    # T = 2, two scales: forwards a0 a1 a2 | b0 b1 b2; the official code accumulates a0 + a1 and b0 + b1
    a = [torch.full((1, 2, 2), v) for v in (1.0, 2.0, 4.0)]
    b = [torch.full((1, 3, 3), v) for v in (10.0, 20.0, 40.0)]
    sums = drop_last_iterate(a + b, adv_iter=2)
    assert len(sums) == 2
    assert torch.equal(sums[0], torch.full((1, 2, 2), 3.0))
    assert torch.equal(sums[1], torch.full((1, 3, 3), 30.0))
    with pytest.raises(ValueError):
        drop_last_iterate(a + b[:2], adv_iter=2)  # 5 forwards is no whole number of 3-forward climbs


def test_cam_difference_by_hand():
    ours = np.array([[[0.0, 0.5], [1.0, 0.1]]])
    official = np.array([[[0.0, 0.2], [1.0, 0.1]]])
    d = cam_difference(ours, official, threshold=0.3)
    assert d["max_abs_diff"] == pytest.approx(0.3)
    assert d["label_agreement"] == pytest.approx(3 / 4)  # only the 0.5 / 0.2 pixel changes side of 0.3
    with pytest.raises(ValueError):
        cam_difference(ours, official[:, :1], 0.3)


def test_max_normalised_peaks_at_one_per_map():
    maps = np.array([[[1.0, 4.0]], [[0.5, 0.25]]])
    out = max_normalised(maps, eps=0.0)
    assert np.allclose(out, [[[0.25, 1.0]], [[1.0, 0.5]]])


def test_torchvision_state_dict_keys():
    """Our ResNet-50 already has torchvision's names; the file adds fc.* (IRN's loader pops both)."""
    from net.backbones import build_backbone

    state = build_backbone("resnet50", pretrained=None).state_dict()
    fc_w, fc_b = torch.zeros(1000, 2048), torch.zeros(1000)
    out = torchvision_state_dict({**state, "fc.weight": torch.ones(1)}, fc_w, fc_b)
    for key in ("conv1.weight", "bn1.running_var", "layer1.0.downsample.1.weight", "layer4.2.bn3.running_mean",
                "layer3.5.conv2.weight"):
        assert key in out
    assert set(out) == set(state) | {"fc.weight", "fc.bias"}
    assert out["fc.weight"] is fc_w and out["fc.bias"] is fc_b  # the given head, not the stale one
    assert out["layer4.2.conv3.weight"].shape == (2048, 512, 1, 1)
