"""Property-based tests (hypothesis) of the three readers every run depends on: the mask palette decoder, the name
list reader and the image-level label file. Each property is checked against a plain per-pixel / per-line reference.
"""
import os
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from data.labels import load_cls_labels, read_name_list, save_cls_labels
from data.palettes import IGNORE_INDEX, Palette, decode_mask, load_palette

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- palette decoder ------------------------------------------------------------------------------------------------

colors = st.tuples(*[st.integers(0, 255)] * 3)


@st.composite
def colour_palette_and_mask(draw):
    """A random colour palette (distinct colours, some ignore classes), foreground classes, and a mask drawn from its
    colours plus colours it does not know; returns (palette, fg, mask, expected label, expected unknown count)."""
    n = draw(st.integers(1, 6))
    palette_colors = draw(st.lists(colors, min_size=n, max_size=n, unique=True))
    names = [f"c{i}" for i in range(n)]
    ignore = draw(st.lists(st.sampled_from(names), unique=True, max_size=n - 1)) if n > 1 else []
    valid = [c for c in names if c not in ignore]
    fg = draw(st.lists(st.sampled_from(valid), unique=True, min_size=1, max_size=len(valid)))
    palette = Palette(name="random", class_names=names, colors=palette_colors, ignore_names=ignore)
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    strangers = draw(st.lists(colors.filter(lambda c: c not in palette_colors), min_size=1, max_size=3))
    choices = palette_colors + strangers
    picks = draw(st.lists(st.integers(0, len(choices) - 1), min_size=h * w, max_size=h * w))
    mask = np.array([choices[p] for p in picks], np.uint8).reshape(h, w, 3)
    # reference, pixel by pixel
    expected = np.empty((h, w), np.uint8)
    unknown = 0
    for i, p in enumerate(picks):
        if p >= n:
            value, unknown = IGNORE_INDEX, unknown + 1
        elif names[p] in ignore:
            value = IGNORE_INDEX
        elif names[p] in fg:
            value = fg.index(names[p]) + 1
        else:
            value = 0
        expected.flat[i] = value
    return palette, fg, mask, expected, unknown


@SETTINGS
@given(colour_palette_and_mask(), st.booleans())
def test_decode_colour_mask_matches_pixel_by_pixel_reference(case, with_alpha):
    palette, fg, mask, expected, unknown = case
    if with_alpha:  # an alpha channel carries no class
        mask = np.concatenate([mask, np.full(mask.shape[:2] + (1,), 7, np.uint8)], axis=2)
    label, n_unknown = decode_mask(mask, palette, fg)
    assert label.dtype == np.uint8 and label.shape == expected.shape
    np.testing.assert_array_equal(label, expected)
    assert n_unknown == unknown
    assert set(np.unique(label)) <= set(range(len(fg) + 1)) | {IGNORE_INDEX}


@SETTINGS
@given(st.integers(1, 8), st.data())
def test_decode_index_mask(num_classes, data):
    """index:<names>: value v < num_classes is class v, 255 is ignore, anything else unknown (also ignore)."""
    names = [f"k{i}" for i in range(num_classes)]
    fg = data.draw(st.lists(st.sampled_from(names), unique=True, min_size=1, max_size=num_classes))
    mask = data.draw(st.lists(st.integers(0, 255), min_size=1, max_size=30)).copy()
    mask = np.array(mask, np.uint8).reshape(1, -1)
    label, n_unknown = decode_mask(mask, load_palette("index:" + ",".join(names)), fg)
    for v, out in zip(mask.ravel(), label.ravel()):
        if v == IGNORE_INDEX or v >= num_classes:
            assert out == IGNORE_INDEX
        else:
            assert out == (fg.index(names[v]) + 1 if names[v] in fg else 0)
    assert n_unknown == int(((mask < 255) & (mask >= num_classes)).sum())


@SETTINGS
@given(st.lists(st.sampled_from([(60, 16, 152), (132, 41, 246), (155, 155, 155), (0, 0, 0), (1, 2, 3)]),
                min_size=1, max_size=40))
