"""Pass predict: map whole scenes of any size with the trained segmentation network.

    python run_sample.py --predict_pass True --predict_input 'scenes/*.tif' --seg_weights_name sess/seg.pth
    python -m step.predict --predict_input scene.tif --seg_weights_name sess/seg.pth --seg_out_dir result/maps

Reads:  --predict_input (a file, a folder or a glob) of PNG / JPEG / (Geo)TIFF scenes: a TIFF's first 3 bands are
        RGB (one band is repeated), non-uint8 data is stretched per band to 2-98 % percentiles of a decimated read;
        --seg_weights_name (a train_seg checkpoint: it names its backbone, classes and head width).
Writes, per scene, in --seg_out_dir:
        <stem>_classes.tif|png      uint8 class index (GeoTIFF for TIFF input, with the input's CRS and transform)
        <stem>_overlay.png          colour overlay, subsampled to at most ~4000 px on the long side
        <stem>_buildings.geojson    footprints of --predict_building_class: simplified polygons in the input's CRS
                                    with properties class and area_m2 (area_px when not in a metric CRS), and a
                                    "crs" member naming the EPSG code when there is one
        args_predict.json
A scene whose class raster and overlay (written last) both exist is skipped unless --overwrite; under --skip_bad an
unreadable scene is logged, counted and skipped.

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
import sys
import time
import warnings
from typing import Callable

import numpy as np
import torch

from data.raster_io import TIFF_EXTS, read_image
from misc import artifacts, dist
from misc.io import atomic_path, save_args, save_png
from misc.robust import BadItems, prepare_out_dir
from misc.inference_engine import engine_model_fn
from misc.sliding_window import sliding_strips
from misc.torchutils import load_checkpoint, load_weights
from misc.visualize import CLASS_COLORS, label_overlay
from misc.vectorize import StripPolygonMerger, footprint_features
from net.seg_net import SegNet, build_seg_net

log = logging.getLogger(__name__)

SCENE_EXTS = (".png", ".jpg", ".jpeg") + TIFF_EXTS
OVERLAY_MAX_SIDE = 4000
STRETCH_SAMPLE_SIDE = 1024  # long side of the decimated read that sets the percentile stretch


# --- model ----------------------------------------------------------------------------------------------------------

def load_seg_model(path: str, device: torch.device) -> tuple[SegNet, dict]:
    """The SegNet of a train_seg checkpoint, in eval mode on ``device``, and the checkpoint (class names etc.)."""
    ckpt = load_checkpoint(path, map_location="cpu")
    if ckpt.get("kind") != "seg":
        raise ValueError(f"{path} is not a segmentation checkpoint (kind {ckpt.get('kind')!r}); "
                         f"train one with --train_seg_pass True")
    model = build_seg_net(ckpt, pretrained=None)
    load_weights(model, ckpt, path=path)
    return model.to(device).eval(), ckpt


def make_model_fn(model: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """Window batch (B, 3, h, w) uint8 → logits (B, K, h, w); uint8 crosses to the GPU (4× less than float)."""
    device = next(model.parameters()).device

    def model_fn(crops: torch.Tensor) -> torch.Tensor:
        images = crops.to(device, non_blocking=True).float().div_(255)
        with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
            return model(images)

    return model_fn


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


class SceneReader:
    """Rows of a scene as uint8 RGB (h, W, 3): windowed rasterio reads for TIFF, a decoded array otherwise.

    Attributes: height, width, is_tiff, crs (rasterio CRS or None), transform (Affine; identity without one).
    """

    def __init__(self, path: str):
        from affine import Affine

        self.path = path
        self.is_tiff = path.lower().endswith(TIFF_EXTS)
        self.crs, self.transform = None, Affine.identity()
        self._src = None
        self._array = None
        self._stretch = None  # (3, 2) float32 per-band (low, high) for non-uint8 TIFF data
        if self.is_tiff:
            self._open_tiff()
        else:
            self._array = read_image(path)
            self.height, self.width = self._array.shape[:2]

    def _open_tiff(self) -> None:
        import rasterio

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            try:
                self._src = rasterio.open(self.path)
            except rasterio.errors.RasterioError as err:
                raise ValueError(f"corrupt or unreadable raster {self.path}: {err}") from err
        src = self._src
        self.height, self.width = src.height, src.width
        self.crs = src.crs
        self.transform = src.transform
        self._bands = [1, 2, 3] if src.count >= 3 else [1, 1, 1]
        if src.dtypes[0] != "uint8":
            self._stretch = self._stretch_limits()
            log.info("%s: %s bands stretched to uint8 per band (2-98 %% percentiles) %s", self.path, src.dtypes[0],
                     self._stretch.tolist())

    def _stretch_limits(self) -> np.ndarray:
        """Per-band 2nd/98th percentiles of a decimated read (≤ STRETCH_SAMPLE_SIDE² pixels), not the whole scene."""
        from rasterio.enums import Resampling

        factor = max(1, math.ceil(max(self.height, self.width) / STRETCH_SAMPLE_SIDE))
        shape = (3, max(1, self.height // factor), max(1, self.width // factor))
        sample = self._src.read(indexes=self._bands, out_shape=shape, resampling=Resampling.nearest)
        limits = np.stack([np.nanpercentile(b.astype(np.float32), [2, 98]) for b in sample])  # NaN: float no-data
        return np.nan_to_num(limits).astype(np.float32)

    def read_rows(self, top: int, bottom: int) -> np.ndarray:
        """Scene rows [top, bottom) as uint8 (bottom - top, width, 3)."""
        if self._array is not None:
            return self._array[top:bottom]
        from rasterio.windows import Window

        bands = self._src.read(indexes=self._bands, window=Window(0, top, self.width, bottom - top))  # (3, h, W)
        if self._stretch is not None:
            low, high = self._stretch[:, :1, None], self._stretch[:, 1:, None]  # (3, 1, 1)
            scale = np.where(high > low, 255.0 / np.maximum(high - low, 1e-12), 0.0).astype(np.float32)
            bands = np.clip(np.nan_to_num((bands.astype(np.float32) - low) * scale), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(bands.transpose(1, 2, 0))

    def close(self) -> None:
        if self._src is not None:
            self._src.close()
            self._src = None


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

    def __init__(self, path: str, name: str, crs, stack: contextlib.ExitStack):
        self.tmp = stack.enter_context(atomic_path(path))
        self._file = stack.enter_context(open(self.tmp, "w", encoding="utf-8"))
        header = {"type": "FeatureCollection", "name": name}
        crs_member = geojson_crs_member(crs)
        if crs_member:
            header["crs"] = crs_member
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
                  min_area_px: float = 4.0, overlay_max_side: int = OVERLAY_MAX_SIDE) -> dict:
    """Map one scene; returns {"classes", "overlay", "footprints" (path or None), "num_footprints", "pixels",
    "seconds", "crs", "transform"}.

    ``model_fn`` maps a (B, 3, h, w) uint8 window batch to (B, K, h, w) logits with K = len(class_names).
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
    reader = SceneReader(path)
    classes_path = artifacts.scene_classes_path(out_dir, stem, tiff=reader.is_tiff)
    overlay_path = artifacts.scene_overlay_path(out_dir, stem)
    footprints_path = artifacts.scene_footprints_path(out_dir, stem) if building is not None else None
    area_m2 = pixel_area_m2(reader.crs, reader.transform)
    overlay = OverlayCanvas(reader.height, reader.width, overlay_max_side)
    merger = StripPolygonMerger()

    last = {}  # the strip read last: every finished row block lies inside it

    def read_rows(top: int, bottom: int) -> torch.Tensor:
        rgb = reader.read_rows(top, bottom)  # (h, W, 3) uint8
        last.update(top=top, rgb=rgb)
        return torch.from_numpy(rgb).permute(2, 0, 1)  # (3, h, W) uint8 view

    def features(polygons):
        return footprint_features(polygons, class_name=building_class, transform=reader.transform,
                                  pixel_area_m2=area_m2, simplify_tolerance=simplify_tolerance,
                                  min_area_px=min_area_px)

    try:
        with contextlib.ExitStack() as stack, torch.inference_mode():
            writer = ClassRasterWriter(classes_path, reader, num_classes, stack)
            footprints = FootprintWriter(footprints_path, stem, reader.crs, stack) if footprints_path else None
            for top, probs in sliding_strips(model_fn, read_rows, reader.height, reader.width, window=window,
                                             overlap=overlap, num_classes=num_classes, batch_size=batch_size):
                labels = probs.argmax(0).to(torch.uint8).cpu().numpy()  # (rows, W)
                writer.write(top, labels)
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
    save_png(overlay_path, overlay.canvas)
    seconds = time.time() - tic
    pixels = reader.height * reader.width
    result = {"classes": classes_path, "overlay": overlay_path, "footprints": footprints_path,
              "num_footprints": footprints.count if footprints is not None else 0, "pixels": pixels,
              "seconds": seconds, "crs": reader.crs, "transform": reader.transform}
    log.info("predict %s: %dx%d px in %.1f s (%.2f Mpx/s), %d footprints -> %s", path, reader.width, reader.height,
             seconds, pixels / 1e6 / max(seconds, 1e-9), result["num_footprints"], out_dir)
    return result


