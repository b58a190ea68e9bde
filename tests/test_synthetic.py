"""The synthetic aerial generator: determinism, label statistics, and the Dubai on-disk layout it writes."""
from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from data import synthetic
from data.palettes import decode_mask
from data.synthetic import (BUILDING, CLASS_NAMES, STRAY_COLOR, add_stray_pixels, generate_scene, scene_seed,
                            write_dataset)

# The colours actually used in the real Dubai masks (data/README.md), typed out by hand: a drift in the palette
# module or in the generator must fail here.
DUBAI_RGB = {
    "building": (60, 16, 152),
    "land": (132, 41, 246),
    "road": (110, 193, 228),
    "vegetation": (254, 221, 58),
    "water": (226, 169, 41),
    "unlabeled": (155, 155, 155),
}


def _read_rgb(path: str) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _label_of_mask(mask: np.ndarray) -> np.ndarray:
    """Colour mask -> class index by the hand-typed palette; 255 for any other colour."""
    label = np.full(mask.shape[:2], 255, np.uint8)
    for index, name in enumerate(CLASS_NAMES):
        label[(mask == DUBAI_RGB[name]).all(-1)] = index
    return label


def test_same_seed_same_scene_and_other_seed_differs():
    image, label = generate_scene((96, 160), seed=7)
    again_image, again_label = generate_scene((96, 160), seed=7)
    assert image.shape == (96, 160, 3) and image.dtype == np.uint8
    assert label.shape == (96, 160) and label.dtype == np.uint8
    np.testing.assert_array_equal(image, again_image)
    np.testing.assert_array_equal(label, again_label)
    other_image, other_label = generate_scene((96, 160), seed=8)
    assert not np.array_equal(image, other_image)
    assert not np.array_equal(label, other_label)


def test_generator_uses_no_global_random_state():
    np.random.seed(0)
    first = generate_scene((64, 64), seed=3)[0]
    np.random.seed(123)
    np.random.random(10)
    np.testing.assert_array_equal(first, generate_scene((64, 64), seed=3)[0])


def test_palette_is_the_true_dubai_palette():
    colors = synthetic.dubai_colors()
    assert [tuple(int(v) for v in c) for c in colors] == [DUBAI_RGB[n] for n in CLASS_NAMES]
    assert STRAY_COLOR not in DUBAI_RGB.values()


@pytest.fixture(scope="module")
def scenes_512():
    return [generate_scene((512, 512), seed=s) for s in range(8)]


def test_labels_in_range_and_classes_present(scenes_512):
    labels = np.stack([label for _, label in scenes_512])
    assert labels.max() < len(CLASS_NAMES)
    shares = np.bincount(labels.ravel(), minlength=len(CLASS_NAMES)) / labels.size
    # roughly Dubai's mix (building 16 %, land 42 %, road 9 %, vegetation 12 %, water 20 %)
    assert 0.12 <= shares[BUILDING] <= 0.28, shares
    assert 0.30 <= shares[CLASS_NAMES.index("land")] <= 0.60, shares
    for name in ("road", "vegetation", "water"):
        assert 0.05 <= shares[CLASS_NAMES.index(name)] <= 0.25, (name, shares)


def test_image_level_labels_have_negatives(scenes_512):
    # 128x128 patches, as the pipeline tiles them: a good share must hold no building pixel at all
    without = []
    for _, label in scenes_512:
        patches = label.reshape(4, 128, 4, 128).transpose(0, 2, 1, 3).reshape(16, -1)
        without.extend((patches == BUILDING).sum(1) == 0)
    share = float(np.mean(without))
    assert 0.2 <= share <= 0.55, share


def test_buildings_look_different_from_the_ground(scenes_512):
    # a weak classifier needs cues: roofs are brighter/different on average than their 3 px surroundings
    image, label = scenes_512[1]
    building = (label == BUILDING).astype(np.uint8)
    assert building.any()
    ring = (cv2.dilate(building, np.ones((7, 7), np.uint8)) > 0) & (building == 0)
    grey = image.astype(np.float32).mean(-1)
    assert abs(grey[building > 0].mean() - grey[ring].mean()) > 10


