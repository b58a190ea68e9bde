"""The passes in order on a tiny generated fixture: every artifact present, with the right dtype and shape.

One module-scoped run (the stages depend on each other); each test then checks one stage's contract.
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
from misc import artifacts
from misc.io import load_npz, load_png

PATCH = 64


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipeline")
    raw = tmp / "raw scenes"  # a space in the path on purpose
    synthetic.write_dataset(str(raw), num_tiles=2, scenes_per_tile=1, size=(128, 128), seed=3)
    root = tmp / "data"
    lists = tmp / "lists"
    prepare.prepare(str(raw), str(raw), palette="dubai", fg_classes=["building"], patch_size=PATCH,
                    out_root=str(root), list_out=str(lists / "all.txt"), quiet=True)
    write_numpy.main(["--voc12_root", str(root), "--list", str(lists / "all.txt"),
                      "--out_list", str(lists / "train_aug.txt"),
                      "--out_pos_list", str(lists / "train_aug_building.txt")])
    out = tmp / "result"
    common = ["--voc12_root", str(root), "--log_name", str(out / "log"), "--quiet", "True",
              "--cam_scales", "1.0", "--cam_num_overlays", "2", "--cam_crop_size", str(PATCH),
              "--cam_batch_size", "4", "--cam_num_epoches", "1", "--cam_weights_name", str(tmp / "sess" / "cam.pth"),
              "--irn_weights_name", str(tmp / "sess" / "irn.pth"), "--seg_weights_name", str(tmp / "sess" / "seg.pth"),
              "--cam_out_dir", str(out / "cam"), "--ir_label_out_dir", str(out / "ir_label"),
              "--sem_seg_out_dir", str(out / "sem_seg"), "--ins_seg_out_dir", str(out / "ins_seg"),
              "--seg_out_dir", str(out / "seg"), "--report_path", str(out / "report.html")]
    train = ["--train_list", str(lists / "train_aug.txt"), "--infer_list", str(lists / "train_aug.txt")]
    assert run_sample.main(common + train + ["--train_cam_pass", "True", "--make_cam_pass", "True",
                                             "--eval_cam_pass", "True"]) == 0
    assert obtain_CAM_masking.main(common + ["--adv_iter", "1", "--AD_coeff", "7", "--AD_stepsize", "0.08",
                                             "--score_th", "0.6", "--train_list", str(lists / "train_aug.txt"),
                                             "--cam_out_dir", str(out / "cam_adv")]) == 0
    building = ["--train_list", str(lists / "train_aug_building.txt"),
                "--infer_list", str(lists / "train_aug.txt")]
    assert run_sample.main(common + building + [
        "--cam_to_ir_label_pass", "True", "--conf_fg_thres", "0.5", "--conf_bg_thres", "0.3",
        "--train_irn_pass", "True", "--irn_crop_size", str(PATCH), "--irn_batch_size", "4", "--irn_num_epoches", "1",
        "--make_sem_seg_pass", "True", "--eval_sem_seg_pass", "True", "--exp_times", "3",
        "--sem_seg_save_rw", "True", "--sem_seg_bg_thres", "0.3",
        "--make_ins_seg_pass", "True", "--eval_ins_seg_pass", "True"]) == 0
    # the ir labels were made for the building list only; the seg net trains on the pseudo masks of all images
    assert run_sample.main(common + train + [
        "--train_seg_pass", "True", "--seg_crop_size", str(PATCH), "--seg_batch_size", "4", "--seg_num_epochs", "1",
        "--eval_seg_pass", "True", "--seg_val_list", str(lists / "all.txt"), "--report_pass", "True",
        "--report_num_images", "3"]) == 0
    return {"root": str(root), "lists": lists, "out": out, "tmp": tmp}


def _names(pipeline, list_name):
    return read_name_list(str(pipeline["lists"] / list_name))


def test_prepared_data(pipeline):
    names = _names(pipeline, "all.txt")
    assert len(names) == 8  # 2 scenes of 128² cut into 64² patches
    for name in names:
        mask = load_png(artifacts.mask_path(pipeline["root"], name))
        assert mask.dtype == np.uint8 and mask.shape == (PATCH, PATCH)
        assert set(np.unique(mask)) <= {0, 1, 255}
    labels = load_cls_labels(artifacts.cls_labels_path(pipeline["root"]))
    assert set(_names(pipeline, "train_aug.txt")) == set(labels)
    assert all(v.shape == (1,) for v in labels.values())


@pytest.mark.parametrize("cam_dir", ["cam", "cam_adv"])
def test_cam_artifacts(pipeline, cam_dir):
    labels = load_cls_labels(artifacts.cls_labels_path(pipeline["root"]))
    for name in _names(pipeline, "train_aug.txt"):
        cam = load_npz(artifacts.cam_path(str(pipeline["out"] / cam_dir), name))
        k = int(labels[name].sum())
        assert cam["keys"].dtype == np.int64 and cam["keys"].shape == (k,)
        assert cam["cam"].dtype == np.float32 and cam["cam"].shape == (k, PATCH // 4, PATCH // 4)
        assert cam["high_res"].dtype == np.float32 and cam["high_res"].shape == (k, PATCH, PATCH)
        if k:
            assert cam["high_res"].max() == pytest.approx(1.0, abs=1e-3)
            assert cam["high_res"].min() >= 0


def test_eval_cam_json(pipeline):
    result = json.load(open(artifacts.eval_json_path(str(pipeline["out"] / "cam"), "eval_cam")))
    assert set(result["iou"]) == {"background", "building"}
    assert 0 <= result["miou"] <= 1 and 0 < result["threshold"] < 1


def test_overlays_and_args(pipeline):
    cam_dir = pipeline["out"] / "cam"
    overlays = os.listdir(cam_dir / "overlays")
    assert len(overlays) == 2
    assert os.path.isfile(artifacts.args_json_path(str(cam_dir), "make_cam"))
    assert os.path.isfile(pipeline["tmp"] / "sess" / "args_train_cam.json")


@pytest.mark.parametrize("sub,list_name", [("ir_label", "train_aug_building.txt"), ("sem_seg", "train_aug.txt")])
def test_label_pngs(pipeline, sub, list_name):
    allowed = {0, 1, 255} if sub == "ir_label" else {0, 1}
    for name in _names(pipeline, list_name):
        label = load_png(os.path.join(pipeline["out"], sub, f"{name}.png"))
        assert label.dtype == np.uint8 and label.shape == (PATCH, PATCH)
        assert set(np.unique(label)) <= allowed


def test_eval_jsons(pipeline):
    for sub, name in [("sem_seg", "eval_sem_seg"), ("seg", "eval_seg")]:
        result = json.load(open(artifacts.eval_json_path(str(pipeline["out"] / sub), name)))
        assert 0 <= result["miou"] <= 1 and "building" in result["iou"]
    ins = json.load(open(artifacts.eval_json_path(str(pipeline["out"] / "ins_seg"), "eval_ins_seg")))
    assert "map50" in ins


def test_instances(pipeline):
    for name in _names(pipeline, "train_aug.txt"):
        inst = load_npz(artifacts.ins_seg_path(str(pipeline["out"] / "ins_seg"), name))
        n = len(inst["scores"])
        assert inst["masks"].shape == (n, PATCH, PATCH) and inst["classes"].shape == (n,)


def test_checkpoints_describe_themselves(pipeline):
    import torch

    for name in ("cam.pth", "irn.pth", "seg.pth"):
        ckpt = torch.load(pipeline["tmp"] / "sess" / name, map_location="cpu", weights_only=False)
        assert {"state_dict", "args", "step", "metrics"} <= set(ckpt)
        assert ckpt["args"]["backbone"] == "efficientnet_lite0"


def test_report_page(pipeline):
    """The report holds every metric of every eval JSON in the output folders and one <img> per panel."""
    from step.make_report import format_value

    page = (pipeline["out"] / "report.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert 'src="http' not in page  # self-contained: every picture is embedded
    for sub, name in [("cam", "eval_cam"), ("sem_seg", "eval_sem_seg"), ("ins_seg", "eval_ins_seg"),
                      ("seg", "eval_seg")]:
        result = json.load(open(artifacts.eval_json_path(str(pipeline["out"] / sub), name)))
        for key, value in result.items():
            values = value.values() if isinstance(value, dict) else [] if isinstance(value, list) else [value]
            for v in values:
                assert format_value(v) in page, (name, key, v)
    # 3 sampled images, each: image, CAM, pseudo mask, prediction, ground truth (+ IR label for building images)
    ir_names = set(_names(pipeline, "train_aug_building.txt"))
    from step.make_report import sample_names

    shown = sample_names(_names(pipeline, "train_aug.txt"), 3)
    assert page.count("<img ") == sum(5 + (n in ir_names) for n in shown)
    assert page.count('src="data:image/png;base64,') == page.count("<img ")
    assert os.path.isfile(pipeline["out"] / "args_report.json")



def test_random_walk_scores_reproduce_the_pseudo_masks(pipeline):
    """eval_cam on <sem_seg_out_dir>/rw at the pass's threshold scores exactly what eval_sem_seg scored."""
    sem_dir = pipeline["out"] / "sem_seg"
    rw_dir = artifacts.rw_scores_dir(str(sem_dir))
    assert run_sample.main(["--voc12_root", pipeline["root"], "--eval_cam_pass", "True", "--cam_out_dir", rw_dir,
                            "--infer_list", str(pipeline["lists"] / "train_aug.txt"), "--cam_eval_thres", "0.3",
                            "--quiet", "True", "--log_name", str(pipeline["out"] / "log")]) == 0
    swept = json.load(open(artifacts.eval_json_path(rw_dir, "eval_cam")))
    direct = json.load(open(artifacts.eval_json_path(str(sem_dir), "eval_sem_seg")))
    assert swept["miou"] == pytest.approx(direct["miou"], abs=1e-6)
