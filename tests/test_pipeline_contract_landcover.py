"""Land-cover mode, K = 3, on background-free data: every pass runs and every artifact has the K-class contract.

The fixture: synthetic scenes whose Dubai-colour masks are merged into 3 classes (building, road, ground = land,
vegetation and water) and saved as index masks, prepared with ``--palette index:building,road,ground
--fg_classes all``; every pixel then belongs to a class, so classes.json says background_free and the passes run
without a background threshold (``--background auto``).
"""
import json
import os

import numpy as np
import pytest

import obtain_CAM_masking
import run_sample
import write_numpy
from data import prepare, synthetic
from data.labels import load_cls_labels, read_name_list
from data.palettes import decode_mask
from misc import artifacts
from misc.io import load_npz, load_png, save_png

PATCH = 64
K = 3


def _three_class_masks(raw: str) -> None:
    """Rewrite every Dubai-colour mask under ``raw`` as an index mask: 0 building, 1 road, 2 ground, 255 stray."""
    merge = np.array([0, 2, 1, 2, 2], np.uint8)  # dubai 'all' order: building, land, road, vegetation, water
    for folder, _, files in os.walk(raw):
        for f in files:
            if f.endswith(".png") and os.sep + "masks" in folder:
                path = os.path.join(folder, f)
                label, _ = decode_mask(load_png(path), "dubai", ["all"])  # 1..5, 255
                out = np.full(label.shape, 255, np.uint8)
                known = label != 255
                out[known] = merge[label[known] - 1]
                save_png(path, out)


