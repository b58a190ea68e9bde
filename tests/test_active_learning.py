"""Uncertainty scores worked out by hand, the selection rule, and the select_tiles pass on a tiny fixture. CPU."""
from __future__ import annotations

import json
import math
import os

import cv2
import numpy as np
import pytest
import torch

from misc import active_learning as al
from misc import artifacts
from misc.cli import build_parser, enabled_passes
from misc.io import save_text_lines
from misc.torchutils import save_checkpoint
from net.cam_net import CAMNet
from step import select_tiles


def _h2(p: float) -> float:
    """Binary entropy in bits (= entropy / log 2)."""
    return -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


# --------------------------------------------------------------------------------------------------------------------
# Scores
# --------------------------------------------------------------------------------------------------------------------


def test_entropy_is_one_for_a_uniform_distribution_and_zero_for_a_certain_one():
    assert al.normalized_entropy(torch.tensor([0.5, 0.5])).item() == pytest.approx(1.0)
    assert al.normalized_entropy(torch.full((4,), 0.25)).item() == pytest.approx(1.0)
    assert al.normalized_entropy(torch.tensor([1.0, 0.0, 0.0])).item() == pytest.approx(0.0, abs=1e-6)
    # sigmoid p = 0.5 is the most uncertain a class can be, with both strategies
    for strategy in ("entropy", "margin"):
        assert al.binary_uncertainty(torch.tensor(0.5), strategy).item() == pytest.approx(1.0)
        assert al.binary_uncertainty(torch.tensor(1.0), strategy).item() == pytest.approx(0.0, abs=1e-6)


def test_confident_prediction_scores_below_a_hesitant_one():
    confident, hesitant = torch.tensor([0.9, 0.1]), torch.tensor([0.6, 0.4])
    assert al.normalized_entropy(confident).item() == pytest.approx(_h2(0.9), abs=1e-6)  # 0.469
    assert al.normalized_entropy(hesitant).item() == pytest.approx(_h2(0.6), abs=1e-6)  # 0.971
    assert al.normalized_entropy(confident) < al.normalized_entropy(hesitant)
    assert al.margin_uncertainty(confident).item() == pytest.approx(0.2)  # 1 - (0.9 - 0.1)
    assert al.margin_uncertainty(hesitant).item() == pytest.approx(0.8)  # 1 - (0.6 - 0.4)
    # margin uses the two largest of K: 1 - (0.5 - 0.3)
    assert al.margin_uncertainty(torch.tensor([0.2, 0.5, 0.3])).item() == pytest.approx(0.8)


def test_sigmoid_tile_score_averages_the_per_class_binary_uncertainty():
    probs = torch.tensor([[0.5, 0.9], [0.9, 0.1], [0.6, 0.4]])  # (N=3 tiles, K=2 classes)
    entropy = al.sigmoid_tile_score(probs, "entropy")
    assert entropy.tolist() == pytest.approx([(1 + _h2(0.9)) / 2, _h2(0.9), _h2(0.6)], abs=1e-6)
    margin = al.sigmoid_tile_score(probs, "margin")  # 1 - |2p - 1| per class
    assert margin.tolist() == pytest.approx([(1 + 0.2) / 2, 0.2, 0.8], abs=1e-6)


def test_softmax_tile_score_averages_pixels_and_respects_the_valid_mask():
    probs = torch.zeros(2, 1, 2)  # (K, H=1, W=2): one certain pixel, one uniform pixel
    probs[:, 0, 0] = torch.tensor([1.0, 0.0])
    probs[:, 0, 1] = torch.tensor([0.5, 0.5])
    assert al.softmax_tile_score(probs, "entropy").item() == pytest.approx(0.5)
    assert al.softmax_tile_score(probs, "margin").item() == pytest.approx(0.5)
    valid = torch.tensor([[False, True]])
    assert al.softmax_tile_score(probs, "entropy", valid).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="strategy"):
        al.softmax_tile_score(probs, "random")


# --------------------------------------------------------------------------------------------------------------------
# Selection
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_items, ratio, expected", [(37, 0.2, 7), (361, 0.05, 18), (10, 0.05, 1), (4, 1.0, 4)])
def test_num_to_select_is_round_ratio_times_n_at_least_one(num_items, ratio, expected):
    assert al.num_to_select(num_items, ratio) == expected


def test_num_to_select_rejects_ratios_outside_0_1():
    for ratio in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="ratio"):
            al.num_to_select(10, ratio)


def test_select_most_uncertain_picks_exactly_the_top_scores():
    names = [f"t{i}" for i in range(37)]
    scores = np.random.default_rng(0).random(37)
    chosen = al.select_most_uncertain(names, scores, 0.2)
    assert len(chosen) == round(0.2 * 37) == 7
    expected = [names[i] for i in np.argsort(-scores)[:7]]
    assert chosen == expected
    assert min(scores[names.index(n)] for n in chosen) > max(scores[names.index(n)] for n in names if n not in chosen)
    # ties keep the pool order
    assert al.select_most_uncertain(["a", "b", "c", "d"], [0.5, 0.9, 0.5, 0.5], 0.5) == ["b", "a"]


