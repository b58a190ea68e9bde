"""Image-level labels from tags instead of masks: a CSV (two forms) and class folders give the same cls_labels.npy
as the masks; prepare without masks; the pipeline runs without any mask and the eval passes skip."""
from __future__ import annotations

import json
import os
import shutil

import pytest

import run_sample
import write_numpy
from data import prepare, synthetic
from data.labels import load_cls_labels, read_name_list
from misc import artifacts


@pytest.fixture(scope="module")
def class_folders(tmp_path_factory):
    """UC Merced-style layout <folder>/images/<x>.jpg (+ <folder>/masks/<x>.png): 64² images whose folder says
    whether they hold a building; plus the labels the masks give (the reference)."""
    tmp = tmp_path_factory.mktemp("tags")
    raw = tmp / "raw"
    synthetic.write_dataset(str(raw), num_tiles=1, scenes_per_tile=3, size=(128, 128), seed=5)
    cut = tmp / "cut"
    prepare.prepare(str(raw), str(raw), palette="dubai", fg_classes=["building"], patch_size=64,
                    out_root=str(cut), quiet=True)
    write_numpy.main(["--voc12_root", str(cut), "--out_list", str(tmp / "cut.txt"), "--out_pos_list",
                      str(tmp / "cut_pos.txt"), "--quiet"])
    cut_labels = load_cls_labels(str(cut / "cls_labels.npy"))
    assert 0 < sum(v[0] for v in cut_labels.values()) < len(cut_labels)  # positives and negatives
    layout = tmp / "ucm"
    folder_of = {}
    for name, label in cut_labels.items():
        folder = "Buildings" if label[0] else "forest"
        folder_of[name] = folder
        for sub, src in (("images", artifacts.image_path(str(cut), name)), ("masks", artifacts.mask_path(str(cut), name))):
            os.makedirs(layout / folder / sub, exist_ok=True)
            shutil.copy(src, layout / folder / sub / os.path.basename(src))
    # the reference: the same images labelled by their masks
    ref = tmp / "ref"
    prepare.prepare(str(layout), str(layout), palette="index:background,building", fg_classes=["building"],
                    patch_size=0, out_root=str(ref), quiet=True)
    write_numpy.main(["--voc12_root", str(ref), "--out_list", str(tmp / "ref.txt"), "--out_pos_list",
                      str(tmp / "ref_pos.txt"), "--quiet"])
    # the images alone
    tagged = tmp / "tagged"
    prepare.main(["--images", str(layout), "--classes", "building", "--out_root", str(tagged), "--quiet"])
    return {"tmp": tmp, "layout": layout, "ref": ref, "tagged": tagged, "folder_of": folder_of,
            "labels": cut_labels, "ref_list": tmp / "ref.txt"}


def _label_file_bytes(root):
    return open(os.path.join(root, "cls_labels.npy"), "rb").read()


def _run_tags(fx, name, *flags):
    out = fx["tmp"] / name
    out.mkdir()
    labels_file = out / "cls_labels.npy"
    write_numpy.main(["--voc12_root", str(fx["tagged"]), "--train_list", str(fx["ref_list"]), "--cls_labels_path",
                      str(labels_file), "--out_list", str(out / "list.txt"), "--out_pos_list", str(out / "pos.txt"),
                      "--quiet", *flags])
    return out


def _same_as_masks(fx, out):
    assert open(out / "cls_labels.npy", "rb").read() == _label_file_bytes(fx["ref"])
    assert read_name_list(str(out / "list.txt")) == read_name_list(str(fx["ref_list"]))
    assert read_name_list(str(out / "pos.txt")) == read_name_list(str(fx["tmp"] / "ref_pos.txt"))


def test_prepare_without_masks_keeps_images_and_writes_no_masks(class_folders):
    tagged = class_folders["tagged"]
    assert not os.path.exists(tagged / artifacts.MASK_DIR)
    meta = json.load(open(tagged / "classes.json"))
    assert meta["classes"] == ["background", "building"] and meta["masks"] is False
    names = sorted(os.path.splitext(f)[0] for f in os.listdir(tagged / artifacts.IMAGE_DIR))
    # the same names as the data set prepared with masks, and each records the folder it came from
    assert names == sorted(json.load(open(class_folders["ref"] / "classes.json"))["sources"])
    expected = {f"{folder}__{cut}": f"{folder}/{cut}" for cut, folder in class_folders["folder_of"].items()}
    assert meta["sources"] == expected and sorted(expected) == names


