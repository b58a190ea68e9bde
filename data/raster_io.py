"""Reading source imagery and masks: PNG/JPEG via OpenCV, GeoTIFF/TIFF via rasterio.

OpenCV's ``imread`` mishandles non-ASCII paths on some platforms, so files are read as bytes and decoded with
``cv2.imdecode``. Every error names the file.

- Size limit: a PNG/JPEG/BMP header, or a TIFF read whole, that claims more than ``MAX_IMAGE_PIXELS`` pixels
  (2**30, about 1.07 Gpx, OpenCV's own limit; environment variable ``WSSS_MAX_IMAGE_PIXELS`` lowers it) is refused
  before anything is decoded, so a "decompression bomb" is an error naming the file, not a crash. ``predict`` reads
  GeoTIFF scenes window by window and is not bound by it.
- Damaged JPEG data that libjpeg still decodes (it only prints "Corrupt JPEG data ...") is logged as a warning naming
  the file and counted by the pass (``misc.robust.note_damaged``); the decoded pixels are used.
- No-data: a float raster's NaN pixels and the pixels equal to the file's ``nodata`` value are left out of the
  percentile stretch (they become 0); :func:`read_image_nodata` also returns where they are, so ``data.prepare``
  can make them ignore (255) in the masks.
"""
from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import warnings

import numpy as np

from misc.io import MAX_IMAGE_PIXELS, check_image_size, header_size  # noqa: F401 (re-exported)

logger = logging.getLogger(__name__)

TIFF_EXTS = (".tif", ".tiff")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
MASK_EXTS = (".png", ".tif", ".tiff", ".bmp")
JPEG_EXTS = (".jpg", ".jpeg")
# what libjpeg prints to stderr for data it decodes anyway (jerror.h: JWRN_*)
_JPEG_WARNINGS = ("Corrupt JPEG data", "Premature end of JPEG file", "Invalid SOS parameters")


@contextlib.contextmanager
def _stderr_captured(out: list[bytes]):
    """Collect what C code writes to file descriptor 2 (libjpeg's warnings) while the block runs."""
    import sys

    with contextlib.suppress(Exception):
        sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all (a detached daemon): nothing to capture
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            out.append(sink.read(4096))


def _stretch_to_uint8(array: np.ndarray, path: str, nodata: np.ndarray | None = None) -> np.ndarray:
    """Per-band 2-98 % percentile stretch of a (H, W, C) non-uint8 image to uint8; ``nodata`` (H, W) bool pixels (and
    NaN) are left out of the percentiles and become 0."""
    out = np.zeros(array.shape, dtype=np.uint8)
    valid = np.ones(array.shape[:2], bool) if nodata is None else ~nodata
    for c in range(array.shape[2]):
        band = array[..., c].astype(np.float32)
        good = valid & np.isfinite(band)
        if not good.any():
            continue
        lo, hi = np.percentile(band[good], [2, 98])
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        out[..., c] = np.where(good, np.clip((np.nan_to_num(band) - lo) * scale, 0, 255), 0).astype(np.uint8)
    logger.info("%s: %s image scaled to uint8 by a 2-98 %% percentile stretch per band", path, array.dtype)
    return out


def _cause(err: BaseException) -> str:
    """GDAL's own message (rasterio's is often 'Read failed. See previous exception for details.')."""
    inner = err.__cause__ or err.__context__
    return str(inner) if inner is not None and str(inner) else str(err)


