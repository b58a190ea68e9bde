"""Sliding windows, footprint vectorization and the predict pass (GeoTIFF in → GeoTIFF + GeoJSON out). CPU, tiny."""
from __future__ import annotations

import json
import math
import os

import cv2
import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from rasterio.crs import CRS
from shapely.geometry import box, shape

import misc.sliding_window as sw
from misc.sliding_window import predict_sliding, ramp_weights, sliding_strips, window_grid, window_starts
from misc.vectorize import StripPolygonMerger, footprint_features, mask_to_polygons, polygons_to_mask
import predict as predict_entry
from step.predict import predict_scene, scene_paths

@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny convolutions run faster on one thread, and far faster than two threads on a busy 2-core CI box."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------------------------------------------------
# Window grid and blending weights
# --------------------------------------------------------------------------------------------------------------------


def test_window_starts_hand_worked():
    # 1000 px, window 512, overlap 64: ceil((1000 - 64) / 448) = 3 windows spread over [0, 488]
    assert window_starts(1000, 512, 64) == [0, 244, 488]
    assert window_starts(512, 512, 64) == [0]
    assert window_starts(300, 512, 64) == [0]  # smaller than a window: one window of the image's size
    assert window_starts(513, 512, 64) == [0, 1]
    with pytest.raises(ValueError):
        window_starts(100, 32, 32)  # overlap must be < window


@pytest.mark.parametrize("height,width,window,overlap", [
    (1, 1, 8, 0), (7, 30, 8, 3), (64, 64, 32, 8), (65, 131, 32, 8), (100, 37, 40, 39), (33, 200, 16, 0)])
def test_window_grid_covers_every_pixel_with_the_overlap(height, width, window, overlap):
    cover = np.zeros((height, width), np.int32)
    for top, left, h, w in window_grid(height, width, window, overlap):
        assert 0 <= top and top + h <= height and 0 <= left and left + w <= width  # never outside the image
        assert h == min(window, height) and w == min(window, width)
        cover[top:top + h, left:left + w] += 1
    assert cover.min() >= 1
    for length in (height, width):
        starts = window_starts(length, window, overlap)
        size = min(window, length)
        assert starts[0] == 0 and starts[-1] + size == length
        assert all(a + size - b >= overlap for a, b in zip(starts, starts[1:]))  # at least the asked overlap


@pytest.mark.parametrize("length,window,overlap", [(100, 32, 8), (1000, 512, 64), (50, 20, 12), (40, 40, 0)])
def test_ramp_weights_sum_to_one_where_two_windows_meet(length, window, overlap):
    # cos^2 + sin^2 = 1 over a shared part; where three windows meet (here 1000/512/64: rows 488..511) the sum
    # exceeds 1 and the blend divides by it
    starts = window_starts(length, window, overlap)
    size = min(window, length)
    total, cover = np.zeros(length), np.zeros(length, np.int32)
    for i, start in enumerate(starts):
        w = ramp_weights(starts, size, i)
        assert (w > 0).all()
        total[start:start + size] += w
        cover[start:start + size] += 1
    np.testing.assert_allclose(total[cover <= 2], 1.0, atol=1e-6)
    assert (total[cover > 2] > 1).all()


# --------------------------------------------------------------------------------------------------------------------
# Sliding-window prediction
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("height,width,window,overlap", [(70, 101, 32, 8), (20, 25, 32, 8), (64, 64, 16, 0)])
def test_sliding_equals_whole_image_for_a_pointwise_model(height, width, window, overlap):
    # a 1x1 conv sees one pixel: any window placement/offset/blending mistake shows as a difference
    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, 4, 1)
    image = torch.rand(3, height, width)
    with torch.no_grad():
        whole = torch.softmax(model(image[None]), dim=1)[0]
        slid = predict_sliding(model, image, window=window, overlap=overlap, num_classes=4, batch_size=3)
    assert slid.shape == (4, height, width)
    torch.testing.assert_close(slid, whole, atol=1e-6, rtol=0)


def _local_model() -> torch.nn.Module:
    """Two 3x3 convs with zero padding: translation-equivariant, receptive radius 2, wrong near window borders."""
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.Conv2d(8, 3, 3, padding=1))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(4)  # sharp logits, so border errors are visible in the probabilities
    return model


