"""predict for GIS users: world files, pixel-coordinate footprints, --bands, progress lines, stale maps. CPU, tiny."""
from __future__ import annotations

import json
import logging
import os
import time

import cv2
import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from rasterio.crs import CRS
from shapely.geometry import shape

import predict as predict_entry
from data.raster_io import parse_bands, parse_transform, read_world_file, world_file_text
from step.predict import predict_scene

CLASSES = ["background", "building"]


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _red_model(crops: torch.Tensor) -> torch.Tensor:
    """(B, 3, h, w) uint8 → logits (B, 2, h, w): 'building' where the red channel is bright."""
    red = crops[:, :1].float() / 255
    return torch.cat([0.5 - red, red - 0.5], dim=1) * 10


def _png_with_roof(path, channel=2):
    """A dark 60x80 PNG with one bright 20x30 roof at rows 10..30, cols 20..50, in RGB ``channel`` only."""
    image = np.full((60, 80, 3), 20, np.uint8)  # RGB
    image[10:30, 20:50, channel] = 240
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def test_world_file_round_trip_and_transform_flag():
    # world file: 0.5 m pixels, centre of the top-left pixel at (500000.25, 2800000.75) → corner (500000, 2800001)
    t = parse_transform("0.5,0,500000,0,-0.5,2800001")
    assert t == Affine(0.5, 0, 500000, 0, -0.5, 2800001)
    assert world_file_text(t) == ["0.5", "0.0", "0.0", "-0.5", "500000.25", "2800000.75"]
    with pytest.raises(ValueError, match="six numbers"):
        parse_transform("1,2,3")
    assert parse_bands("3,2,1") == (3, 2, 1)
    with pytest.raises(ValueError, match="three 1-based"):
        parse_bands("0,1,2")


def test_png_with_a_world_file_gives_footprints_in_its_coordinates(tmp_path):
    scene = tmp_path / "tile.png"
    _png_with_roof(scene, channel=0)
    (tmp_path / "tile.pgw").write_text("0.5\n0\n0\n-0.5\n500000.25\n2800000.75\n")
    assert read_world_file(str(tmp_path / "tile.pgw")) == Affine(0.5, 0, 500000, 0, -0.5, 2800001)
    out = tmp_path / "out"
    result = predict_scene(str(scene), str(out), _red_model, class_names=CLASSES, window=32, overlap=8,
                           simplify_tolerance=0, crs=CRS.from_epsg(32640))
    assert result["georeferenced"] and os.path.basename(result["footprints"]) == "tile_buildings.geojson"
    collection = json.load(open(result["footprints"]))
    assert collection["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::32640"
    [feature] = collection["features"]
    # roof = cols 20..50, rows 10..30 → x 500010..500025, y 2800001 - 5 .. 2800001 - 15
    assert shape(feature["geometry"]).bounds == pytest.approx((500010.0, 2800001 - 15.0, 500025.0, 2800001 - 5.0))
    assert feature["properties"]["area_m2"] == pytest.approx(20 * 30 * 0.25)
    # the class PNG gets the world file (and the CRS) so that it opens in place in a GIS
    assert (out / "tile_classes.pgw").read_text().split() == ["0.5", "0.0", "0.0", "-0.5", "500000.25", "2800000.75"]
    assert CRS.from_wkt((out / "tile_classes.prj").read_text()).to_epsg() == 32640


def test_png_without_georeference_writes_pixel_footprints_and_says_so(tmp_path):
    scene = tmp_path / "tile.png"
    _png_with_roof(scene, channel=0)
    result = predict_scene(str(scene), str(tmp_path / "out"), _red_model, class_names=CLASSES, window=32, overlap=8,
                           simplify_tolerance=0)
    assert not result["georeferenced"]
    assert os.path.basename(result["footprints"]) == "tile_buildings_pixels.geojson"
    collection = json.load(open(result["footprints"]))
    assert "crs" not in collection and collection["coordinates"].startswith("pixel")
    [feature] = collection["features"]
    assert feature["properties"]["coordinates"] == "pixel" and feature["properties"]["area_px"] == 600
    assert shape(feature["geometry"]).bounds == (20, 10, 50, 30)  # x = column, y = row
    assert not os.path.exists(tmp_path / "out" / "tile_classes.pgw")
    # a CRS alone cannot place a picture
    with pytest.raises(ValueError, match="needs a transform"):
        predict_scene(str(scene), str(tmp_path / "out2"), _red_model, class_names=CLASSES, window=32, overlap=8,
                      crs=CRS.from_epsg(32640))


def test_bands_choose_rgb_for_png_and_tiff(tmp_path):
    png = tmp_path / "blue.png"
    _png_with_roof(png, channel=2)  # the roof is bright in blue only: the red model sees it only as 3,2,1
    plain = predict_scene(str(png), str(tmp_path / "a"), _red_model, class_names=CLASSES, window=32, overlap=8)
    swapped = predict_scene(str(png), str(tmp_path / "b"), _red_model, class_names=CLASSES, window=32, overlap=8,
                            bands=(3, 2, 1))
    assert plain["num_footprints"] == 0 and swapped["num_footprints"] == 1

    tif = tmp_path / "bgrn.tif"
    data = np.full((4, 40, 50), 30, np.uint8)
    data[3, 5:25, 10:40] = 250  # near infrared band 4 bright on the roof
    with rasterio.open(tif, "w", driver="GTiff", width=50, height=40, count=4, dtype="uint8",
                       crs=CRS.from_epsg(32640), transform=Affine(0.5, 0, 500000, 0, -0.5, 2800000)) as dst:
        dst.write(data)
    result = predict_scene(str(tif), str(tmp_path / "c"), _red_model, class_names=CLASSES, window=32, overlap=8,
                           bands=(4, 3, 2))
    with rasterio.open(result["classes"]) as src:
        assert int(src.read(1).sum()) == 20 * 30
    with pytest.raises(ValueError, match="only 4 band"):
        predict_scene(str(tif), str(tmp_path / "d"), _red_model, class_names=CLASSES, window=32, overlap=8,
                      bands=(5, 3, 2))


def test_progress_logs_tiles_and_throughput(tmp_path, caplog, monkeypatch):
    monkeypatch.setenv("WSSS_PROGRESS_INTERVAL", "0")  # a line per strip
    scene = tmp_path / "tile.png"
    _png_with_roof(scene, channel=0)
    with caplog.at_level(logging.INFO, logger="step.predict"):
        predict_scene(str(scene), str(tmp_path / "out"), _red_model, class_names=CLASSES, window=32, overlap=8)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("predict tile.png: ")]
    # 60x80 with 32-px windows and 8 px overlap: 3 rows x 3 columns of windows, a line per row of windows
    assert [line.split(": ")[1].split(" (")[0] for line in lines] == ["3/9 tiles", "6/9 tiles", "9/9 tiles"]
    assert all(line.endswith(" Mpx/s") for line in lines) and "(100.0 %)" in lines[-1]


