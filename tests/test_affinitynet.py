"""AffinityNet: affinities from embeddings, the balanced pair loss, the affinity random walk, and the train_aff →
make_sem_seg (--rw_method affinitynet) passes on a tiny generated fixture."""
import json
import math
import os

import numpy as np
import pytest
import torch

import run_sample
import write_numpy
from data import prepare, synthetic
from data.labels import read_name_list
from misc import artifacts
from misc.affinity import (affinity_edge_map, affinity_loss, affinity_random_walk, affinity_transition_weights,
                           feature_affinities)
from misc.io import load_png
from misc.pair_sampler import gather_pairs, pair_offsets
from misc.random_walk import search_offsets
from misc.torchutils import save_checkpoint
from net.affinity_net import AffinityNet
from net.zoo import load_model

PATCH = 64


def on_map(h: int, w: int, radius: int = 5) -> torch.Tensor:
    """(D, h, w) bool: the pair's other end lies on the map."""
    return gather_pairs(torch.ones(h, w), pair_offsets(radius), fill=0.0) > 0


def test_affinity_of_identical_features_is_one():
    features = torch.randn(4, 1, 1).expand(2, 4, 6, 7)  # every pixel the same vector
    aff = feature_affinities(features)
    assert aff.shape == (2, len(pair_offsets(5)), 6, 7)
    assert torch.equal(aff[:, on_map(6, 7)], torch.ones_like(aff[:, on_map(6, 7)]))
    _, weights = affinity_transition_weights(features[0], beta=8.0)
    inside = on_map(6, 7)  # same offsets, same order as misc.random_walk.search_offsets
    assert list(search_offsets(5)) == [tuple(o) for o in pair_offsets(5).tolist()]
    assert torch.equal(weights[inside], torch.ones_like(weights[inside])) and weights[~inside].abs().max() == 0


def test_affinity_by_hand():
    features = torch.zeros(1, 3, 1, 2)
    features[0, :, 0, 1] = torch.tensor([1.0, 2.0, 3.0])  # mean |f_i - f_j| = 2 for the pair (0,0)-(0,1)
    aff = feature_affinities(features, radius=2)  # offsets (0,1), (1,-1), (1,0), (1,1)
    assert aff[0, 0, 0, 0].item() == pytest.approx(math.exp(-2.0))
    _, weights = affinity_transition_weights(features[0], beta=8.0, radius=2)
    assert weights[0, 0, 0].item() == pytest.approx(math.exp(-16.0))  # a ** beta
    assert weights[0, 0, 1].item() == 0  # (0, 2) is off the map


def test_balanced_loss_rewards_right_affinities():
    label = torch.zeros(1, 6, 6, dtype=torch.uint8)
    label[:, :, 3:] = 1
    label[:, 0, 0] = 255
    features_right = torch.zeros(1, 2, 6, 6)
    features_right[:, :, :, 3:] = 10.0  # one embedding per class
    right = affinity_loss(feature_affinities(features_right), label)
    wrong = affinity_loss(feature_affinities(torch.zeros(1, 2, 6, 6)), label)  # all alike: negatives fail
    assert right["total"].item() < 1e-3
    assert wrong["pos_bg"].item() < 1e-3 and wrong["neg"].item() > 5
    assert wrong["total"].item() == pytest.approx(
        wrong["pos_bg"].item() / 4 + wrong["pos_fg"].item() / 4 + wrong["neg"].item() / 2)


def test_affinity_walk_stays_inside_its_region():
    features = torch.zeros(4, 12, 16)
    features[:, :, 8:] = 5.0  # two regions: a_ij ** 8 = exp(-40) across the border
    cams = torch.zeros(1, 12, 16)
    cams[0, 5, 2] = 1.0  # activation in the left region only
    walked = affinity_random_walk(cams, features, beta=8.0, exp_times=6)
    assert walked[0, :, 8:].max().item() < 1e-9  # nothing crosses
    assert walked[0, :, :8].min().item() > 0  # it spread over the whole left region
    assert walked.max().item() <= 1.0  # a convex combination of the input
    edges = affinity_edge_map(features)
    # by hand: a pixel next to the border has 3 of its 8 nearest neighbours across it (affinity e⁻⁵), the rest alike
    assert edges[1:-1, 7:9] == pytest.approx(torch.full((10, 2), 3 / 8 * (1 - math.exp(-5.0))), abs=1e-6)
    assert edges[:, :6].max() == 0 and edges[:, 10:].max() == 0  # flat embedding: no edge