def test_blending_hides_window_border_errors(monkeypatch):
    model = _local_model()
    image = torch.rand(3, 80, 96, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        whole = torch.softmax(model(image[None]), dim=1)[0]
        blended = predict_sliding(model, image, window=32, overlap=16, num_classes=3)
        monkeypatch.setattr(sw, "ramp_weights", lambda starts, size, index: np.ones(size, np.float32))
        averaged = predict_sliding(model, image, window=32, overlap=16, num_classes=3)
    blended_err = (blended - whole).abs().max().item()
    averaged_err = (averaged - whole).abs().max().item()
    # interior window borders are wrong by the padding; a flat average keeps half of that error, the raised-cosine
    # ramp gives border pixels weight <= sin^2(pi/2 * 2.5/16) ~ 0.06
    assert averaged_err > 0.05
    assert blended_err < 0.25 * averaged_err


def test_strips_tile_the_rows_and_keep_memory_to_one_window_row():
    model = torch.nn.Conv2d(3, 2, 1)
    height, width, window = 100, 40, 24
    reads = []

    def read_rows(top, bottom):
        reads.append((top, bottom))
        return torch.rand(3, bottom - top, width)

    with torch.no_grad():
        strips = list(sliding_strips(model, read_rows, height, width, window=window, overlap=8, num_classes=2))
    tops = [t for t, _ in strips]
    rows = [p.shape[1] for _, p in strips]
    assert tops[0] == 0 and all(t + r == n for t, r, n in zip(tops, rows, tops[1:])) and tops[-1] + rows[-1] == height
    assert all(bottom - top == window for top, bottom in reads)  # never more than one window row is read
    assert all(p.shape[0] == 2 and p.shape[2] == width for _, p in strips)


# --------------------------------------------------------------------------------------------------------------------
# Vectorization
# --------------------------------------------------------------------------------------------------------------------


def _hand_drawn_buildings(height: int = 120, width: int = 160) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    mask[10:40, 10:60] = 1                        # rectangle with a courtyard
    mask[20:30, 25:40] = 0
    mask[55:110, 10:30] = 1                       # L-shape
    mask[90:110, 10:70] = 1
    cv2.fillPoly(mask, [np.array([[100, 15], [150, 40], [130, 80], [80, 55]], np.int32)], 1)  # rotated block
    mask[95:112, 100:150] = 1                     # touches nothing
    return mask.astype(bool)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    return (a & b).sum() / (a | b).sum()


def test_polygons_round_trip_to_the_raster():
    mask = _hand_drawn_buildings()
    polygons = mask_to_polygons(mask)
    assert len(polygons) == 4
    assert sum(p.area for p in polygons) == mask.sum()  # pixel-edge polygons: area = pixel count
    assert any(len(p.interiors) == 1 for p in polygons)  # the courtyard is a hole
    exact = polygons_to_mask(polygons, mask.shape)
    assert np.array_equal(exact.astype(bool), mask)
    features = list(footprint_features(polygons, class_name="building", simplify_tolerance=1.0))
    simplified = polygons_to_mask([f["geometry"] for f in features], mask.shape)
    assert _iou(simplified, mask) > 0.98
    assert sum(len(f["geometry"]["coordinates"][0]) for f in features) < sum(len(p.exterior.coords) for p in polygons)
    assert sorted(f["properties"]["area_px"] for f in features) == sorted(p.area for p in polygons)


@pytest.mark.parametrize("strip_rows", [1, 7, 25, 200])
def test_strip_merging_gives_the_same_polygons_as_the_whole_mask(strip_rows):
    mask = _hand_drawn_buildings()
    whole = mask_to_polygons(mask)
    merger = StripPolygonMerger()
    merged = []
    for top in range(0, mask.shape[0], strip_rows):
        merged += merger.add_strip(mask[top:top + strip_rows], top)
    merged += merger.finish()
    assert len(merged) == len(whole)
    for p in merged:
        twin = [q for q in whole if q.intersects(p) and q.intersection(p).area > 0]
        assert len(twin) == 1 and twin[0].symmetric_difference(p).area == 0


def test_strip_merger_keeps_diagonal_neighbours_apart():
    mask = np.zeros((4, 4), bool)
    mask[1, 1] = mask[2, 2] = True  # 4-connectivity: two buildings touching at a corner on the strip border
    merger = StripPolygonMerger()
    out = merger.add_strip(mask[:2], 0) + merger.add_strip(mask[2:], 2) + merger.finish()
    assert sorted(p.area for p in out) == [1.0, 1.0]


# --------------------------------------------------------------------------------------------------------------------
# predict: GeoTIFF in, georeferenced rasters and footprints out
# --------------------------------------------------------------------------------------------------------------------

TRANSFORM = Affine(0.5, 0.0, 500000.0, 0.0, -0.5, 2800000.0)  # 0.5 m pixels, UTM 40N (Dubai)


def _write_scene(path, height=90, width=130, dtype="uint16", bands=4):
    """A scene with bright 'roofs' on a dark noisy ground; returns the roof mask."""
    rng = np.random.default_rng(0)
    roofs = np.zeros((height, width), bool)
    roofs[10:40, 15:60] = True
    roofs[50:80, 70:120] = True
    roofs[60:70, 85:100] = False  # courtyard
    roofs[5:30, 90:125] = True
    data = rng.integers(800, 1500, size=(bands, height, width)).astype(dtype)
    data[:, roofs] = 60000 if dtype == "uint16" else 250
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=bands, dtype=dtype,
                       crs=CRS.from_epsg(32640), transform=TRANSFORM) as dst:
        dst.write(data)
    return roofs