@pytest.fixture(scope="module")
def landcover(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("landcover")
    raw = tmp / "raw"
    synthetic.write_dataset(str(raw), num_tiles=2, scenes_per_tile=1, size=(128, 128), seed=3)
    _three_class_masks(str(raw))
    root, lists, out = tmp / "data", tmp / "lists", tmp / "result"
    prepare.prepare(str(raw), str(raw), palette="index:building,road,ground", fg_classes=["all"], patch_size=PATCH,
                    out_root=str(root), list_out=str(lists / "all.txt"), quiet=True)
    write_numpy.main(["--voc12_root", str(root), "--list", str(lists / "all.txt"), "--pos_thres", "0.02",
                      "--neg_thres", "0.0199", "--out_list", str(lists / "train.txt"),
                      "--out_pos_list", str(lists / "train_pos.txt")])
    common = ["--voc12_root", str(root), "--log_name", str(out / "log"), "--quiet", "True",
              "--cam_scales", "1.0", "--cam_num_overlays", "2", "--cam_crop_size", str(PATCH),
              "--cam_batch_size", "4", "--cam_num_epochs", "1", "--cam_weights_name", str(tmp / "sess" / "cam.pth"),
              "--irn_weights_name", str(tmp / "sess" / "irn.pth"), "--seg_weights_name", str(tmp / "sess" / "seg.pth"),
              "--cam_out_dir", str(out / "cam"), "--ir_label_out_dir", str(out / "ir_label"),
              "--sem_seg_out_dir", str(out / "sem_seg"), "--ins_seg_out_dir", str(out / "ins_seg"),
              "--seg_out_dir", str(out / "seg"), "--report_path", str(out / "report.html"),
              "--train_list", str(lists / "train.txt"), "--infer_list", str(lists / "train.txt")]
    assert run_sample.main(common + ["--train_cam_pass", "True", "--make_cam_pass", "True",
                                     "--eval_cam_pass", "True"]) == 0
    assert obtain_CAM_masking.main(common + ["--adv_iter", "1", "--cam_out_dir", str(out / "cam_adv")]) == 0
    assert run_sample.main(common + ["--refine_cam_pass", "True", "--refined_cam_out_dir", str(out / "cam_par"),
                                     "--par_num_iter", "3"]) == 0
    assert run_sample.main(common + [
        "--cam_to_ir_label_pass", "True", "--conf_margin", "0.1",
        "--train_irn_pass", "True", "--irn_crop_size", str(PATCH), "--irn_batch_size", "4", "--irn_num_epochs", "1",
        "--make_sem_seg_pass", "True", "--eval_sem_seg_pass", "True", "--exp_times", "3", "--rw_normalize", "local",
        "--make_ins_seg_pass", "True", "--eval_ins_seg_pass", "True",
        "--train_seg_pass", "True", "--seg_crop_size", str(PATCH), "--seg_batch_size", "4", "--seg_num_epochs", "1",
        "--seg_decoder", "fpn", "--eval_seg_pass", "True", "--seg_tta", "True",
        "--seg_val_list", str(lists / "all.txt"), "--report_pass", "True", "--report_num_images", "2"]) == 0
    assert run_sample.main(common + ["--relabel_seg_pass", "True", "--relabel_out_dir", str(out / "relabel")]) == 0
    scene = sorted(p for p in (raw.rglob("*.jpg")))[0]
    assert run_sample.main(common + ["--predict_pass", "True", "--predict_input", str(scene),
                                     "--seg_out_dir", str(out / "maps"), "--predict_window", "64",
                                     "--predict_overlap", "16"]) == 0
    return {"root": str(root), "lists": lists, "out": out, "tmp": tmp, "scene": scene}


def _names(landcover):
    return read_name_list(str(landcover["lists"] / "train.txt"))


def test_classes_json_and_labels(landcover):
    meta = json.load(open(artifacts.classes_json_path(landcover["root"])))
    assert meta["classes"] == ["background", "building", "road", "ground"]
    assert meta["background_free"] is True
    labels = load_cls_labels(artifacts.cls_labels_path(landcover["root"]))
    assert all(v.shape == (K,) for v in labels.values())
    assert all(v.sum() >= 1 for v in labels.values())  # background-free: every patch holds some class
    assert any(v.sum() >= 2 for v in labels.values())  # and the fixture has multi-class patches


@pytest.mark.parametrize("cam_dir", ["cam", "cam_adv", "cam_par"])
def test_cams_of_every_present_class(landcover, cam_dir):
    labels = load_cls_labels(artifacts.cls_labels_path(landcover["root"]))
    for name in _names(landcover):
        cam = load_npz(artifacts.cam_path(str(landcover["out"] / cam_dir), name))
        assert cam["keys"].tolist() == np.flatnonzero(labels[name]).tolist()
        assert cam["high_res"].shape == (len(cam["keys"]), PATCH, PATCH)


def test_eval_cam_has_no_threshold(landcover):
    result = json.load(open(artifacts.eval_json_path(str(landcover["out"] / "cam"), "eval_cam")))
    assert result["threshold"] is None and len(result["sweep"]) == 1
    assert result["iou"]["background"] is None  # no ground-truth or predicted background pixel at all
    assert {"building", "road", "ground"} <= {k for k, v in result["iou"].items() if v is not None}


def test_ir_labels_and_pseudo_masks_have_no_background(landcover):
    labels = load_cls_labels(artifacts.cls_labels_path(landcover["root"]))
    for name in _names(landcover):
        present = set((np.flatnonzero(labels[name]) + 1).tolist())
        ir = load_png(artifacts.ir_label_path(str(landcover["out"] / "ir_label"), name))
        assert set(np.unique(ir)) <= present | {255}
        if len(present) == 1:
            assert (ir == min(present)).all()
        mask = load_png(artifacts.sem_seg_path(str(landcover["out"] / "sem_seg"), name))
        assert mask.shape == (PATCH, PATCH) and set(np.unique(mask)) <= present  # no 0, no absent class


def test_segmenter_and_maps(landcover):
    import torch

    ckpt = torch.load(landcover["tmp"] / "sess" / "seg.pth", map_location="cpu", weights_only=False)
    assert ckpt["num_classes"] == K + 1 and ckpt["decoder"] == "fpn"
    result = json.load(open(artifacts.eval_json_path(str(landcover["out"] / "seg"), "eval_seg")))
    assert set(result["iou"]) == {"background", "building", "road", "ground"}
    stem = os.path.splitext(os.path.basename(landcover["scene"]))[0]
    maps = os.listdir(landcover["out"] / "maps")
    raster = [m for m in maps if m.startswith(stem) and "_classes" in m]
    assert raster, maps
    classes = load_png(str(landcover["out"] / "maps" / raster[0])) if raster[0].endswith(".png") else None
    if classes is not None:
        assert classes.max() <= K


def test_self_training_labels_stay_within_the_tags(landcover):
    """relabel_seg: every pixel of a relabelled patch is one of that patch's tagged classes (no background)."""
    cls = load_cls_labels(os.path.join(landcover["root"], "cls_labels.npy"))
    names = read_name_list(str(landcover["lists"] / "train.txt"))
    for name in names:
        label = load_png(artifacts.sem_seg_path(str(landcover["out"] / "relabel"), name))
        allowed = set((np.nonzero(cls[name] > 0.5)[0] + 1).tolist())
        assert label.dtype == np.uint8 and label.shape == (PATCH, PATCH)
        assert set(np.unique(label).tolist()) <= allowed, name
    args = json.load(open(landcover["out"] / "relabel" / "args_relabel_seg.json"))
    assert args["relabel_conf_thres"] == 0.0