def test_affinity_net_shapes_and_checkpoint(tmp_path):
    model = AffinityNet("efficientnet_lite0", pretrained=None, embed_dim=16)
    x = torch.rand(1, 3, 50, 62)
    out = model(x)
    assert out.shape == (1, 16, 13, 16)  # ceil(50/4), ceil(62/4)
    assert all(not p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for g in model.param_groups() for p in g["params"])
    path = str(tmp_path / "aff.pth")
    save_checkpoint(path, model=model, args={}, step=0, extra={"kind": "aff", "backbone": "efficientnet_lite0",
                                                               "embed_dim": 16})
    assert torch.equal(load_model(path, "aff")[0](x), model.eval()(x))
    save_checkpoint(str(tmp_path / "other.pth"), model=model, args={}, step=0, extra={"kind": "irn"})
    with pytest.raises(ValueError, match="not an AffinityNet checkpoint"):
        load_model(str(tmp_path / "other.pth"), "aff")


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """train_cam (with SBNet's losses) → make_cam → cam_to_ir_label → train_aff → make_sem_seg (affinitynet)."""
    tmp = tmp_path_factory.mktemp("affinitynet")
    raw = tmp / "raw scenes"
    synthetic.write_dataset(str(raw), num_tiles=2, scenes_per_tile=1, size=(128, 128), seed=3)
    root = tmp / "data"
    lists = tmp / "lists"
    prepare.prepare(str(raw), str(raw), palette="dubai", fg_classes=["building"], patch_size=PATCH,
                    out_root=str(root), list_out=str(lists / "all.txt"), quiet=True)
    write_numpy.main(["--voc12_root", str(root), "--list", str(lists / "all.txt"),
                      "--out_list", str(lists / "train_aug.txt"),
                      "--out_pos_list", str(lists / "train_aug_building.txt")])
    out = tmp / "result"
    common = ["--voc12_root", str(root), "--log_name", str(out / "log"), "--quiet", "True", "--device", "cpu",
              "--cam_scales", "1.0", "--cam_num_overlays", "2", "--cam_crop_size", str(PATCH),
              "--cam_batch_size", "4", "--cam_num_epochs", "1", "--cam_weights_name", str(tmp / "sess" / "cam.pth"),
              "--aff_weights_name", str(tmp / "sess" / "aff.pth"), "--irn_weights_name", str(tmp / "sess" / "irn.pth"),
              "--cam_out_dir", str(out / "cam"), "--ir_label_out_dir", str(out / "ir_label"),
              "--sem_seg_out_dir", str(out / "sem_seg")]
    train = ["--train_list", str(lists / "train_aug.txt"), "--infer_list", str(lists / "train_aug.txt")]
    assert run_sample.main(common + train + ["--train_cam_pass", "True", "--cam_smooth_loss", "0.1",
                                             "--cam_boundary_loss", "0.1", "--make_cam_pass", "True"]) == 0
    building = ["--train_list", str(lists / "train_aug_building.txt"),
                "--infer_list", str(lists / "train_aug.txt")]
    assert run_sample.main(common + building + [
        "--cam_to_ir_label_pass", "True", "--conf_fg_thres", "0.5", "--conf_bg_thres", "0.3",
        "--train_aff_pass", "True", "--aff_crop_size", str(PATCH), "--aff_batch_size", "4", "--aff_num_epochs", "1",
        "--make_sem_seg_pass", "True", "--rw_method", "affinitynet", "--beta", "8", "--exp_times", "3",
        "--eval_sem_seg_pass", "True"]) == 0
    return {"root": str(root), "lists": lists, "out": out, "tmp": tmp}


def test_pass_contract(pipeline):
    out, sess = pipeline["out"], pipeline["tmp"] / "sess"
    cam = torch.load(sess / "cam.pth", map_location="cpu", weights_only=False)
    assert any(k.startswith("boundary_head.") for k in cam["state_dict"])  # SBNet's head, trained and saved
    assert {"loss_smooth", "loss_boundary"} <= set(cam["metrics"])
    aff = torch.load(sess / "aff.pth", map_location="cpu", weights_only=False)
    assert aff["kind"] == "aff" and {"state_dict", "args", "step", "metrics"} <= set(aff)
    assert np.isfinite(aff["metrics"]["total"])
    assert (sess / "args_train_aff.json").is_file()
    assert len(os.listdir(sess / "aff_overlays")) == 2
    names = read_name_list(str(pipeline["lists"] / "train_aug.txt"))
    for name in names:
        label = load_png(artifacts.sem_seg_path(str(out / "sem_seg"), name))
        assert label.dtype == np.uint8 and label.shape == (PATCH, PATCH)
        assert set(np.unique(label)) <= {0, 1}
    assert json.load(open(out / "sem_seg" / "args_make_sem_seg.json"))["rw_method"] == "affinitynet"
    result = json.load(open(artifacts.eval_json_path(str(out / "sem_seg"), "eval_sem_seg")))
    assert 0 <= result["miou"] <= 1 and "building" in result["iou"]
