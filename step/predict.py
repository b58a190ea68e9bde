"""Pass predict: map whole scenes of any size with the trained segmentation network.

    python run_sample.py --predict_pass True --predict_input 'scenes/*.tif' --seg_weights_name sess/seg.pth
    python predict.py --predict_input scene.tif --seg_weights_name sess/seg.pth --seg_out_dir result/maps

Reads:  --predict_input (a file, a folder or a glob) of PNG / JPEG / (Geo)TIFF scenes: --bands (1-based, default
        1,2,3) are RGB (a one-band TIFF is repeated), non-uint8 data is stretched per band to 2-98 % percentiles of a
        decimated read; --seg_weights_name (a train_seg checkpoint: it names its backbone, classes and head width).
        Georeference: a GeoTIFF's own; else a world file next to the scene (.pgw/.jgw/.tfw/.wld, with a .prj for
        its CRS); else --predict_transform; --predict_crs sets (or overrides) the CRS.
Writes, per scene, in --seg_out_dir:
        <stem>_classes.tif|png      uint8 class index (GeoTIFF for TIFF input, with the input's CRS and transform;
                                    a PNG gets a <stem>_classes.pgw world file (+ .prj) when the scene has one)
        <stem>_overlay.png          colour overlay, subsampled to at most ~4000 px on the long side
        <stem>_buildings.geojson    footprints of --predict_building_class: simplified polygons in the scene's map
                                    coordinates with properties class and area_m2 (area_px when not in a metric
                                    CRS), and a "crs" member naming the EPSG code when there is one
        <stem>_buildings_pixels.geojson  instead, for a scene without georeference: pixel coordinates (x = column,
                                    y = row), said so by the name and the "coordinates" member and property
        args_predict.json
A scene whose class raster and overlay (written last) both exist and are newer than --seg_weights_name is skipped
unless --overwrite; when args_predict.json of an earlier run names other weights, that run's maps of these scenes are
removed first, so no map of other weights survives next to the new arguments. Under --skip_bad an unreadable scene
is logged, counted and skipped. Progress (tiles done / total, Mpx/s) is logged at $WSSS_PROGRESS_INTERVAL.

Memory is bounded by the window, not the scene: a GeoTIFF is read one strip of window rows at a time
(``rasterio.windows.Window``), probabilities are blended only over the current strip (misc.sliding_window), the
class raster is written strip by strip, and footprints are vectorized per strip with polygons that cross a strip
border merged by ``unary_union`` (misc.vectorize.StripPolygonMerger), so only footprints still open at the
current strip border are held. The overlay is a subsampled canvas of at most ~4000² pixels. PNG/JPEG scenes are
decoded whole (the codecs cannot read a part) and their class PNG is assembled in memory.
"""
from __future__ import annotations

import contextlib
import glob
import json
import logging
import math
import os
import time
import warnings
from typing import Callable

import numpy as np
import torch

from data.raster_io import (DEFAULT_BANDS, TIFF_EXTS, SceneReader, parse_bands, parse_crs, parse_transform,
                            world_file_text)
from misc import artifacts, dist
from misc.inference_engine import engine_model_fn
from misc.io import atomic_path, is_complete, save_png, save_text_lines
from misc.item_pass import for_each_item, open_item_pass
from misc.logutils import ProgressLog
from misc.sliding_window import sliding_strips, window_starts
from misc.vectorize import StripPolygonMerger, footprint_features
from misc.visualize import CLASS_COLORS, label_overlay
from net.zoo import load_model

log = logging.getLogger(__name__)

SCENE_EXTS = (".png", ".jpg", ".jpeg") + TIFF_EXTS
OVERLAY_MAX_SIDE = 4000
PIXEL_COORDINATES = "pixel (x = column, y = row from the top-left corner; the scene has no georeference)"


# --- inputs ---------------------------------------------------------------------------------------------------------

def scene_paths(spec: str | None) -> list[str]:
    """The scenes named by ``--predict_input``: one file, every image file of a folder, or a glob (sorted)."""
    if not spec:
        raise ValueError("predict: --predict_input is required (a scene file, a folder or a glob)")
    if os.path.isdir(spec):
        paths = [os.path.join(spec, f) for f in sorted(os.listdir(spec)) if f.lower().endswith(SCENE_EXTS)
                 and not f.startswith(".")]
    elif os.path.isfile(spec):
        paths = [spec]
    else:
        paths = sorted(p for p in glob.glob(spec) if os.path.isfile(p) and p.lower().endswith(SCENE_EXTS))
    if not paths:
        raise FileNotFoundError(f"--predict_input {spec!r}: no scene found (extensions {', '.join(SCENE_EXTS)})")
    stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    duplicates = sorted({s for s in stems if stems.count(s) > 1})
    if duplicates:
        raise ValueError(f"--predict_input {spec!r}: several scenes share the name {duplicates[0]!r}; their outputs "
                         f"would overwrite each other")
    return paths