def _red_model(crops: torch.Tensor) -> torch.Tensor:
    """(B, 3, h, w) uint8 → logits (B, 2, h, w): 'building' where the red channel is bright."""
    red = crops[:, :1].float() / 255
    return torch.cat([0.5 - red, red - 0.5], dim=1) * 10


def test_predict_preserves_georeferencing_and_footprints_fall_on_the_buildings(tmp_path):
    scene = tmp_path / "scene.tif"
    roofs = _write_scene(scene)
    out = tmp_path / "out"
    result = predict_scene(str(scene), str(out), _red_model, class_names=["background", "building"], window=48,
                           overlap=12, batch_size=2, simplify_tolerance=1.0, min_area_px=4)

    with rasterio.open(result["classes"]) as src:
        assert src.crs == CRS.from_epsg(32640)
        assert src.transform == TRANSFORM
        assert (src.height, src.width, src.count, src.dtypes[0]) == (90, 130, 1, "uint8")
        classes = src.read(1)
        bounds = src.bounds
    assert np.array_equal(classes == 1, roofs)  # uint16 stretch + 4 bands → first 3 as RGB, roofs bright

    with open(result["footprints"]) as f:
        collection = json.load(f)
    assert collection["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::32640"
    features = collection["features"]
    assert len(features) == 3 and result["num_footprints"] == 3
    scene_box = box(bounds.left, bounds.bottom, bounds.right, bounds.top)
    for feature in features:
        geometry = shape(feature["geometry"])
        assert scene_box.covers(geometry)
        assert feature["properties"]["class"] == "building"
    # areas in m²: pixel count x 0.25 m² (the courtyard is not roof)
    assert sorted(f["properties"]["area_m2"] for f in features) == sorted([30 * 45 * 0.25, 25 * 35 * 0.25,
                                                                          (30 * 50 - 10 * 15) * 0.25])
    back = polygons_to_mask([f["geometry"] for f in features], roofs.shape, transform=TRANSFORM)
    assert _iou(back, roofs) > 0.98

    overlay = cv2.imread(result["overlay"])
    assert overlay.shape == (90, 130, 3)


def test_predict_on_png_writes_png_and_pixel_areas_and_small_overlay(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 60, size=(70, 90, 3)).astype(np.uint8)
    image[10:30, 20:50] = 240
    path = tmp_path / "tile.png"
    cv2.imwrite(str(path), image)
    result = predict_scene(str(path), str(tmp_path / "out"), _red_model, class_names=["background", "building"],
                           window=32, overlap=8, overlay_max_side=40)
    classes = cv2.imread(result["classes"], cv2.IMREAD_UNCHANGED)
    assert result["classes"].endswith("_classes.png") and classes.dtype == np.uint8 and classes.shape == (70, 90)
    assert classes.sum() == 20 * 30
    collection = json.loads(open(result["footprints"]).read())
    assert "crs" not in collection
    assert [f["properties"]["area_px"] for f in collection["features"]] == [600.0]
    step = math.ceil(90 / 40)  # overlay subsampled by an integer step to a long side <= 40
    assert cv2.imread(result["overlay"]).shape == (math.ceil(70 / step), math.ceil(90 / step), 3)


def test_scene_paths_accepts_file_folder_and_glob(tmp_path):
    for name in ("a.tif", "b.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert scene_paths(str(tmp_path / "a.tif")) == [str(tmp_path / "a.tif")]
    assert scene_paths(str(tmp_path)) == [str(tmp_path / "a.tif"), str(tmp_path / "b.png")]
    assert scene_paths(str(tmp_path / "*.png")) == [str(tmp_path / "b.png")]
    with pytest.raises(FileNotFoundError, match="no scene"):
        scene_paths(str(tmp_path / "*.jpg"))


def test_predict_command_line_with_a_segnet_checkpoint(tmp_path):
    from misc.cli import build_parser
    from misc.torchutils import save_checkpoint
    from net.seg_net import SegNet

    torch.manual_seed(0)
    model = SegNet("efficientnet_lite0", num_classes=3, pretrained=None, head_channels=16)
    weights = tmp_path / "seg.pth"
    save_checkpoint(str(weights), model=model, args=build_parser().parse_args([]), step=0,
                    extra={"kind": "seg", "class_names": ["background", "building", "road"], **model.config})
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    _write_scene(scenes / "geo.tif", height=40, width=50, dtype="uint8", bands=3)
    out = tmp_path / "maps"
    rc = predict_entry.main(["--predict_input", str(scenes), "--seg_weights_name", str(weights), "--seg_out_dir",
                            str(out), "--predict_window", "32", "--predict_overlap", "8", "--device", "cpu",
                            "--log_name", str(tmp_path / "log"), "--quiet"])
    assert rc == 0
    assert sorted(os.listdir(out)) == ["args_predict.json", "geo_buildings.geojson", "geo_classes.tif",
                                       "geo_overlay.png"]
    with rasterio.open(out / "geo_classes.tif") as src:
        assert src.crs.to_epsg() == 32640 and src.transform == TRANSFORM
        assert src.read(1).max() <= 2
