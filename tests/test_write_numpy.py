"""Image-level labels from hand-made patch masks: positive, negative, ambiguous, empty."""
import json
import os

import numpy as np
import pytest

import write_numpy
from data.labels import (image_level_labels, load_class_names, load_cls_labels, read_name_list,
                         save_cls_labels)
from misc.io import save_png


def _mask(building_pixels, ignore_pixels=0, size=10):
    """(size, size) uint8 label with the first pixels building (1), the last ones ignore (255)."""
    flat = np.zeros(size * size, np.uint8)
    flat[:building_pixels] = 1
    if ignore_pixels:
        flat[-ignore_pixels:] = 255
    return flat.reshape(size, size)


def test_image_level_labels_rule():
    assert image_level_labels(_mask(5), 1).tolist() == [1]  # share 0.05 >= 0.05
    assert image_level_labels(_mask(0), 1).tolist() == [0]
    assert image_level_labels(_mask(4), 1) is None  # 0.04: ambiguous
    assert image_level_labels(_mask(4, ignore_pixels=20), 1).tolist() == [1]  # 4 / 80 = 0.05 of valid pixels
    assert image_level_labels(_mask(0, ignore_pixels=100), 1) is None  # no valid pixel
    assert image_level_labels(_mask(4), 1, pos_thres=0.04).tolist() == [1]
    two = np.array([[1, 2, 0, 0], [0, 0, 0, 0]], np.uint8)  # shares 1/8, 1/8
    assert image_level_labels(two, 2).tolist() == [1, 1]
    with pytest.raises(ValueError, match="label 3"):
        image_level_labels(np.array([[3]], np.uint8), 2)
    with pytest.raises(ValueError, match="neg_thres"):
        image_level_labels(two, 2, pos_thres=0.1, neg_thres=0.2)


@pytest.fixture
def voc_root(tmp_path):
    root = tmp_path / "voc"
    (root / "SegmentationClassAug").mkdir(parents=True)
    (root / "classes.json").write_text(json.dumps({"classes": ["background", "building"], "ignore_index": 255}))
    masks = {"pos": _mask(30), "neg": _mask(0, ignore_pixels=10), "amb": _mask(2), "void": _mask(0, 100),
             "unlisted": _mask(50)}
    for name, mask in masks.items():
        save_png(str(root / "SegmentationClassAug" / f"{name}.png"), mask)
    (root / "all.txt").write_text("# patches\npos\n\nneg\namb\nvoid\n")
    return root


def test_write_numpy_lists_and_labels(voc_root):
    out_list, out_pos = voc_root / "train.txt", voc_root / "train_pos.txt"
    summary = write_numpy.main(["--voc12_root", str(voc_root), "--list", str(voc_root / "all.txt"),
                                "--out_list", str(out_list), "--out_pos_list", str(out_pos), "--quiet"])
    assert read_name_list(str(out_list)) == ["neg", "pos"]
    assert read_name_list(str(out_pos)) == ["pos"]
    labels = load_cls_labels(str(voc_root / "cls_labels.npy"))
    assert set(labels) == {"neg", "pos"}
    assert labels["pos"].tolist() == [1.0] and labels["neg"].tolist() == [0.0]
    assert labels["pos"].dtype == np.float32
    assert summary["kept"] == 2 and summary["positive"] == {"building": 1} and summary["negative"] == 1
    assert summary["dropped_ambiguous"] == 1 and summary["dropped_no_valid"] == 1


def test_write_numpy_default_list_and_path(voc_root, tmp_path):
    custom = tmp_path / "labels.npy"
    summary = write_numpy.main(["--voc12_root", str(voc_root), "--out_list", str(tmp_path / "a.txt"),
                                "--out_pos_list", str(tmp_path / "b.txt"), "--cls_labels_path", str(custom),
                                "--quiet"])
    assert summary["kept"] == 3  # every PNG: pos, neg, unlisted
    assert set(load_cls_labels(str(custom))) == {"neg", "pos", "unlisted"}
    assert not (voc_root / "cls_labels.npy").exists()


def test_all_dropped_is_an_error(voc_root, tmp_path):
    (voc_root / "amb.txt").write_text("amb\nvoid\n")
    with pytest.raises(SystemExit):
        write_numpy.main(["--voc12_root", str(voc_root), "--list", str(voc_root / "amb.txt"),
                          "--out_list", str(tmp_path / "a.txt"), "--out_pos_list", str(tmp_path / "b.txt")])
    assert not (tmp_path / "a.txt").exists()


def test_cls_labels_round_trip_without_pickle(tmp_path):
    path = str(tmp_path / "cls_labels.npy")
    labels = np.array([[1, 0, 1], [0, 0, 0]], np.uint8)
    save_cls_labels(path, ["a_long_name", "b"], labels)
    raw = np.load(path, allow_pickle=False)
    assert raw.dtype.names == ("name", "labels") and raw["labels"].shape == (2, 3)
    loaded = load_cls_labels(path)
    assert loaded["a_long_name"].tolist() == [1, 0, 1] and loaded["b"].tolist() == [0, 0, 0]
    assert not [f for f in os.listdir(tmp_path) if f != "cls_labels.npy"]  # no temp file left behind


def test_load_cls_labels_rejects_pickle_wrong_dtype_and_missing(tmp_path):
    pickled = tmp_path / "old.npy"
    np.save(pickled, np.array({"a": np.zeros(1)}, dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="old.npy"):
        load_cls_labels(str(pickled))
    plain = tmp_path / "plain.npy"
    np.save(plain, np.zeros((2, 3), np.uint8))
    with pytest.raises(ValueError, match="plain.npy"):
        load_cls_labels(str(plain))
    with pytest.raises(FileNotFoundError, match="nope.npy"):
        load_cls_labels(str(tmp_path / "nope.npy"))
    (tmp_path / "bad.npy").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="bad.npy"):
        load_cls_labels(str(tmp_path / "bad.npy"))


def test_read_name_list_errors(tmp_path):
    path = tmp_path / "l.txt"
    path.write_text("a\nb\na\n")
    with pytest.raises(ValueError, match=r"l\.txt.*'a'"):
        read_name_list(str(path))
    path.write_text("# only a comment\n\n")
    with pytest.raises(ValueError, match="empty"):
        read_name_list(str(path))
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        read_name_list(str(tmp_path / "missing.txt"))


def test_load_class_names(voc_root, tmp_path):
    assert load_class_names(str(voc_root)) == ["background", "building"]
    with pytest.raises(FileNotFoundError, match="classes.json"):
        load_class_names(str(tmp_path))