# --- outputs --------------------------------------------------------------------------------------------------------

class ClassRasterWriter:
    """Write the uint8 class raster strip by strip: a tiled GeoTIFF (CRS + transform of the input) or a PNG."""

    def __init__(self, path: str, reader: SceneReader, num_classes: int, stack: contextlib.ExitStack):
        self.path = path
        self._dst = None
        self._array = None
        if reader.is_tiff:
            import rasterio

            self.tmp = stack.enter_context(atomic_path(path))  # renamed into place when the stack closes

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
                self._dst = stack.enter_context(rasterio.open(
                    self.tmp, "w", driver="GTiff", width=reader.width, height=reader.height, count=1, dtype="uint8",
                    crs=reader.crs, transform=reader.transform, tiled=True, blockxsize=256, blockysize=256,
                    compress="deflate"))
            # a palette makes the raster readable in any GIS viewer
            self._dst.write_colormap(1, {i: tuple(int(v) for v in CLASS_COLORS[i % len(CLASS_COLORS)]) + (255,)
                                         for i in range(num_classes)})
        else:
            self._array = np.zeros((reader.height, reader.width), np.uint8)

    def write(self, top: int, labels: np.ndarray) -> None:
        if self._dst is not None:
            from rasterio.windows import Window

            self._dst.write(labels[None], window=Window(0, top, labels.shape[1], labels.shape[0]))
        else:
            self._array[top:top + labels.shape[0]] = labels

    def close(self) -> None:
        """PNG: encode the assembled array (the GeoTIFF is finished when its dataset closes)."""
        if self._array is not None:
            save_png(self.path, self._array)


class OverlayCanvas:
    """Colour overlay of the scene subsampled by an integer step so that the long side is ≤ ``max_side``."""

    def __init__(self, height: int, width: int, max_side: int = OVERLAY_MAX_SIDE):
        self.step = max(1, math.ceil(max(height, width) / max_side))
        self.canvas = np.zeros((math.ceil(height / self.step), math.ceil(width / self.step), 3), np.uint8)

    def add(self, top: int, rgb: np.ndarray, labels: np.ndarray) -> None:
        """rgb (h, W, 3) uint8 and labels (h, W) uint8 of scene rows [top, top + h)."""
        first = -top % self.step  # first local row on the subsampling grid
        rows = slice(first, rgb.shape[0], self.step)
        picked = label_overlay(rgb[rows, ::self.step], labels[rows, ::self.step])
        start = (top + first) // self.step
        self.canvas[start:start + picked.shape[0]] = picked


