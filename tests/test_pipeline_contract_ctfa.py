"""CTFA selected as the CAM method on the generated fixture: train_ctfa → make_cam → eval_cam, and its segmenter
through eval_seg and predict. Every artifact present with the standard dtype and shape.

A tiny run (ViT-S/16 at random init, 32² crops, one epoch of batches of 4, no warm-up so every loss term runs): this
checks the contract, not the accuracy.
"""
import json
import os

import numpy as np
import pytest
import torch

import run_sample
from data.labels import load_class_names, load_cls_labels, read_name_list
from misc import artifacts
from misc.io import load_npz, load_png
from tests.tiny_data import make_dataset

PATCH = 64


@pytest.fixture(scope="module")
def ctfa_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ctfa")
    data = make_dataset(str(tmp), scenes=2, patch=PATCH)  # 8 patches of 64²
    out = tmp / "result"
    sess = tmp / "sess"
    common = ["--voc12_root", data["root"], "--log_name", str(out / "log"), "--quiet", "True",
              "--train_list", data["train"], "--infer_list", data["train"],
              "--cam_weights_name", str(sess / "ctfa.pth"), "--ctfa_seg_weights_name", str(sess / "ctfa_seg.pth"),
              "--cam_out_dir", str(out / "cam"), "--seg_out_dir", str(out / "seg")]
    assert run_sample.main(common + [
        "--train_ctfa_pass", "True", "--ctfa_backbone", "vit_small_patch16", "--pretrained", "none",
        "--ctfa_crop_size", "32", "--ctfa_batch_size", "4", "--ctfa_num_epochs", "1", "--ctfa_warmup_epochs", "0",
        "--ctfa_num_local", "1", "--ctfa_local_size", "16", "--ctfa_head_channels", "16", "--par_num_iter", "2",
        "--par_dilations", "1,2", "--ctfa_bg_high", "0.5", "--ctfa_bg_low", "0.2",
        "--make_cam_pass", "True", "--cam_scales", "1.0", "--cam_num_overlays", "1", "--eval_cam_pass", "True",
        "--eval_seg_pass", "True", "--seg_weights_name", str(sess / "ctfa_seg.pth"), "--seg_val_list", data["all"],
        "--predict_window", "64", "--predict_overlap", "0", "--seg_num_overlays", "1"]) == 0
    return {"data": data, "out": out, "sess": sess}


def test_ctfa_checkpoint_describes_itself(ctfa_run):
    ckpt = torch.load(ctfa_run["sess"] / "ctfa.pth", map_location="cpu", weights_only=False)
    steps = len(read_name_list(ctfa_run["data"]["train"])) // 4  # full batches of 4 in one epoch
    assert steps >= 1
    assert ckpt["kind"] == "ctfa" and ckpt["num_classes"] == 1 and ckpt["epoch"] == 1 and ckpt["step"] == steps
    assert ckpt["model_config"]["backbone"] == "vit_small_patch16" and ckpt["model_config"]["aux_layer"] == 8
    assert ckpt["args"]["ctfa_backbone"] == "vit_small_patch16"
    # every loss term ran: classification, both CTLM terms, the decoder's two terms on the pseudo labels
    assert {"loss", "loss_cls", "loss_patch", "loss_class", "loss_seg", "loss_fg"} <= set(ckpt["metrics"])
    assert all(np.isfinite(v) for k, v in ckpt["metrics"].items() if k.startswith("loss"))
    assert "blocks.11.attn.qkv.weight" in {k[len("backbone."):] for k in ckpt["state_dict"]}
    assert os.path.isfile(artifacts.args_json_path(str(ctfa_run["sess"]), "train_ctfa"))


def test_cams_in_the_standard_format(ctfa_run):
    root = ctfa_run["data"]["root"]
    labels = load_cls_labels(artifacts.cls_labels_path(root))
    names = read_name_list(ctfa_run["data"]["train"])
    assert names
    for name in names:
        cam = load_npz(artifacts.cam_path(str(ctfa_run["out"] / "cam"), name))
        k = int(labels[name].sum())
        assert cam["keys"].dtype == np.int64 and cam["keys"].shape == (k,)
        assert cam["cam"].dtype == np.float32 and cam["cam"].shape == (k, PATCH // 4, PATCH // 4)
        assert cam["high_res"].dtype == np.float32 and cam["high_res"].shape == (k, PATCH, PATCH)
        if k:
            assert cam["high_res"].max() == pytest.approx(1.0, abs=1e-3) and cam["high_res"].min() >= 0
    result = json.load(open(artifacts.eval_json_path(str(ctfa_run["out"] / "cam"), "eval_cam")))
    assert set(result["iou"]) == {"background", "building"} and 0 <= result["miou"] <= 1


def test_segmenter_checkpoint_runs_through_eval_seg(ctfa_run):
    root = ctfa_run["data"]["root"]
    ckpt = torch.load(ctfa_run["sess"] / "ctfa_seg.pth", map_location="cpu", weights_only=False)
    assert ckpt["kind"] == "seg" and ckpt["decoder"] == "ctfa" and ckpt["num_classes"] == 2
    assert ckpt["class_names"] == load_class_names(root)
    assert all(k.startswith(("backbone.", "decoder.")) for k in ckpt["state_dict"])
    for name in read_name_list(ctfa_run["data"]["all"]):
        pred = load_png(artifacts.seg_pred_path(str(ctfa_run["out"] / "seg"), name))
        assert pred.dtype == np.uint8 and pred.shape == (PATCH, PATCH) and set(np.unique(pred)) <= {0, 1}
    result = json.load(open(artifacts.eval_json_path(str(ctfa_run["out"] / "seg"), "eval_seg")))
    assert 0 <= result["miou"] <= 1 and "building" in result["iou"]


def test_segmenter_maps_a_scene_with_predict(ctfa_run, tmp_path):
    root = ctfa_run["data"]["root"]
    name = read_name_list(ctfa_run["data"]["all"])[0]
    scene = artifacts.image_path(root, name)
    out = tmp_path / "maps"
    assert run_sample.main(["--predict_pass", "True", "--predict_input", scene, "--voc12_root", root,
                            "--seg_weights_name", str(ctfa_run["sess"] / "ctfa_seg.pth"), "--seg_out_dir", str(out),
                            "--predict_window", "64", "--predict_overlap", "0", "--quiet", "True",
                            "--log_name", str(tmp_path / "log")]) == 0
    stem = os.path.splitext(os.path.basename(scene))[0]
    classes = load_png(artifacts.scene_classes_path(str(out), stem, tiff=scene.lower().endswith((".tif", ".tiff"))))
    assert classes.dtype == np.uint8 and classes.shape == (PATCH, PATCH)
    # the same labels eval_seg predicted for that image (one window, the same network)
    assert np.array_equal(classes, load_png(artifacts.seg_pred_path(str(ctfa_run["out"] / "seg"), name)))