def test_dubai_unknown_colours_are_counted_and_ignored(pixels):
    mask = np.array(pixels, np.uint8).reshape(1, -1, 3)
    label, n_unknown = decode_mask(mask, "dubai", ["building"])
    assert n_unknown == sum(p in ((0, 0, 0), (1, 2, 3)) for p in pixels)
    expected = [1 if p == (60, 16, 152) else 0 if p == (132, 41, 246) else IGNORE_INDEX for p in pixels]
    assert label.ravel().tolist() == expected


# --- name lists -----------------------------------------------------------------------------------------------------

# A name is one line's content: no line break, no surrounding whitespace, not a comment; anything else goes (spaces
# inside, unicode). Surrogates cannot be written as UTF-8 at all.
names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), min_size=1,
                max_size=12).map(str.strip).filter(lambda s: bool(s) and not s.startswith("#"))
padding = st.text(" \t", max_size=3)
noise_lines = st.one_of(st.just(""), padding, st.builds(lambda p, c: p + "#" + c, padding,
                                                        st.text(st.characters(blacklist_categories=("Cs",),
                                                                              blacklist_characters="\r\n"),
                                                                max_size=8)))


@st.composite
def list_files(draw):
    """(file text, names in order): names with random padding, interleaved with blank/comment lines, LF or CRLF,
    with or without a UTF-8 byte-order mark (lists saved by Windows editors)."""
    items = draw(st.lists(names, max_size=8))
    lines = []
    for name in items:
        lines += draw(st.lists(noise_lines, max_size=2))
        lines.append(draw(padding) + name + draw(padding))
    lines += draw(st.lists(noise_lines, max_size=2))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    text = newline.join(lines) + draw(st.sampled_from(["", newline]))
    bom = draw(st.booleans())
    return ("\ufeff" if bom else "") + text, items


@SETTINGS
@given(list_files())
def test_read_name_list(case):
    text, items = case
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "list.txt")
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        if not items:
            with pytest.raises(ValueError, match="is empty"):
                read_name_list(path)
        elif len(set(items)) < len(items):
            first_dup = next(n for i, n in enumerate(items) if n in items[:i])
            with pytest.raises(ValueError, match="duplicate name") as err:
                read_name_list(path)
            assert repr(first_dup) in str(err.value) and path in str(err.value)
        else:
            assert read_name_list(path) == items


def test_read_name_list_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_name_list(str(tmp_path / "nope.txt"))


# --- cls_labels.npy -------------------------------------------------------------------------------------------------

# Patch names are file stems: no NUL (numpy's unicode dtype would also drop trailing NULs).
stems = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=16)


@SETTINGS
@given(st.lists(stems, unique=True, max_size=10), st.integers(1, 5), st.data())
def test_cls_labels_round_trip(names, num_classes, data):
    labels = np.array(data.draw(st.lists(st.lists(st.integers(0, 1), min_size=num_classes, max_size=num_classes),
                                         min_size=len(names), max_size=len(names))), np.uint8)
    labels = labels.reshape(len(names), num_classes)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "cls_labels.npy")
        save_cls_labels(path, names, labels)
        loaded = load_cls_labels(path)
        assert list(loaded) == list(names)
        for name, row in zip(names, labels):
            assert loaded[name].dtype == np.float32 and loaded[name].shape == (num_classes,)
            np.testing.assert_array_equal(loaded[name], row.astype(np.float32))
        assert not [f for f in os.listdir(tmp) if f != "cls_labels.npy"]  # no temporary file left


@SETTINGS
@given(st.lists(stems, min_size=1, max_size=6), st.integers(2, 255))
def test_cls_labels_rejects_duplicates_and_non_binary(names, bad_value):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "cls_labels.npy")
        with pytest.raises(ValueError, match="duplicate"):
            save_cls_labels(path, names + names[:1], np.zeros((len(names) + 1, 1), np.uint8))
        assume(len(set(names)) == len(names))
        labels = np.zeros((len(names), 2), np.int64)
        labels[-1, 1] = bad_value
        with pytest.raises(ValueError, match="0/1"):
            save_cls_labels(path, names, labels)
        assert not os.path.exists(path)

