"""Pairing, naming and tiling of data.prepare on a generated Dubai-like folder tree (spaces in names)."""
import json
import os

import cv2
import numpy as np
import pytest

from data.labels import read_name_list
from data.prepare import find_pairs, main, prepare, scene_name, tile_windows, window_starts
from misc.io import load_png

BUILDING, LAND = (60, 16, 152), (132, 41, 246)


def _write_png(path, rgb):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    buf.tofile(path)


def _write_jpg(path, rgb):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    buf.tofile(path)


def _scene(h, w, colour, seed=0):
    image = np.random.default_rng(seed).integers(0, 255, size=(h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w, 3), np.uint8)
    mask[:] = colour
    return image, mask


@pytest.fixture
def dubai_tree(tmp_path):
    """Two tiles holding the same file name; Tile 1 is all building, Tile 2 all land (one stray black pixel)."""
    root = tmp_path / "aerial data"
    img1, m1 = _scene(40, 48, BUILDING, seed=1)
    img2, m2 = _scene(40, 48, LAND, seed=2)
    m2[0, 0] = 0
    _write_jpg(str(root / "Tile 1" / "images" / "image_part_001.jpg"), img1)
    _write_png(str(root / "Tile 1" / "masks" / "image_part_001.png"), m1)
    _write_jpg(str(root / "Tile 2" / "images" / "image_part_001.jpg"), img2)
    _write_png(str(root / "Tile 2" / "masks" / "image_part_001.png"), m2)
    (root / "classes.json").write_text("{}")  # the shipped (wrong) class file must be ignored
    return root


def test_window_starts_shift_last_window_back():
    assert window_starts(100, 32, 32) == [0, 32, 64, 68]
    assert window_starts(70, 32, 32) == [0, 32, 38]
    assert window_starts(64, 32, 32) == [0, 32]
    assert window_starts(20, 32, 32) == [0]
    assert window_starts(100, 32, 48) == [0, 48, 68]


def test_tile_windows_100x70():
    windows = tile_windows(70, 100, 32, 32)  # height 70, width 100
    assert len(windows) == 12
    assert {(y, x) for y, x, _, _ in windows} == {(y, x) for y in (0, 32, 38) for x in (0, 32, 64, 68)}
    assert all((h, w) == (32, 32) for _, _, h, w in windows)
    covered = np.zeros((70, 100), bool)
    for y, x, h, w in windows:
        covered[y:y + h, x:x + w] = True
    assert covered.all()
    assert tile_windows(20, 100, 32, 32)[0] == (0, 0, 20, 32)  # short axis kept whole
    assert tile_windows(70, 100, 0, 0) == [(0, 0, 70, 100)]


def test_scene_name():
    assert scene_name("Tile 1/image_part_001") == "Tile_1__image_part_001"


def test_pairing_same_root_uses_images_masks_components(dubai_tree):
    pairs = find_pairs(str(dubai_tree), str(dubai_tree))
    assert [k for k, _, _ in pairs] == ["Tile 1/image_part_001", "Tile 2/image_part_001"]
    for key, image, mask in pairs:
        assert os.sep + "images" + os.sep in image and os.sep + "masks" + os.sep in mask
        assert key.split("/")[0] in image and key.split("/")[0] in mask


