"""Reading source imagery and masks: PNG/JPEG via OpenCV, GeoTIFF/TIFF via rasterio.

OpenCV's ``imread`` mishandles non-ASCII paths on some platforms, so files are read as bytes and decoded with
``cv2.imdecode``. Every error names the file.
"""
from __future__ import annotations

import logging
import os
import warnings

import numpy as np

logger = logging.getLogger(__name__)

TIFF_EXTS = (".tif", ".tiff")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
MASK_EXTS = (".png", ".tif", ".tiff", ".bmp")


def _stretch_to_uint8(array: np.ndarray, path: str) -> np.ndarray:
    """Per-band 2-98 % percentile stretch of a (H, W, C) non-uint8 image to uint8."""
    out = np.empty(array.shape, dtype=np.uint8)
    for c in range(array.shape[2]):
        band = array[..., c].astype(np.float32)
        lo, hi = np.percentile(band, [2, 98])
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        out[..., c] = np.clip((band - lo) * scale, 0, 255).astype(np.uint8)
    logger.info("%s: %s image scaled to uint8 by a 2-98 %% percentile stretch per band", path, array.dtype)
    return out


def _read_tiff(path: str) -> np.ndarray:
    """(H, W, C) array of the file's bands, as stored."""
    import rasterio

    try:
        with warnings.catch_warnings():
            # plain (non-geo) TIFFs are fine here: only the pixels are used
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                bands = src.read(indexes=list(range(1, min(src.count, 3) + 1)))  # (C, H, W)
    except rasterio.errors.RasterioError as err:
        raise ValueError(f"corrupt or unreadable raster {path}: {err}") from err
    return np.moveaxis(bands, 0, -1)


def _read_cv2(path: str) -> np.ndarray:
    """(H, W) or (H, W, C) RGB(A) array as stored."""
    import cv2

    try:
        data = np.fromfile(path, np.uint8)
    except OSError as err:
        raise ValueError(f"cannot read {path}: {err}") from err
    array = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if array is None:
        raise ValueError(f"corrupt or unreadable image {path}")
    if array.ndim == 3 and array.shape[2] == 3:
        array = cv2.cvtColor(array, cv2.COLOR_BGR2RGB)
    elif array.ndim == 3 and array.shape[2] == 4:
        array = cv2.cvtColor(array, cv2.COLOR_BGRA2RGBA)
    return array


def _read_raw(path: str) -> np.ndarray:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file: {path}")
    if path.lower().endswith(TIFF_EXTS):
        return _read_tiff(path)
    return _read_cv2(path)


def read_image(path: str) -> np.ndarray:
    """Read an RGB image as uint8 (H, W, 3).

    Grey images are repeated to three channels, alpha is dropped, a TIFF contributes its first three bands, and
    non-uint8 data (e.g. uint16 GeoTIFF) is percentile-stretched to uint8 (logged).
    """
    array = _read_raw(path)
    if array.ndim == 2:
        array = array[..., None]
    if array.shape[2] == 2:  # grey + alpha
        array = array[..., :1]
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    array = array[..., :3]
    if array.dtype != np.uint8:
        array = _stretch_to_uint8(array, path)
    return np.ascontiguousarray(array)


def read_mask(path: str) -> np.ndarray:
    """Read a mask as stored: uint8 (H, W) for one band, (H, W, 3) RGB for colour masks (alpha dropped).

    Integer masks of another dtype are accepted when every value fits 0..255; anything else is an error.
    """
    array = _read_raw(path)
    if array.ndim == 3:
        array = array[..., 0] if array.shape[2] in (1, 2) else array[..., :3]
    if array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.integer) or (array.size and (array.min() < 0 or array.max() > 255)):
            raise ValueError(f"mask {path} has dtype {array.dtype} with values outside 0..255; "
                             f"masks must hold uint8 colours or class indices")
        array = array.astype(np.uint8)
    return np.ascontiguousarray(array)