def run(args) -> None:
    device = torch.device(args.device)
    model, ckpt = load_seg_model(args.seg_weights_name, device)
    class_names = list(ckpt.get("class_names") or [f"class_{i}" for i in range(model.num_classes)])
    paths = scene_paths(args.predict_input)
    log.info("predict: %d scenes with %s (%s, classes %s), window %d overlap %d", len(paths), args.seg_weights_name,
             ckpt.get("backbone"), class_names, args.predict_window, args.predict_overlap)
    if dist.is_main():
        save_args(args, args.seg_out_dir, "predict")
    model_fn = engine_model_fn(model, getattr(args, "predict_engine", "exact"))  # misc/inference_engine.py
    prepare_out_dir(args.seg_out_dir)
    mine = dist.shard(paths)
    todo = [p for p in mine if args.overwrite or not scene_done(args.seg_out_dir, p)]
    if len(todo) < len(mine):
        log.info("predict: %d scenes already mapped in %s (--overwrite redoes them)", len(mine) - len(todo),
                 args.seg_out_dir)
    bad = BadItems("predict", skip_bad=args.skip_bad)
    for path in todo:
        with bad.guard(path):
            predict_scene(path, args.seg_out_dir, model_fn, class_names=class_names, window=args.predict_window,
                          overlap=args.predict_overlap, batch_size=args.predict_batch_size,
                          building_class=args.predict_building_class, simplify_tolerance=args.predict_simplify,
                          min_area_px=args.predict_min_area)
    bad.log_summary()


def scene_done(out_dir: str, path: str) -> bool:
    """True when the scene's class raster and overlay (the last file predict_scene writes) both exist."""
    stem = os.path.splitext(os.path.basename(path))[0]
    classes = artifacts.scene_classes_path(out_dir, stem, tiff=path.lower().endswith(TIFF_EXTS))
    return os.path.isfile(classes) and os.path.isfile(artifacts.scene_overlay_path(out_dir, stem))


def main(argv: list[str] | None = None) -> int:
    """``python -m step.predict ...``: run_sample's parser and set-up with the predict pass switched on."""
    from run_sample import main as run_sample_main

    return run_sample_main(["--predict_pass", "True", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