def test_class_folders_give_the_labels_of_the_masks(class_folders):
    out = _run_tags(class_folders, "folders", "--class_folders", "Buildings:building", "forest:")
    _same_as_masks(class_folders, out)


def test_class_folders_from_a_json_map(class_folders):
    mapping = class_folders["tmp"] / "folders.json"
    mapping.write_text(json.dumps({"buildings": ["building"], "Forest": []}))  # folder names match without case
    out = _run_tags(class_folders, "folders_json", "--class_folders", str(mapping))
    _same_as_masks(class_folders, out)


def test_csv_with_class_names_gives_the_labels_of_the_masks(class_folders):
    csv_path = class_folders["tmp"] / "tags_names.csv"
    rows = ["image,classes"]
    for name, label in class_folders["labels"].items():  # file names as the user has them
        rows.append(f"{name}.jpg,{'building' if label[0] else ''}")
    csv_path.write_text("\n".join(rows) + "\n")
    out = _run_tags(class_folders, "csv_names", "--tags", str(csv_path))
    _same_as_masks(class_folders, out)


def test_csv_with_01_columns_gives_the_labels_of_the_masks(class_folders):
    csv_path = class_folders["tmp"] / "tags_01.csv"
    rows = ["image,building"]
    for name, label in class_folders["labels"].items():  # relative paths with a Windows separator
        rows.append(f"{class_folders['folder_of'][name]}\\images\\{name}.jpg,{int(label[0])}")
    csv_path.write_text("\n".join(rows) + "\n")
    out = _run_tags(class_folders, "csv_01", "--tags", str(csv_path))
    _same_as_masks(class_folders, out)


def test_tag_errors_are_found_up_front_and_name_the_problem(class_folders, capsys):
    tmp = class_folders["tmp"]
    names = sorted(class_folders["labels"])
    bad = tmp / "bad.csv"
    bad.write_text("image,classes\n" + f"{names[0]}.jpg,biulding\n")
    with pytest.raises(SystemExit):
        _run_tags(class_folders, "bad1", "--tags", str(bad))
    assert "bad.csv:2: unknown class 'biulding'" in capsys.readouterr().err
    typo = tmp / "typo.csv"
    typo.write_text("image,classes\n" + "".join(f"{n}.jpg,\n" for n in names) + "image_part_999.jpg,building\n")
    with pytest.raises(SystemExit):
        _run_tags(class_folders, "bad2", "--tags", str(typo))
    assert f"line {len(names) + 2}: no image 'image_part_999.jpg'" in capsys.readouterr().err
    short = tmp / "short.csv"
    short.write_text("image,classes\n" + f"{names[0]}.jpg,building\n")
    with pytest.raises(SystemExit):
        _run_tags(class_folders, "bad3", "--tags", str(short))
    assert f"no row for {len(names) - 1} of {len(names)} images" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _run_tags(class_folders, "bad4", "--class_folders", "Buildings:building")
    err = capsys.readouterr().err
    assert "maps no folder" in err and "'forest'" in err
    assert not os.path.exists(tmp / "bad4" / "cls_labels.npy")