def geojson_crs_member(crs) -> dict | None:
    """The (GeoJSON 2008) "crs" member naming the EPSG code, or None when the CRS has none."""
    epsg = crs.to_epsg() if crs is not None else None
    if epsg is None:
        return None
    return {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{epsg}"}}


def pixel_area_m2(crs, transform) -> float | None:
    """Ground area of one pixel in m² for a projected CRS with linear units, else None (areas stay in pixels)."""
    if crs is None or not crs.is_projected:
        return None
    try:
        _, metres_per_unit = crs.linear_units_factor
    except Exception:  # rasterio raises CRSError when the units are unknown
        return None
    return abs(transform.determinant) * metres_per_unit ** 2


class FootprintWriter:
    """Stream GeoJSON features to a file (a FeatureCollection written feature by feature, never held whole)."""

    def __init__(self, path: str, name: str, crs, stack: contextlib.ExitStack, coordinates: str | None = None):
        """``coordinates``: a top-level member saying what the coordinates are when they are not a known CRS's."""
        self.tmp = stack.enter_context(atomic_path(path))
        self._file = stack.enter_context(open(self.tmp, "w", encoding="utf-8"))
        header = {"type": "FeatureCollection", "name": name}
        crs_member = geojson_crs_member(crs)
        if crs_member:
            header["crs"] = crs_member
        if coordinates:
            header["coordinates"] = coordinates
        self._file.write(json.dumps(header)[:-1] + ', "features": [\n')
        self.count = 0

    def write(self, features) -> None:
        for feature in features:
            self._file.write((",\n" if self.count else "") + json.dumps(feature))
            self.count += 1

    def close(self) -> None:
        self._file.write("\n]}\n")
        self._file.flush()


# --- one scene ------------------------------------------------------------------------------------------------------

def predict_scene(path: str, out_dir: str, model_fn: Callable[[torch.Tensor], torch.Tensor], *,
                  class_names: list[str], window: int = 512, overlap: int = 64, batch_size: int = 4,
                  building_class: str | None = "building", simplify_tolerance: float = 1.0,
                  min_area_px: float = 4.0, overlay_max_side: int = OVERLAY_MAX_SIDE, bands=DEFAULT_BANDS,
                  crs=None, transform=None) -> dict:
    """Map one scene; returns {"classes", "overlay", "footprints" (path or None), "num_footprints", "pixels",
    "seconds", "crs", "transform", "georeferenced"}.

    ``model_fn`` maps a (B, 3, h, w) uint8 window batch to (B, K, h, w) logits with K = len(class_names).
    ``bands``: 1-based bands forming RGB; ``crs`` / ``transform``: override the scene's georeference.
    """
    stem = os.path.splitext(os.path.basename(path))[0]
    num_classes = len(class_names)
    building = None
    if building_class:
        if building_class in class_names:
            building = class_names.index(building_class)
        else:
            log.warning("%s: no class %r among %s; no footprints written", path, building_class, class_names)
    tic = time.time()
    reader = SceneReader(path, bands=bands, crs=crs, transform=transform)
    classes_path = artifacts.scene_classes_path(out_dir, stem, tiff=reader.is_tiff)
    overlay_path = artifacts.scene_overlay_path(out_dir, stem)
    pixels_only = not reader.georeferenced
    footprints_path = (artifacts.scene_footprints_path(out_dir, stem, pixels=pixels_only)
                       if building is not None else None)
    if pixels_only:
        log.warning("%s has no georeference (no GeoTIFF tags, world file or --predict_transform): footprints in "
                    "pixel coordinates -> %s", path, footprints_path)
    elif reader.crs is None:
        log.warning("%s: georeferenced by %s but its CRS is unknown (no .prj): the footprints carry no CRS; "
                    "pass --predict_crs", path, reader.georeference)
    area_m2 = pixel_area_m2(reader.crs, reader.transform)
    rows_of_windows = len(window_starts(reader.height, window, overlap))
    windows_per_row = len(window_starts(reader.width, window, overlap))
    meter = ProgressLog(f"predict {os.path.basename(path)}", total=rows_of_windows * windows_per_row, unit="tiles",
                        logger=log)
    overlay = OverlayCanvas(reader.height, reader.width, overlay_max_side)
    merger = StripPolygonMerger()

    last = {}  # the strip read last: every finished row block lies inside it

    def read_rows(top: int, bottom: int) -> torch.Tensor:
        rgb = reader.read_rows(top, bottom)  # (h, W, 3) uint8
        last.update(top=top, rgb=rgb)
        return torch.from_numpy(rgb).permute(2, 0, 1)  # (3, h, W) uint8 view

    def features(polygons):
        return footprint_features(polygons, class_name=building_class,
                                  transform=None if pixels_only else reader.transform, pixel_area_m2=area_m2,
                                  simplify_tolerance=simplify_tolerance, min_area_px=min_area_px,
                                  extra_properties={"coordinates": "pixel"} if pixels_only else None)

    try:
        with contextlib.ExitStack() as stack, torch.inference_mode():
            writer = ClassRasterWriter(classes_path, reader, num_classes, stack)
            coordinates = PIXEL_COORDINATES if pixels_only else (
                None if reader.crs is not None else f"map units of {reader.georeference}; CRS unknown")
            footprints = (FootprintWriter(footprints_path, stem, reader.crs, stack, coordinates=coordinates)
                          if footprints_path else None)
            for top, probs in sliding_strips(model_fn, read_rows, reader.height, reader.width, window=window,
                                             overlap=overlap, num_classes=num_classes, batch_size=batch_size):
                labels = probs.argmax(0).to(torch.uint8).cpu().numpy()  # (rows, W)
                writer.write(top, labels)
                mpx_per_s = (top + labels.shape[0]) * reader.width / 1e6 / max(time.time() - tic, 1e-9)
                meter.update(windows_per_row, extra=f"{mpx_per_s:.2f} Mpx/s")
                offset = top - last["top"]
                overlay.add(top, last["rgb"][offset:offset + labels.shape[0]], labels)
                if footprints is not None:
                    footprints.write(features(merger.add_strip(labels == building, top)))
            if footprints is not None:
                footprints.write(features(merger.finish()))
                footprints.close()
            writer.close()
    finally:
        reader.close()
    if not reader.is_tiff and reader.georeferenced:  # a PNG class raster opens in place with its world file
        save_text_lines(os.path.splitext(classes_path)[0] + ".pgw", world_file_text(reader.transform))
        if reader.crs is not None:
            save_text_lines(os.path.splitext(classes_path)[0] + ".prj", [reader.crs.to_wkt()])
    save_png(overlay_path, overlay.canvas)
    seconds = time.time() - tic
    pixels = reader.height * reader.width
    result = {"classes": classes_path, "overlay": overlay_path, "footprints": footprints_path,
              "num_footprints": footprints.count if footprints is not None else 0, "pixels": pixels,
              "seconds": seconds, "crs": reader.crs, "transform": reader.transform,
              "georeferenced": reader.georeferenced}
    log.info("predict %s: %dx%d px in %.1f s (%.2f Mpx/s), %d footprints -> %s", path, reader.width, reader.height,
             seconds, pixels / 1e6 / max(seconds, 1e-9), result["num_footprints"], out_dir)
    return result


def run(args) -> None:
    device = torch.device(args.device)
    model, ckpt = load_model(args.seg_weights_name, "seg", device)
    class_names = list(ckpt.get("class_names") or [f"class_{i}" for i in range(model.num_classes)])
    paths = scene_paths(args.predict_input)
    bands = parse_bands(getattr(args, "bands", DEFAULT_BANDS))
    crs = parse_crs(getattr(args, "predict_crs", None))
    transform = getattr(args, "predict_transform", None)
    transform = parse_transform(transform) if transform else None
    if transform is not None and len(paths) > 1:
        raise ValueError(f"--predict_transform places one scene, but --predict_input {args.predict_input!r} names "
                         f"{len(paths)}; give each scene a world file instead")
    log.info("predict: %d scenes with %s (%s, classes %s), window %d overlap %d, bands %s", len(paths),
             args.seg_weights_name, ckpt.get("backbone"), class_names, args.predict_window, args.predict_overlap,
             ",".join(map(str, bands)))
    if dist.is_main():  # before the new arguments are written: they would hide which weights made the old maps
        remove_maps_of_other_weights(args.seg_out_dir, paths, args.seg_weights_name)
    todo = open_item_pass(args, "predict", args.seg_out_dir, paths,
                          done=lambda p: scene_done(args.seg_out_dir, p, args.seg_weights_name))
    model_fn = engine_model_fn(model, getattr(args, "predict_engine", "exact"))  # misc/inference_engine.py
    if args.seg_tta:
        from misc.tta import flip_tta

        model_fn = flip_tta(model_fn)
    mine = dist.shard(paths)
    if len(todo) < len(mine):
        log.info("predict: %d scenes already mapped in %s with these weights (--overwrite redoes them)",
                 len(mine) - len(todo), args.seg_out_dir)

    def one(path: str) -> None:  # strip by strip, see predict_scene
        log.info("predict: scene %d/%d: %s", todo.index(path) + 1, len(todo), path)
        predict_scene(path, args.seg_out_dir, model_fn, class_names=class_names, window=args.predict_window,
                      overlap=args.predict_overlap, batch_size=args.predict_batch_size,
                      building_class=args.predict_building_class, simplify_tolerance=args.predict_simplify,
                      min_area_px=args.predict_min_area, bands=bands, crs=crs, transform=transform)

    for_each_item(todo, one, pass_name="predict", skip_bad=args.skip_bad)


def scene_done(out_dir: str, path: str, weights: str | None = None) -> bool:
    """True when the scene's class raster and overlay (the last file predict_scene writes) both exist, and (given
    ``weights``) the overlay is newer than the weights file: maps of older runs with other weights are redone."""
    stem = os.path.splitext(os.path.basename(path))[0]
    classes = artifacts.scene_classes_path(out_dir, stem, tiff=path.lower().endswith(TIFF_EXTS))
    overlay = artifacts.scene_overlay_path(out_dir, stem)
    if not (is_complete(classes) and is_complete(overlay)):
        return False
    return weights is None or not os.path.isfile(weights) or os.path.getmtime(overlay) > os.path.getmtime(weights)


def remove_maps_of_other_weights(out_dir: str, paths: list[str], weights: str) -> int:
    """Delete this run's scenes' outputs when ``<out_dir>/args_predict.json`` names other weights; returns how many.

    The mtime test of :func:`scene_done` misses weights older than the maps (going back to an earlier checkpoint),
    and a run killed half-way would leave the old maps of its remaining scenes next to the new arguments.
    """
    previous = artifacts.args_json_path(out_dir, "predict")
    if not os.path.isfile(previous):
        return 0
    try:
        with open(previous, encoding="utf-8") as f:
            old = json.load(f).get("seg_weights_name")
    except (OSError, ValueError, AttributeError):
        old = None  # unreadable: trust nothing
    if old and os.path.abspath(old) == os.path.abspath(weights):
        return 0
    removed = 0
    for path in paths:
        for output in artifacts.scene_outputs(out_dir, os.path.splitext(os.path.basename(path))[0]):
            if os.path.isfile(output):
                os.remove(output)
                removed += 1
    if removed:
        log.warning("predict: %s held maps made with %s; removed %d of their files before mapping with %s",
                    out_dir, old or "unknown weights", removed, weights)
    return removed