def test_random_selection_is_seeded():
    names = [f"t{i}" for i in range(50)]
    first = al.select_random(names, 0.1, seed=3)
    assert len(first) == 5 and len(set(first)) == 5 and set(first) <= set(names)
    assert al.select_random(names, 0.1, seed=3) == first
    assert al.select_random(names, 0.1, seed=4) != first


# --------------------------------------------------------------------------------------------------------------------
# The pass
# --------------------------------------------------------------------------------------------------------------------

NAMES = [f"tile{i}" for i in range(10)]


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    """10 tiles 32x32 of varied colour, a classes.json and a pool list."""
    root = tmp_path_factory.mktemp("al_data")
    (root / "JPEGImages").mkdir()
    rng = np.random.default_rng(0)
    for i, name in enumerate(NAMES):
        image = rng.integers(0, 255, size=(32, 32, 3)).astype(np.uint8)
        image[: 3 * i] = (200, 40 + 15 * i, 30)
        cv2.imwrite(str(root / "JPEGImages" / f"{name}.png"), image)
    (root / "classes.json").write_text(json.dumps({"classes": ["background", "building", "road"]}))
    (root / "pool.txt").write_text("\n".join(NAMES) + "\n")
    return root


def _args(root, *extra):
    return build_parser().parse_args(["--device", "cpu", "--voc12_root", str(root), "--train_list",
                                      str(root / "pool.txt"), *extra])


def test_cli_places_select_tiles_before_train_seg():
    args = build_parser().parse_args(["--select_tiles_pass", "--train_seg_pass", "--al_ratio", "0.1"])
    assert enabled_passes(args) == ["select_tiles", "train_seg"]
    assert args.al_strategy == "entropy" and args.al_model == "seg" and args.al_ratio == 0.1
    assert artifacts.al_list_path("entropy", 0.05) == os.path.join("cdy12", "al_entropy_0.05.txt")
    assert artifacts.al_scores_path("cdy12/al_entropy_0.05.txt") == "cdy12/al_entropy_0.05.json"


def test_select_tiles_with_the_cam_classifier_writes_the_top_tiles_and_their_scores(pool, tmp_path):
    torch.manual_seed(0)
    cam = CAMNet("efficientnet_lite0", num_classes=2, pretrained=None)
    save_checkpoint(str(tmp_path / "cam.pth"), model=cam, args={"backbone": "efficientnet_lite0"}, step=0,
                    extra={"kind": "cam", "num_classes": 2})
    out_list = tmp_path / "lists" / "al.txt"
    select_tiles.run(_args(pool, "--al_strategy", "margin", "--al_ratio", "0.3", "--al_model", "cam",
                           "--cam_weights_name", str(tmp_path / "cam.pth"), "--al_out_list", str(out_list)))
    chosen = out_list.read_text().split()
    assert len(chosen) == 3
    report = json.loads((tmp_path / "lists" / "al.json").read_text())
    assert report["selected"] == chosen and report["num_pool"] == 10 and report["model"] == "cam"
    scores = report["scores"]
    assert set(scores) == set(NAMES) and all(0 <= s <= 1 for s in scores.values())
    assert chosen == sorted(NAMES, key=lambda n: -scores[n])[:3]
    # the scores are the classifier's: recompute one tile by hand
    image = cv2.imread(str(pool / "JPEGImages" / "tile4.png"))[..., ::-1].copy()
    with torch.no_grad():
        p = torch.sigmoid(cam.eval()(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255))[0]
    assert scores["tile4"] == pytest.approx(float((1 - (2 * p - 1).abs()).mean()), abs=1e-5)
    assert os.path.isfile(tmp_path / "lists" / "args_select_tiles.json")
    assert not [f for f in os.listdir(tmp_path / "lists") if ".tmp" in f]  # no temporary file left behind


def test_select_tiles_random_is_seeded_and_needs_no_model(pool, tmp_path):
    lists = []
    for seed in (1, 1, 2):
        out_list = tmp_path / f"random_{seed}_{len(lists)}.txt"
        select_tiles.run(_args(pool, "--al_strategy", "random", "--al_ratio", "0.5", "--seed", str(seed),
                               "--cam_weights_name", str(tmp_path / "missing.pth"), "--al_out_list", str(out_list)))
        lists.append(out_list.read_text().split())
        report = json.loads(out_list.with_suffix(".json").read_text())
        assert report["model"] is None and "scores" not in report and report["num_selected"] == 5
    assert lists[0] == lists[1] and lists[0] != lists[2] and all(len(x) == 5 for x in lists)


def test_list_file_is_written_atomically(tmp_path):
    path = tmp_path / "al.txt"
    save_text_lines(str(path), ["old_a", "old_b"])

    def names_then_crash():
        yield "new_a"
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="mid-write"):
        save_text_lines(str(path), names_then_crash())
    assert path.read_text() == "old_a\nold_b\n"  # the old list is intact, not half of the new one
    assert os.listdir(tmp_path) == ["al.txt"]  # and the temporary file is gone
