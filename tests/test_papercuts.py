"""Papercuts a new user hits: symlinked folders and folder globs in data.prepare, every scene checked before writing,
write_numpy --train_list, list typos reported up front, overlay titles and legends."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

import run_sample
import write_numpy
from data import prepare, synthetic
from data.labels import read_checked_list
from misc import artifacts
from misc.io import load_png, save_text_lines
from misc.visualize import CLASS_COLORS, IGNORE_COLOR, legend_entries, side_by_side
from step.cam_to_ir_label import write_ir_overlay
from tests.tiny_data import make_cam_checkpoint, make_dataset



@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """Two tiles of two 64² scenes each, in the Dubai layout ("Tile 1/images", "Tile 1/masks", ...)."""
    out = tmp_path_factory.mktemp("papercuts") / "raw"
    synthetic.write_dataset(str(out), num_tiles=2, scenes_per_tile=2, size=(64, 64), seed=2)
    return out


def _prepare(images, masks, out_root, **kw):
    return prepare.prepare(str(images), str(masks) if masks else None, palette="dubai", fg_classes=["building"],
                           patch_size=0, out_root=str(out_root), quiet=True, **kw)


# --- data.prepare: finding files --------------------------------------------------------------------------------------

def test_prepare_follows_symlinked_folders(raw, tmp_path):
    linked = tmp_path / "linked"
    (linked / "Tile 2").mkdir(parents=True)
    os.symlink(raw / "Tile 1", linked / "Tile 1", target_is_directory=True)  # a symlinked tile folder
    for sub in ("images", "masks"):  # and symlinked role folders
        os.symlink(raw / "Tile 2" / sub, linked / "Tile 2" / sub, target_is_directory=True)
    os.symlink(linked, linked / "Tile 2" / "loop", target_is_directory=True)  # a loop must not hang the walk
    direct = _prepare(raw, raw, tmp_path / "direct")
    via_links = _prepare(linked, linked, tmp_path / "via_links")
    assert via_links["names"] == direct["names"] and len(direct["names"]) == 4


def test_a_glob_matching_folders_finds_the_files_inside(raw, tmp_path):
    direct = _prepare(raw, raw, tmp_path / "direct")
    globbed = _prepare(raw / "Tile *" / "images", raw / "Tile *" / "masks", tmp_path / "globbed")
    assert globbed["names"] == direct["names"]
    only_first = _prepare(raw / "Tile 1" / "images", raw / "Tile 1" / "masks", tmp_path / "one")
    assert len(only_first["names"]) == 2


# --- data.prepare: every scene is checked before anything is written ------------------------------------------------

@pytest.mark.parametrize("damage", ["unreadable", "size", "palette"])
def test_a_bad_later_scene_leaves_no_partial_dataset(raw, tmp_path, damage):
    import cv2

    copy = tmp_path / "raw"
    shutil.copytree(raw, copy)
    image, mask = synthetic.dataset_paths(str(copy), 2, 2)  # the last scene, processed last
    if damage == "unreadable":
        open(image, "wb").write(b"not a jpeg")
        match = "corrupt or unreadable"
    elif damage == "size":
        cv2.imwrite(mask, cv2.imread(mask)[:32])
        match = "size mismatch"
    else:
        cv2.imwrite(mask, np.full((64, 64, 3), 7, np.uint8))  # a colour no Dubai class has
        match = "100 % of its pixels have colours"
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=match) as err:
        _prepare(copy, copy, out, list_out=str(tmp_path / "all.txt"))
    assert "image_part_002" in str(err.value)
    assert not os.path.exists(out) and not os.path.exists(tmp_path / "all.txt")


# --- write_numpy --------------------------------------------------------------------------------------------------

def test_write_numpy_accepts_train_list_as_its_list_flag(raw, tmp_path):
    root = tmp_path / "data"
    summary = _prepare(raw, raw, root)
    save_text_lines(str(tmp_path / "two.txt"), summary["names"][:2])
    common = ["--voc12_root", str(root), "--out_pos_list", str(tmp_path / "pos.txt"), "--quiet"]
    by_list = write_numpy.main(common + ["--list", str(tmp_path / "two.txt"), "--out_list", str(tmp_path / "a.txt")])
    by_train_list = write_numpy.main(common + ["--train_list", str(tmp_path / "two.txt"),
                                               "--out_list", str(tmp_path / "b.txt")])
    assert by_list["num_patches"] == by_train_list["num_patches"] == 2
    assert open(tmp_path / "a.txt").read() == open(tmp_path / "b.txt").read()


# --- list typos: reported up front for the whole list -----------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("typo")
    d = make_dataset(str(tmp), scenes=2)
    d["names"] = open(d["train"]).read().split()
    d["cam_weights"] = make_cam_checkpoint(str(tmp / "cam.pth"))
    return d


def _run(tmp_path, *argv):
    return run_sample.main(["--quiet", "True", "--device", "cpu", "--log_name", str(tmp_path / "log"),
                            "--cam_scales", "1.0", "--cam_num_overlays", "0", *argv])


@pytest.mark.parametrize("pass_flag", ["--make_cam_pass", "--eval_cam_pass", "--cam_to_ir_label_pass"])
def test_a_typo_in_the_list_is_reported_before_any_image_is_done(tiny, tmp_path, capsys, pass_flag):
    names = list(tiny["names"])
    typo = names[-1][:-1] + "9"  # ..._x0064 -> ..._x0069: no such patch
    save_text_lines(str(tmp_path / "list.txt"), names[:-1] + [typo, "another_typo"])
    list_flag = "--train_list" if pass_flag == "--cam_to_ir_label_pass" else "--infer_list"
    assert _run(tmp_path, pass_flag, "--voc12_root", tiny["root"], list_flag, str(tmp_path / "list.txt"),
                "--cam_weights_name", tiny["cam_weights"], "--cam_out_dir", str(tmp_path / "cam"),
                "--ir_label_out_dir", str(tmp_path / "ir")) == 2
    err = capsys.readouterr().err
    assert f"2 of {len(names) + 1} listed images not found" in err and typo in err and "typo" in err
    done = [f for out in ("cam", "ir") if os.path.isdir(tmp_path / out)
            for f in os.listdir(tmp_path / out) if f.endswith((".npz", ".png"))]
    assert done == []  # reported before the first image was done


def test_a_name_without_image_level_label_is_reported_up_front(tiny, tmp_path):
    from data.labels import load_cls_labels

    labels = load_cls_labels(artifacts.cls_labels_path(tiny["root"]))
    dropped = tiny["names"][0]
    del labels[dropped]  # its image exists, its label does not
    with pytest.raises(ValueError, match=rf"1 of 3 names have no image-level label .*{dropped}"):
        read_checked_list(_list(tmp_path, tiny["names"][:3]), tiny["root"], cls_labels=labels)
    assert read_checked_list(_list(tmp_path, tiny["names"][1:3]), tiny["root"], cls_labels=labels) == \
        tiny["names"][1:3]


def _list(tmp_path, names):
    path = str(tmp_path / "names.txt")
    save_text_lines(path, names)
    return path


# --- overlays: panel titles and a legend ----------------------------------------------------------------------------

def _dark(region):
    return int((region.min(axis=2) < 100).sum())


def test_side_by_side_writes_a_title_over_each_panel_and_a_legend(tmp_path):
    panels = [np.full((40, 60, 3), 200, np.uint8) for _ in range(3)]
    plain = side_by_side(panels)
    titled = side_by_side(panels, titles=["image", "CAM", "label"], legend=legend_entries(["background", "building"]))
    assert plain.shape == (40, 3 * 60 + 2 * 4, 3)
    assert titled.shape == (16 + 40 + 18, 3 * 60 + 2 * 4, 3)
    assert np.array_equal(titled[16:56], plain)  # the panels themselves are untouched
    for i in range(3):  # text in each panel's own title cell
        assert _dark(titled[:16, i * 64:i * 64 + 60]) > 10
    legend = titled[56:]
    assert (legend == CLASS_COLORS[1]).all(axis=2).sum() >= 50  # the building swatch
    with pytest.raises(ValueError, match="2 titles for 3 panels"):
        side_by_side(panels, titles=["a", "b"])


def test_ir_label_overlay_is_image_strongest_cam_ir_label_with_a_legend(tmp_path):
    image = np.full((48, 48, 3), 180, np.uint8)
    high_res = np.zeros((1, 48, 48), np.float32)
    high_res[0, 10:30, 10:30] = 1.0
    label = np.zeros((48, 48), np.uint8)
    label[12:28, 12:28] = 1
    label[0:4] = 255
    write_ir_overlay(str(tmp_path), "x", image, high_res, label, ["background", "building"])
    picture = load_png(artifacts.overlay_path(str(tmp_path), "x"))
    assert picture.shape[1] == 3 * 48 + 2 * 4 and picture.shape[0] > 16 + 48
    third = picture[16:64, 2 * 52:2 * 52 + 48]  # the IR label in colour
    assert (third[20, 20] == CLASS_COLORS[1]).all() and (third[1, 1] == IGNORE_COLOR).all()
    legend = picture[64:]
    for color in (CLASS_COLORS[0], CLASS_COLORS[1], IGNORE_COLOR):  # background, building, unsure
        assert (legend == color).all(axis=2).sum() >= 50
