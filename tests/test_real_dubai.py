"""Real-data checks on ../shared/data/dubai_aerial (marked slow: `python -m pytest -m slow`; skipped without the data).

Tile 2 (6 scenes) through data.prepare in both modes, write_numpy's land-cover tags, and the background-free passes
on real patches: the measured class shares of the data README, the palette's background-free flag, and eval_cam's
argmax contract.
"""
import json
import os

import numpy as np
import pytest

import run_sample
import write_numpy
from data import prepare
from data.labels import load_cls_labels, read_name_list
from misc import artifacts
from misc.io import load_png

# the data set sits in ../shared next to the repository; WSSS_DUBAI_DATA points elsewhere
DATA = os.environ.get("WSSS_DUBAI_DATA") or os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data", "dubai_aerial")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not os.path.isdir(DATA), reason="../shared/data/dubai_aerial not present")]


@pytest.fixture(scope="module")
def tile2(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dubai")
    raw = os.path.join(DATA, "Tile 2")
    out = {}
    for mode, fg in (("lc", ["all"]), ("building", ["building"])):
        root = str(tmp / mode)
        prepare.prepare(raw, raw, palette="dubai", fg_classes=fg, patch_size=256, out_root=root,
                        list_out=str(tmp / mode / "lists" / "all.txt"), quiet=True)
        args = ["--voc12_root", root, "--list", str(tmp / mode / "lists" / "all.txt"),
                "--out_list", str(tmp / mode / "lists" / "kept.txt"), "--out_pos_list", str(tmp / mode / "lists" / "pos.txt")]
        if mode == "lc":
            args += ["--pos_thres", "0.02", "--neg_thres", "0.0199"]
        write_numpy.main(args)
        out[mode] = root
    out["tmp"] = tmp
    return out


def test_land_cover_preparation_of_real_tiles(tile2):
    meta = json.load(open(artifacts.classes_json_path(tile2["lc"])))
    assert meta["classes"] == ["background", "building", "land", "road", "vegetation", "water"]
    assert meta["background_free"] is True
    assert json.load(open(artifacts.classes_json_path(tile2["building"])))["background_free"] is False
    names = read_name_list(os.path.join(tile2["lc"], "lists", "all.txt"))
    counts = np.zeros(256, np.int64)
    for n in names:
        counts += np.bincount(load_png(artifacts.mask_path(tile2["lc"], n)).ravel(), minlength=256)
    valid = counts[:6].sum()
    assert counts[0] == 0  # background-free: no pixel of a valid colour is background
    shares = counts[1:6] / valid
    # Tile 2's measured mix (building, land, road, vegetation, water): 12.6 / 60.1 / 12.8 / 5.8 / 8.7 %
    assert np.allclose(shares, [0.126, 0.601, 0.128, 0.058, 0.087], atol=0.01)
    labels = load_cls_labels(artifacts.cls_labels_path(tile2["lc"]))
    assert len(labels) >= len(names) - 2 and all(v.shape == (5,) for v in labels.values())
    assert sum(v.sum() >= 2 for v in labels.values()) > len(labels) // 2  # most real patches hold several classes


def test_background_free_cams_on_real_patches(tile2):
    from tests.tiny_data import make_cam_checkpoint

    tmp = tile2["tmp"]
    root = tile2["lc"]
    lst = os.path.join(root, "lists", "few.txt")
    with open(lst, "w") as f:
        f.write("\n".join(read_name_list(os.path.join(root, "lists", "kept.txt"))[:6]) + "\n")
    weights = make_cam_checkpoint(str(tmp / "cam.pth"), num_classes=5)
    cams = str(tmp / "cam")
    assert run_sample.main(["--voc12_root", root, "--cam_weights_name", weights, "--make_cam_pass", "True",
                            "--eval_cam_pass", "True", "--pick_thresholds_pass", "True", "--cam_out_dir", cams,
                            "--infer_list", lst, "--cam_scales", "1.0", "--quiet", "True",
                            "--log_name", str(tmp / "log")]) == 0
    result = json.load(open(artifacts.eval_json_path(cams, "eval_cam")))
    assert result["threshold"] is None and result["iou"]["background"] is None
    assert 0 <= result["miou"] <= 1
    picked = json.load(open(artifacts.eval_json_path(cams, "thresholds")))
    assert picked["background_free"] is True and 0 <= picked["conf_margin"] <= 1