def _read_tiff(path: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(H, W, C) array of the file's first three bands as stored, and the (H, W) bool no-data mask (NaN in any band,
    or the file's nodata value in all of them), None when there is none."""
    import rasterio

    try:
        with warnings.catch_warnings():
            # plain (non-geo) TIFFs are fine here: only the pixels are used
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                check_image_size(path, src.width, src.height)  # read whole: the same limit as PNG/JPEG
                indexes = list(range(1, min(src.count, 3) + 1))
                bands = src.read(indexes=indexes)  # (C, H, W)
                nodata = src.nodata
    except rasterio.errors.RasterioError as err:
        raise ValueError(f"corrupt, truncated or unreadable raster {path}: {_cause(err)}") from err
    mask = None
    if np.issubdtype(bands.dtype, np.floating):
        mask = np.isnan(bands).any(axis=0)
    if nodata is not None and not np.isnan(nodata):
        hit = (bands == np.asarray(nodata).astype(bands.dtype)).all(axis=0)  # every band at the nodata value
        mask = hit if mask is None else mask | hit
    if mask is not None and not mask.any():
        mask = None
    return np.moveaxis(bands, 0, -1), mask


def read_bands(src, path: str, **kwargs) -> np.ndarray:
    """``src.read(**kwargs)`` of an open rasterio dataset; a truncated/corrupt file is a ValueError naming ``path``
    and GDAL's reason (rasterio's own text is 'Read failed. See previous exception for details.')."""
    import rasterio

    try:
        return src.read(**kwargs)
    except rasterio.errors.RasterioError as err:
        raise ValueError(f"corrupt or truncated raster {path}: {_cause(err)}") from err


def _read_cv2(path: str) -> np.ndarray:
    """(H, W) or (H, W, C) RGB(A) array as stored."""
    import cv2

    try:
        data = np.fromfile(path, np.uint8)
    except OSError as err:
        raise ValueError(f"cannot read {path}: {err}") from err
    size = header_size(data[:1 << 18].tobytes())  # the frame header follows any EXIF/ICC segments
    if size is not None:
        check_image_size(path, *size)
    captured: list[bytes] = []
    try:
        if not data.size:
            array = None
        elif path.lower().endswith(JPEG_EXTS):
            with _stderr_captured(captured):
                array = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
        else:
            array = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error as err:
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else "OpenCV error"
        raise ValueError(f"corrupt or unreadable image {path}: {reason}") from err
    if array is None:
        raise ValueError(f"corrupt or unreadable image {path}")
    text = b"".join(captured).decode("latin-1")
    if any(w in text for w in _JPEG_WARNINGS):
        from misc.robust import note_damaged

        note_damaged(path, "damaged JPEG data decoded with warnings (libjpeg: "
                           f"{text.strip().splitlines()[0][:120]}); check or replace the file")
    elif text.strip():  # not ours: pass it on
        os.write(2, text.encode("latin-1"))
    if array.ndim == 3 and array.shape[2] == 3:
        array = cv2.cvtColor(array, cv2.COLOR_BGR2RGB)
    elif array.ndim == 3 and array.shape[2] == 4:
        array = cv2.cvtColor(array, cv2.COLOR_BGRA2RGBA)
    return array


def _read_raw(path: str) -> tuple[np.ndarray, np.ndarray | None]:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file: {path}")
    if path.lower().endswith(TIFF_EXTS):
        return _read_tiff(path)
    return _read_cv2(path), None


def read_image(path: str) -> np.ndarray:
    """Read an RGB image as uint8 (H, W, 3).

    Grey images are repeated to three channels, alpha is dropped, a TIFF contributes its first three bands, and
    non-uint8 data (e.g. uint16 GeoTIFF) is percentile-stretched to uint8 (logged), no-data left out.
    """
    return read_image_nodata(path)[0]


def read_image_nodata(path: str) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`read_image` and the (H, W) bool mask of its no-data pixels (NaN or the raster's nodata value; they are
    0 in the image), None when it has none."""
    array, nodata = _read_raw(path)
    if array.ndim == 2:
        array = array[..., None]
    if array.shape[2] == 2:  # grey + alpha
        array = array[..., :1]
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    array = array[..., :3]
    if array.dtype != np.uint8:
        array = _stretch_to_uint8(array, path, nodata)
    elif nodata is not None:
        array = np.where(nodata[..., None], 0, array).astype(np.uint8)
    return np.ascontiguousarray(array), nodata


def read_mask(path: str) -> np.ndarray:
    """Read a mask as stored: uint8 (H, W) for one band, (H, W, 3) RGB for colour masks (alpha dropped).

    Integer masks of another dtype are accepted when every value fits 0..255; anything else is an error.
    """
    array, _ = _read_raw(path)
    if array.ndim == 3:
        array = array[..., 0] if array.shape[2] in (1, 2) else array[..., :3]
    if array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.integer) or (array.size and (array.min() < 0 or array.max() > 255)):
            raise ValueError(f"mask {path} has dtype {array.dtype} with values outside 0..255; "
                             f"masks must hold uint8 colours or class indices")
        array = array.astype(np.uint8)
    return np.ascontiguousarray(array)