def test_prepare_names_labels_and_outputs(dubai_tree, tmp_path):
    out = tmp_path / "out root"
    list_out = tmp_path / "lists" / "all.txt"
    summary = prepare(str(dubai_tree), str(dubai_tree), "dubai", ["building"], 32, None, str(out), str(list_out))
    # 40x48 scene, patch 32 -> y in (0, 8), x in (0, 16): 4 patches per scene
    names = read_name_list(str(list_out))
    assert names == sorted(names) and len(names) == 8 == summary["num_patches"]
    assert "Tile_1__image_part_001__y0008_x0016" in names and "Tile_2__image_part_001__y0000_x0000" in names
    assert summary["unknown_pixels"] == 1
    for name in names:
        label = load_png(str(out / "SegmentationClassAug" / f"{name}.png"))
        assert label.shape == (32, 32) and label.dtype == np.uint8
        image = cv2.imdecode(np.fromfile(str(out / "JPEGImages" / f"{name}.jpg"), np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (32, 32, 3)
        if name.startswith("Tile_1"):
            assert (label == 1).all()  # building tile
        elif name.endswith("y0000_x0000"):
            assert label[0, 0] == 255 and (label.ravel()[1:] == 0).all()  # the stray black pixel
        else:
            assert (label == 0).all()
    meta = json.loads((out / "classes.json").read_text())
    assert meta["classes"] == ["background", "building"] and meta["ignore_index"] == 255
    assert meta["patch_size"] == 32 and meta["stride"] == 32 and meta["palette"] == "dubai"

    # the image patch is the matching crop of its scene (JPEG twice -> compare loosely)
    scene = cv2.imdecode(np.fromfile(str(dubai_tree / "Tile 2" / "images" / "image_part_001.jpg"), np.uint8),
                         cv2.IMREAD_COLOR)
    patch = cv2.imdecode(np.fromfile(str(out / "JPEGImages" / "Tile_2__image_part_001__y0008_x0016.jpg"),
                                     np.uint8), cv2.IMREAD_COLOR)
    diff = np.abs(scene[8:40, 16:48].astype(int) - patch.astype(int)).mean()
    other = np.abs(scene[0:32, 0:32].astype(int) - patch.astype(int)).mean()
    assert diff < 10 < other


def test_separate_roots_and_cli(tmp_path):
    img, mask = _scene(20, 20, BUILDING)
    _write_png(str(tmp_path / "imgs" / "a b.png"), img)
    _write_png(str(tmp_path / "gt" / "a b.png"), mask)
    out = tmp_path / "o"
    summary = main(["--images", str(tmp_path / "imgs"), "--masks", str(tmp_path / "gt"), "--patch_size", "0",
                    "--out_root", str(out), "--list_out", str(out / "l.txt"), "--image_ext", "png",
                    "--quiet", "true"])
    assert summary["names"] == ["a_b"]
    assert (out / "JPEGImages" / "a_b.png").is_file()
    assert (load_png(str(out / "SegmentationClassAug" / "a_b.png")) == 1).all()


def test_min_valid_drops_mostly_ignored_patches(tmp_path):
    img, mask = _scene(32, 64, BUILDING)
    mask[:, 32:] = (155, 155, 155)  # right half unlabeled -> ignore
    _write_png(str(tmp_path / "i" / "s.png"), img)
    _write_png(str(tmp_path / "m" / "s.png"), mask)
    summary = prepare(str(tmp_path / "i"), str(tmp_path / "m"), "dubai", ["building"], 32, 32, str(tmp_path / "o"))
    assert summary["names"] == ["s__y0000_x0000"] and summary["num_dropped_min_valid"] == 1


def test_missing_mask_names_the_image(dubai_tree, tmp_path):
    os.remove(dubai_tree / "Tile 2" / "masks" / "image_part_001.png")
    with pytest.raises(FileNotFoundError, match=r"Tile 2.images.image_part_001\.jpg"):
        prepare(str(dubai_tree), str(dubai_tree), "dubai", ["building"], 32, None, str(tmp_path / "o"))


def test_size_mismatch_names_both_files(dubai_tree, tmp_path):
    _write_png(str(dubai_tree / "Tile 2" / "masks" / "image_part_001.png"), _scene(41, 48, LAND)[1])
    with pytest.raises(ValueError, match=r"size mismatch.*Tile 2.images.image_part_001\.jpg.*"
                                         r"Tile 2.masks.image_part_001\.png"):
        prepare(str(dubai_tree), str(dubai_tree), "dubai", ["building"], 32, None, str(tmp_path / "o"))


def test_ambiguous_partner_and_corrupt_file(dubai_tree, tmp_path):
    _write_png(str(dubai_tree / "Tile 1" / "images" / "image_part_001.png"), _scene(40, 48, LAND)[0])
    with pytest.raises(ValueError, match="ambiguous"):
        find_pairs(str(dubai_tree), str(dubai_tree))
    os.remove(dubai_tree / "Tile 1" / "images" / "image_part_001.png")
    (dubai_tree / "Tile 1" / "masks" / "image_part_001.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"Tile 1.masks.image_part_001\.png"):
        prepare(str(dubai_tree), str(dubai_tree), "dubai", ["building"], 32, None, str(tmp_path / "o"))


def test_rerun_is_consistent(dubai_tree, tmp_path):
    out = str(tmp_path / "o")
    first = prepare(str(dubai_tree), str(dubai_tree), "dubai", ["building"], 32, None, out, out + "/all.txt")
    second = prepare(str(dubai_tree), str(dubai_tree), "dubai", ["building"], 16, None, out, out + "/all.txt",
                     clean=True)
    assert read_name_list(out + "/all.txt") == second["names"]
    assert sorted(os.listdir(out + "/SegmentationClassAug")) == [f"{n}.png" for n in second["names"]]
    assert set(first["names"]) - set(second["names"])  # clean really had stale files to remove
    shared = "Tile_1__image_part_001__y0000_x0000"  # in both runs: overwritten with the new size
    assert shared in first["names"] and load_png(out + f"/SegmentationClassAug/{shared}.png").shape == (16, 16)
