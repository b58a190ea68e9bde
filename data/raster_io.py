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
import math
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


# --- whole scenes, read strip by strip (predict) --------------------------------------------------------------------
# A scene of any size: band selection, a per-band stretch of non-uint8 data, and its georeference (GeoTIFF tags, a
# world file next to it, or the --predict_transform / --predict_crs overrides).

STRETCH_SAMPLE_SIDE = 1024  # long side of the decimated read that sets the percentile stretch
DEFAULT_BANDS = (1, 2, 3)
# world files GIS software writes next to a raster: <stem><ext> (and the generic .wld)
WORLD_FILE_EXTS = {".png": (".pgw", ".pngw"), ".jpg": (".jgw", ".jpgw"), ".jpeg": (".jgw", ".jpegw"),
                   ".tif": (".tfw", ".tifw"), ".tiff": (".tfw", ".tiffw")}


def parse_bands(value) -> tuple[int, int, int]:
    """--bands '3,2,1' (1-based band numbers for R, G, B) → (3, 2, 1); an error otherwise."""
    if isinstance(value, str):
        try:
            value = [int(v) for v in value.replace(" ", "").split(",") if v]
        except ValueError:
            raise ValueError(f"--bands {value!r}: expected three 1-based band numbers, e.g. 3,2,1") from None
    bands = tuple(int(b) for b in value)
    if len(bands) != 3 or min(bands) < 1:
        raise ValueError(f"--bands {','.join(map(str, bands))}: expected three 1-based band numbers for R,G,B, "
                         f"e.g. 3,2,1 for BGR(N) imagery")
    return bands


def parse_transform(value: str):
    """--predict_transform 'a,b,c,d,e,f' (rasterio's Affine order: x = a*col + b*row + c, y = d*col + e*row + f,
    for the top-left pixel corner) → Affine."""
    from affine import Affine

    try:
        numbers = [float(v) for v in str(value).replace(" ", "").split(",") if v]
    except ValueError:
        numbers = []
    if len(numbers) != 6 or numbers[0] * numbers[4] - numbers[1] * numbers[3] == 0:
        raise ValueError(f"--predict_transform {value!r}: expected six numbers a,b,c,d,e,f (x = a*col + b*row + c, "
                         f"y = d*col + e*row + f of the top-left pixel corner), e.g. 0.5,0,500000,0,-0.5,2800000")
    return Affine(*numbers)


def find_world_file(path: str) -> str | None:
    """The world file next to ``path`` (``tile.png`` → ``tile.pgw``, ``tile.pngw`` or ``tile.wld``), or None."""
    stem, ext = os.path.splitext(path)
    for world_ext in WORLD_FILE_EXTS.get(ext.lower(), ()) + (".wld",):
        for candidate in (stem + world_ext, stem + world_ext.upper()):
            if os.path.isfile(candidate):
                return candidate
    return None


def read_world_file(path: str):
    """A world file's six lines (A, D, B, E, C, F; C/F = centre of the top-left pixel) → Affine of pixel corners."""
    from affine import Affine

    try:
        with open(path, encoding="utf-8-sig") as f:
            numbers = [float(line) for line in f.read().split()]
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ValueError(f"world file {path} is not six numbers: {err}") from err
    if len(numbers) != 6:
        raise ValueError(f"world file {path} holds {len(numbers)} numbers, expected 6 (A, D, B, E, C, F)")
    a, d, b, e, c, f = numbers
    return Affine(a, b, c - 0.5 * a - 0.5 * b, d, e, f - 0.5 * d - 0.5 * e)  # centre → corner of pixel (0, 0)


def world_file_text(transform) -> list[str]:
    """The six world-file lines of a corner transform (inverse of :func:`read_world_file`)."""
    t = transform
    return [repr(float(v)) for v in (t.a, t.d, t.b, t.e, t.c + 0.5 * t.a + 0.5 * t.b, t.f + 0.5 * t.d + 0.5 * t.e)]


def _read_prj(path: str):
    """CRS of the ``.prj`` (WKT) sidecar of a world file, or None."""
    from rasterio.crs import CRS

    candidate = os.path.splitext(path)[0] + ".prj"
    if not os.path.isfile(candidate):
        return None
    try:
        with open(candidate, encoding="utf-8-sig") as f:
            return CRS.from_user_input(f.read().strip())
    except Exception as err:  # rasterio raises CRSError
        raise ValueError(f"{candidate}: not a CRS (WKT or EPSG code): {err}") from err


def parse_crs(value):
    """--predict_crs 'EPSG:32640' (or any string rasterio understands) → CRS; None stays None."""
    if value in (None, ""):
        return None
    from rasterio.crs import CRS

    try:
        return CRS.from_user_input(value)
    except Exception as err:
        raise ValueError(f"--predict_crs {value!r}: not a CRS (e.g. EPSG:32640): {err}") from err


