"""Mask decoding with hand-made masks whose labels are worked out by hand."""
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from data.palettes import PALETTES, decode_mask, load_palette

B, L, R, V, W, U = (60, 16, 152), (132, 41, 246), (110, 193, 228), (254, 221, 58), (226, 169, 41), (155, 155, 155)
BLACK = (0, 0, 0)


def rgb(rows):
    return np.array(rows, dtype=np.uint8)  # (H, W, 3)


def test_dubai_building_unknown_and_ignore():
    mask = rgb([[B, B, L, R],
                [V, W, U, BLACK],
                [B, L, L, L],
                [(1, 2, 3), W, W, B]])
    label, n_unknown = decode_mask(mask, "dubai", ["building"])
    assert label.dtype == np.uint8 and label.shape == (4, 4)
    np.testing.assert_array_equal(label, [[1, 1, 0, 0],
                                          [0, 0, 255, 255],
                                          [1, 0, 0, 0],
                                          [255, 0, 0, 1]])
    assert n_unknown == 2  # black and (1, 2, 3); the unlabeled class is ignore but not unknown


def test_fg_order_and_all_mode():
    mask = rgb([[B, R, W, U]])
    label, _ = decode_mask(mask, "dubai", ["water", "building"])
    np.testing.assert_array_equal(label, [[2, 0, 1, 255]])
    label, _ = decode_mask(mask, "dubai", ["all"])  # building land road vegetation water -> 1..5
    np.testing.assert_array_equal(label, [[1, 3, 5, 255]])
    label_none, _ = decode_mask(mask, "dubai", None)
    np.testing.assert_array_equal(label_none, label)


def test_unknown_fg_class_names_palette_classes():
    with pytest.raises(ValueError, match=r"'roof'.*building"):
        decode_mask(rgb([[B]]), "dubai", ["roof"])


def test_unknown_palette_lists_builtins():
    with pytest.raises(ValueError, match="dubai"):
        load_palette("nope")


def test_isprs_clutter_is_a_class():
    mask = rgb([[(255, 255, 255), (0, 0, 255), (255, 0, 0), (9, 9, 9)]])
    label, n_unknown = decode_mask(mask, "isprs", ["building", "clutter"])
    np.testing.assert_array_equal(label, [[0, 1, 2, 255]])
    assert n_unknown == 1


def test_json_palette_title_hex_and_list_colours(tmp_path):
    path = tmp_path / "pal.json"
    path.write_text(json.dumps({"classes": [{"title": "Building", "color": "#3C1098"},
                                            {"name": "Land (unpaved area)", "color": [132, 41, 246]},
                                            {"title": "Unlabeled", "color": "#9B9B9B"}]}))
    pal = load_palette(str(path))
    assert pal.class_names == ["building", "land", "unlabeled"]
    assert pal.ignore_names == ["unlabeled"]  # default ignore name
    label, n_unknown = decode_mask(rgb([[B, L, U, W]]), str(path), ["building"])
    np.testing.assert_array_equal(label, [[1, 0, 255, 255]])
    assert n_unknown == 1


def test_json_palette_explicit_ignore_and_bad_colour(tmp_path):
    path = tmp_path / "pal.json"
    path.write_text(json.dumps({"classes": [{"name": "a", "color": "#000001"}, {"name": "b", "color": "#000002"}],
                                "ignore": ["b"]}))
    label, _ = decode_mask(rgb([[(0, 0, 1), (0, 0, 2)]]), str(path), ["a"])
    np.testing.assert_array_equal(label, [[1, 255]])
    path.write_text(json.dumps({"classes": [{"name": "a", "color": "#00001"}]}))
    with pytest.raises(ValueError, match="pal.json"):
        load_palette(str(path))


def test_binary_palette_one_and_three_channels():
    mask = np.array([[0, 255, 1, 7]], dtype=np.uint8)
    label, n_unknown = decode_mask(mask, "binary", ["building"])
    np.testing.assert_array_equal(label, [[0, 1, 1, 255]])
    assert n_unknown == 1
    mask3 = np.stack([mask, mask, mask], axis=-1)
    mask3[0, 0] = (0, 255, 0)  # channels disagree -> unknown
    label3, n_unknown3 = decode_mask(mask3, "binary", ["building"])
    np.testing.assert_array_equal(label3, [[255, 1, 1, 255]])
    assert n_unknown3 == 2


def test_index_palette_named_and_open():
    mask = np.array([[0, 1, 2, 255]], dtype=np.uint8)
    label, n_unknown = decode_mask(mask, "index:background,building,road", ["road"])
    np.testing.assert_array_equal(label, [[0, 0, 1, 255]])
    assert n_unknown == 0  # 255 is the ignore value, not unknown
    label, n_unknown = decode_mask(np.array([[0, 1, 3, 255]], np.uint8), "index:background,building", ["building"])
    np.testing.assert_array_equal(label, [[0, 1, 255, 255]])
    assert n_unknown == 1  # value 3 is not a named class
    label, _ = decode_mask(mask, "index", ["class_2", "class_1"])
    np.testing.assert_array_equal(label, [[0, 2, 1, 255]])
    with pytest.raises(ValueError, match="all"):
        decode_mask(mask, "index", ["all"])


def test_full_size_mask_is_fast():
    import time

    rng = np.random.default_rng(0)
    colours = np.array(PALETTES["dubai"].colors + [BLACK], dtype=np.uint8)
    mask = colours[rng.integers(0, len(colours), size=(1480, 2149))]  # (H, W, 3)
    start = time.perf_counter()
    label, n_unknown = decode_mask(mask, "dubai", ["building"])
    assert time.perf_counter() - start < 2.0
    assert n_unknown == int((mask == 0).all(axis=-1).sum())
    assert set(np.unique(label)) <= {0, 1, 255}


@settings(max_examples=60, deadline=None)
@given(mask=arrays(np.uint8, st.tuples(st.integers(1, 6), st.integers(1, 6), st.just(3)),
                   elements=st.one_of(st.sampled_from([0, 16, 41, 60, 152, 155, 221, 246, 255]),
                                     st.integers(0, 255))),
       fg=st.sampled_from([["building"], ["water", "road"], ["all"]]))
def test_decode_property(mask, fg):
    # a small alphabet of channel values makes palette colours (and near misses) likely
    pal = PALETTES["dubai"]
    label, n_unknown = decode_mask(mask, pal, fg)
    k = len(pal.valid_names) if fg == ["all"] else len(fg)
    assert label.shape == mask.shape[:2] and label.dtype == np.uint8
    assert set(np.unique(label)) <= set(range(k + 1)) | {255}
    known = np.zeros(mask.shape[:2], bool)
    for c in pal.colors:
        known |= (mask == np.array(c, np.uint8)).all(axis=-1)
    assert n_unknown == int((~known).sum())
    assert np.all(label[~known] == 255)