def test_tiling_tagged_images_is_refused_with_the_reason(class_folders, tmp_path, capsys):
    with pytest.raises(SystemExit):
        prepare.main(["--images", str(class_folders["layout"]), "--classes", "building", "--patch_size", "32",
                      "--out_root", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert "larger than --patch_size 32" in err and "whole image" in err and "--tags_per_patch" in err
    assert not os.path.exists(tmp_path / "out")  # checked before anything was written
    summary = prepare.prepare(str(class_folders["layout"]), None, classes=["building"], patch_size=32,
                              out_root=str(tmp_path / "patches"), quiet=True, tags_per_patch=True)
    assert summary["num_patches"] == 4 * len(class_folders["labels"])


def test_pipeline_without_masks_runs_and_eval_passes_skip(class_folders):
    """Every pass on the tag-only data set; eval passes log one line and skip; progress lines reach the log."""
    tmp = class_folders["tmp"] / "pipeline"
    root = str(class_folders["tagged"])
    folders = _run_tags(class_folders, "pipeline_labels", "--class_folders", "Buildings:building", "forest:")
    shutil.copy(folders / "cls_labels.npy", os.path.join(root, "cls_labels.npy"))
    train, pos = str(folders / "list.txt"), str(folders / "pos.txt")
    log = tmp / "log"
    common = ["--voc12_root", root, "--log_name", str(log), "--quiet", "True", "--cam_scales", "1.0",
              "--cam_crop_size", "64", "--cam_batch_size", "4", "--cam_num_epochs", "1",
              "--cam_weights_name", str(tmp / "cam.pth"), "--irn_weights_name", str(tmp / "irn.pth"),
              "--seg_weights_name", str(tmp / "seg.pth"), "--cam_out_dir", str(tmp / "cam"),
              "--ir_label_out_dir", str(tmp / "ir"), "--sem_seg_out_dir", str(tmp / "sem"),
              "--ins_seg_out_dir", str(tmp / "ins"), "--seg_out_dir", str(tmp / "seg"),
              "--report_path", str(tmp / "report.html"), "--cam_num_overlays", "1", "--seg_num_overlays", "1"]
    assert run_sample.main(common + ["--train_list", train, "--infer_list", train, "--train_cam_pass",
                                     "--make_cam_pass", "--eval_cam_pass"]) == 0
    assert run_sample.main(common + ["--infer_list", train, "--adv_iter", "1", "--make_adv_cam_pass",
                                     "--cam_out_dir", str(tmp / "cam_adv")]) == 0
    assert run_sample.main(common + [
        "--train_list", pos, "--infer_list", train, "--cam_to_ir_label_pass", "--conf_fg_thres", "0.5",
        "--conf_bg_thres", "0.3", "--train_irn_pass", "--irn_crop_size", "64", "--irn_batch_size", "4",
        "--irn_num_epochs", "1", "--exp_times", "2", "--make_sem_seg_pass", "--eval_sem_seg_pass",
        "--make_ins_seg_pass", "--eval_ins_seg_pass"]) == 0
    assert run_sample.main(common + [
        "--train_list", train, "--train_seg_pass", "--seg_crop_size", "64", "--seg_batch_size", "4",
        "--seg_num_epochs", "1", "--seg_head_channels", "16", "--eval_seg_pass", "--seg_val_list", train,
        "--infer_list", train, "--report_pass"]) == 0
    text = (tmp / "log.log").read_text()
    for name in ("eval_cam", "eval_sem_seg", "eval_ins_seg", "eval_seg"):
        assert f"{name}: skipped: no ground truth" in text
    for sub, name in (("cam", "eval_cam"), ("sem", "eval_sem_seg"), ("ins", "eval_ins_seg"), ("seg", "eval_seg")):
        assert not os.path.exists(artifacts.eval_json_path(str(tmp / sub), name))
    names = read_name_list(train)
    assert all(os.path.isfile(artifacts.sem_seg_path(str(tmp / "sem"), n)) for n in names)
    assert os.path.isfile(tmp / "seg.pth")
    assert "<img " in (tmp / "report.html").read_text(encoding="utf-8")  # pictures without any ground truth
    # outside a terminal (pytest captures stderr) the long loops log their progress into the log file
    assert "train_cam epoch 1/1: 1/" in text and "make_adv_cam: 1/" in text
    assert f"make_adv_cam: {len(names)}/{len(names)} it (100.0 %)" in text


def test_eval_with_masks_for_only_some_images_asks_for_a_list_of_them(class_folders, tmp_path):
    from data.labels import ground_truth_available

    root = tmp_path / "ref"
    shutil.copytree(class_folders["ref"], root)
    names = read_name_list(str(class_folders["ref_list"]))
    assert ground_truth_available(str(root), names, "eval_cam") is True
    os.remove(artifacts.mask_path(str(root), names[1]))
    with pytest.raises(ValueError, match=rf"eval_cam: 1 of {len(names)} images have no ground-truth mask .*"
                                         rf"{names[1]}.*--eval_list"):
        ground_truth_available(str(root), names, "eval_cam")
    assert ground_truth_available(str(class_folders["tagged"]), names, "eval_cam") is False