def test_add_stray_pixels_respects_the_share():
    mask = np.zeros((100, 120, 3), np.uint8)
    mask[:] = DUBAI_RGB["land"]
    out = add_stray_pixels(mask, 0.005, np.random.default_rng(0))
    black = (out == 0).all(-1).sum()
    assert 0.5 * 0.005 * mask.size / 3 <= black <= 0.005 * mask.size / 3
    assert (mask == DUBAI_RGB["land"]).all()  # the input is not modified
    np.testing.assert_array_equal(add_stray_pixels(mask, 0.0, np.random.default_rng(0)), mask)
    with pytest.raises(ValueError):
        add_stray_pixels(mask, 1.5, np.random.default_rng(0))


def test_write_dataset_layout_and_contents(tmp_path):
    out = str(tmp_path / "synthetic_raw")
    written = write_dataset(out, num_tiles=2, scenes_per_tile=2, size=(96, 128), seed=0, stray_pixel_share=0.004)
    expected = [(os.path.join(out, f"Tile {t}", "images", f"image_part_00{k}.jpg"),
                 os.path.join(out, f"Tile {t}", "masks", f"image_part_00{k}.png")) for t in (1, 2) for k in (1, 2)]
    assert [tuple(map(str, pair)) for pair in written] == expected
    n_with_stray = 0
    for (image_path, mask_path), (tile, part) in zip(expected, [(1, 1), (1, 2), (2, 1), (2, 2)]):
        image, mask = _read_rgb(image_path), _read_rgb(mask_path)
        assert image.shape == mask.shape == (96, 128, 3)
        scene_image, scene_label = generate_scene((96, 128), scene_seed(0, tile, part))
        # the JPEG (quality 95) is the scene, in RGB order: a channel swap would be far off
        error = np.abs(image.astype(np.float32) - scene_image).mean()
        swapped = np.abs(image[..., ::-1].astype(np.float32) - scene_image).mean()
        assert error < 4 and swapped > error + 2, (error, swapped)
        # the mask is the label in Dubai colours, except a few deliberate black stray pixels
        label = _label_of_mask(mask)
        stray = (mask == STRAY_COLOR).all(-1)
        assert np.all((label != 255) | stray), "mask holds a colour outside the Dubai palette"
        assert stray.mean() <= 0.004
        np.testing.assert_array_equal(label[~stray], scene_label[~stray])
        # the loaders' decoder reads it: every stray pixel, and nothing else, is unknown
        decoded, n_unknown = decode_mask(mask, "dubai", ["building"])
        assert n_unknown == stray.sum()
        np.testing.assert_array_equal(decoded == 1, (scene_label == BUILDING) & ~stray)
        n_with_stray += bool(stray.any())
    assert 1 <= n_with_stray < 4  # some masks, not all (seed 0 blackens spots in 2 of the 4)
    # atomic writes: nothing but the final files is left behind
    files = sorted(os.path.relpath(os.path.join(d, f), out) for d, _, fs in os.walk(out) for f in fs)
    assert files == sorted(os.path.relpath(p, out) for pair in expected for p in pair)


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    real_imencode = cv2.imencode

    def failing_png(ext, *args, **kwargs):
        if ext == ".png":
            raise RuntimeError("disk full")
        return real_imencode(ext, *args, **kwargs)

    monkeypatch.setattr(cv2, "imencode", failing_png)
    out = tmp_path / "synthetic_raw"
    with pytest.raises(RuntimeError):
        write_dataset(str(out), num_tiles=1, scenes_per_tile=1, size=(64, 64), seed=0)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == ["Tile 1/images/image_part_001.jpg"]


def test_cli_writes_the_layout(tmp_path):
    out = tmp_path / "raw"
    synthetic.main(["--out", str(out), "--num_tiles", "1", "--scenes_per_tile", "2", "--size", "64", "80",
                    "--seed", "5", "--preview", str(tmp_path / "preview.png")])
    for k in (1, 2):
        image = _read_rgb(str(out / "Tile 1" / "images" / f"image_part_00{k}.jpg"))
        assert image.shape == (64, 80, 3)
        assert (out / "Tile 1" / "masks" / f"image_part_00{k}.png").is_file()
    assert _read_rgb(str(tmp_path / "preview.png")).shape == (64, 160, 3)