class SceneReader:
    """Rows of a scene as uint8 RGB (h, W, 3): windowed rasterio reads for TIFF, a decoded array otherwise.

    Attributes: height, width, is_tiff, crs (rasterio CRS or None), transform (Affine; identity without one),
    georeferenced (False: footprints stay in pixel coordinates), georeference (where it came from, for the log).

    Args:
        bands: 1-based band numbers that form R, G, B.
        crs, transform: --predict_crs / --predict_transform (override what the file and a world file say).
    """

    def __init__(self, path: str, bands=DEFAULT_BANDS, crs=None, transform=None):
        from affine import Affine

        self.path = path
        self.is_tiff = path.lower().endswith(TIFF_EXTS)
        self.crs, self.transform = None, Affine.identity()
        self.bands = parse_bands(bands)
        self._src = None
        self._array = None
        self._stretch = None  # (3, 2) float32 per-band (low, high) for non-uint8 TIFF data
        if self.is_tiff:
            self._open_tiff()
        else:
            rgb = read_image(path)  # (H, W, 3); a grey image is already repeated
            if max(self.bands) > 3:
                raise ValueError(f"--bands {','.join(map(str, self.bands))}: {path} is a PNG/JPEG with 3 bands (R,G,B)")
            self._array = rgb if self.bands == DEFAULT_BANDS else np.ascontiguousarray(
                rgb[..., [b - 1 for b in self.bands]])
            self.height, self.width = self._array.shape[:2]
        self._georeference(crs, transform)

    def _georeference(self, crs, transform) -> None:
        from affine import Affine

        self.georeferenced = self.transform != Affine.identity()
        self.georeference = "GeoTIFF" if self.georeferenced else None
        if not self.georeferenced:
            world = find_world_file(self.path)
            if world:
                self.transform = read_world_file(world)
                self.crs = self.crs or _read_prj(world)
                self.georeferenced, self.georeference = True, f"world file {world}"
        if transform is not None:
            self.transform = transform
            self.georeferenced, self.georeference = True, "--predict_transform"
        if crs is not None:
            if self.crs is not None and self.crs != crs:
                logger.warning("%s: --predict_crs %s replaces the file's CRS %s", self.path, crs, self.crs)
            self.crs = crs
            if not self.georeferenced:
                raise ValueError(f"{self.path}: --predict_crs needs a transform too: a world file next to the scene "
                                 f"({'/'.join(WORLD_FILE_EXTS.get(os.path.splitext(self.path)[1].lower(), ()))}"
                                 f"/.wld) or --predict_transform")

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
        if src.count < 3 and self.bands == DEFAULT_BANDS:
            self.bands = (1, 1, 1)  # a grey scene
        if max(self.bands) > src.count:
            raise ValueError(f"--bands {','.join(map(str, self.bands))}: {self.path} has only {src.count} band(s)")
        self._bands = list(self.bands)
        if src.dtypes[0] != "uint8":
            self._stretch = self._stretch_limits()
            logger.info("%s: %s bands stretched to uint8 per band (2-98 %% percentiles) %s", self.path, src.dtypes[0],
                     self._stretch.tolist())

    def _stretch_limits(self) -> np.ndarray:
        """Per-band 2nd/98th percentiles of a decimated read (≤ STRETCH_SAMPLE_SIDE² pixels), not the whole scene."""
        from rasterio.enums import Resampling

        factor = max(1, math.ceil(max(self.height, self.width) / STRETCH_SAMPLE_SIDE))
        shape = (3, max(1, self.height // factor), max(1, self.width // factor))
        sample = read_bands(self._src, self.path, indexes=self._bands, out_shape=shape,
                            resampling=Resampling.nearest)
        limits = np.stack([np.nanpercentile(b.astype(np.float32), [2, 98]) for b in sample])  # NaN: float no-data
        return np.nan_to_num(limits).astype(np.float32)

    def read_rows(self, top: int, bottom: int) -> np.ndarray:
        """Scene rows [top, bottom) as uint8 (bottom - top, width, 3)."""
        if self._array is not None:
            return self._array[top:bottom]
        from rasterio.windows import Window

        bands = read_bands(self._src, self.path, indexes=self._bands,
                           window=Window(0, top, self.width, bottom - top))  # (3, h, W)
        if self._stretch is not None:
            low, high = self._stretch[:, :1, None], self._stretch[:, 1:, None]  # (3, 1, 1)
            scale = np.where(high > low, 255.0 / np.maximum(high - low, 1e-12), 0.0).astype(np.float32)
            bands = np.clip(np.nan_to_num((bands.astype(np.float32) - low) * scale), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(bands.transpose(1, 2, 0))

    def close(self) -> None:
        if self._src is not None:
            self._src.close()
            self._src = None
