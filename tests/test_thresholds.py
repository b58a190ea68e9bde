"""Label-free thresholds: Otsu's cut and the IR-label rule worked by hand, and the pick_thresholds pass."""
import json

import numpy as np
import pytest

from misc.thresholds import ir_thresholds, otsu_from_histogram, score_histogram, side_means


def test_otsu_by_hand():
    # two spikes: 60 values at 0.1 and 40 at 0.7 (bins of 0.1: centres 0.05 ... 0.95)
    values = np.concatenate([np.full(60, 0.12), np.full(40, 0.73)])
    hist = score_histogram(values, bins=10)
    assert hist[1] == 60 and hist[7] == 40
    t, mu0, mu1 = otsu_from_histogram(hist)
    # every edge between the spikes separates them equally well; argmax keeps the first, the edge at 0.2
    assert t == pytest.approx(0.2) and mu0 == pytest.approx(0.15) and mu1 == pytest.approx(0.75)
    fg, bg = ir_thresholds(t, mu0, mu1)
    assert fg == pytest.approx((0.2 + 0.75) / 2) and bg == pytest.approx((0.2 + 0.15) / 2)
    assert side_means(hist, 0.5) == pytest.approx((0.15, 0.75))


def test_otsu_three_bins_by_hand():
    # counts 2, 1, 3 at centres 1/6, 1/2, 5/6 (3 bins): edge 1 gives w0 = 2, w1 = 4, μ0 = 1/6, μ1 = 3/4;
    # between = 2·4·(7/12)² = 2.722; edge 2: w0 = 3, w1 = 3, μ0 = 5/18, μ1 = 5/6 → 3·3·(5/9)² = 2.778 → edge 2
    t, mu0, mu1 = otsu_from_histogram(np.array([2, 1, 3]))
    assert t == pytest.approx(2 / 3) and mu0 == pytest.approx(5 / 18) and mu1 == pytest.approx(5 / 6)


def test_otsu_refuses_nothing_to_separate():
    with pytest.raises(ValueError, match="no scores"):
        otsu_from_histogram(np.zeros(10))
    with pytest.raises(ValueError, match="one histogram bin"):
        otsu_from_histogram(score_histogram(np.full(5, 0.4), bins=10))


def test_pick_thresholds_pass(tmp_path):
    import run_sample
    from misc import artifacts
    from misc.io import save_npz

    root, cams = tmp_path / "data", tmp_path / "cam"
    root.mkdir()
    (root / "classes.json").write_text(json.dumps({"classes": ["background", "building"]}))
    names = ["a", "b", "c"]
    rng = np.random.default_rng(0)
    for i, n in enumerate(names):
        high = np.where(rng.uniform(size=(1, 16, 16)) < 0.3, 0.8, 0.1).astype(np.float32)
        keys = np.array([0]) if i < 2 else np.zeros(0, np.int64)  # "c" has no building: not used
        save_npz(artifacts.cam_path(str(cams), n), keys=keys, cam=high[:len(keys), ::4, ::4],
                 high_res=high[:len(keys)])
    (tmp_path / "list.txt").write_text("\n".join(names) + "\n")
    assert run_sample.main(["--pick_thresholds_pass", "True", "--voc12_root", str(root), "--cam_out_dir", str(cams),
                            "--infer_list", str(tmp_path / "list.txt"), "--quiet", "True",
                            "--log_name", str(tmp_path / "log")]) == 0
    result = json.load(open(cams / "thresholds.json"))
    assert result["num_images"] == 2 and not result["background_free"]
    assert 0.1 < result["cam_eval_thres"] <= 0.8  # between the two modes
    assert result["conf_bg_thres"] < result["cam_eval_thres"] < result["conf_fg_thres"]
    assert result["conf_fg_thres"] == pytest.approx((result["cam_eval_thres"] + 0.8 + 0.0025) / 2, abs=3e-3)