def _seg_checkpoint(path, seed):
    from misc.cli import build_parser
    from misc.torchutils import save_checkpoint
    from net.seg_net import SegNet

    torch.manual_seed(seed)
    model = SegNet("efficientnet_lite0", num_classes=2, pretrained=None, head_channels=16)
    with torch.no_grad():  # a decisive, seed-specific bias so that the two checkpoints map differently
        last = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        last.bias.copy_(torch.tensor([5.0, -5.0]) * (1 if seed == 0 else -1))
    save_checkpoint(str(path), model=model, args=build_parser().parse_args([]), step=0,
                    extra={"kind": "seg", "class_names": CLASSES, **model.config})
    return str(path)


def test_rerun_with_other_weights_never_keeps_old_maps(tmp_path):
    """Weights B saved *before* A's maps (an older checkpoint): the mtime test alone would keep A's maps."""
    scene = tmp_path / "scenes" / "tile.png"
    scene.parent.mkdir()
    _png_with_roof(scene, channel=0)
    weights_b = _seg_checkpoint(tmp_path / "b.pth", seed=1)  # predicts building everywhere
    time.sleep(0.05)
    weights_a = _seg_checkpoint(tmp_path / "a.pth", seed=0)  # predicts background everywhere
    out = tmp_path / "maps"
    common = ["--predict_input", str(scene), "--seg_out_dir", str(out), "--predict_window", "32",
              "--predict_overlap", "8", "--device", "cpu", "--log_name", str(tmp_path / "log"), "--quiet"]
    assert predict_entry.main(common + ["--seg_weights_name", weights_a]) == 0
    classes = out / "tile_classes.png"
    assert cv2.imread(str(classes), cv2.IMREAD_UNCHANGED).max() == 0
    assert predict_entry.main(common + ["--seg_weights_name", weights_b]) == 0
    assert json.load(open(out / "args_predict.json"))["seg_weights_name"] == weights_b
    assert cv2.imread(str(classes), cv2.IMREAD_UNCHANGED).min() == 1  # B's map, not A's
    # same weights again: the maps are reused (not rewritten)
    before = os.path.getmtime(classes)
    assert predict_entry.main(common + ["--seg_weights_name", weights_b]) == 0
    assert os.path.getmtime(classes) == before
    # the same weights file retrained after the maps: redone
    time.sleep(0.05)
    _seg_checkpoint(weights_b, seed=0)
    assert predict_entry.main(common + ["--seg_weights_name", weights_b]) == 0
    assert cv2.imread(str(classes), cv2.IMREAD_UNCHANGED).max() == 0


def test_predict_transform_and_crs_place_a_png_without_world_file(tmp_path):
    scene = tmp_path / "tile.jpg.png"  # an odd name: the world file would be tile.jpg.pgw, and there is none
    _png_with_roof(scene, channel=0)
    result = predict_scene(str(scene), str(tmp_path / "out"), _red_model, class_names=CLASSES, window=32, overlap=8,
                           simplify_tolerance=0, crs=CRS.from_epsg(32640),
                           transform=parse_transform("2,0,1000,0,-2,5000"))
    collection = json.load(open(result["footprints"]))
    assert os.path.basename(result["footprints"]) == "tile.jpg_buildings.geojson" and "coordinates" not in collection
    [feature] = collection["features"]
    assert shape(feature["geometry"]).bounds == (1040.0, 4940.0, 1100.0, 4980.0)  # cols 20..50, rows 10..30, 2 m
    assert feature["properties"]["area_m2"] == 600 * 4.0
