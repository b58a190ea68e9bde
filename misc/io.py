"""Atomic artifact writers and small readers.

Every artifact is written to a temporary file in the destination folder and then moved into place with
``os.replace``: a crash (or SIGKILL) never leaves a half-written file under the final name, and a reader either
sees the old file or the complete new one.

Every write is checked: the bytes are produced in memory, written with one ``write`` whose failure (a full disk, a
quota, a vanished folder) raises :class:`WriteError` naming the final file and the cause ("no space left on device"),
and the temporary file's size is compared with what was meant to be written before it is renamed. An empty file never
gets a final name. :func:`is_complete` is the cheap check a resuming pass uses before it trusts an existing artifact
(size and format header/trailer), so a file written by an older, unchecked version is redone instead of kept.
"""
from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import struct
import tempfile
from typing import Iterable, Iterator

import numpy as np


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_DEFAULT_MODE = _umask_mode()  # read once at import: os.umask can only be read by setting it


class WriteError(OSError):
    """A write that failed: ``str()`` names the final file and the cause; ``errno`` is the system's (e.g. ENOSPC)."""

    def __init__(self, path: str, cause: str, errno_: int | None = None):
        self.message = f"cannot write {path}: {cause}"
        super().__init__(self.message)
        self.errno = errno_
        self.path, self.cause = path, cause

    def __str__(self) -> str:  # OSError's own would print "[Errno 28] None" once errno is set
        return self.message

    def __reduce__(self):  # travels intact from a worker process (cam_to_ir_label --num_workers)
        return type(self), (self.path, self.cause, self.errno)


# errors that can only come from writing: a full disk, a quota, a read-only file system, a file too large
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}


def _cause(err: BaseException) -> str:
    """'no space left on device' for ENOSPC, else the error's own text (lower-case first letter, one line)."""
    text = getattr(err, "strerror", None) or str(err) or type(err).__name__
    text = text.strip().replace("\n", " | ")
    return text[:1].lower() + text[1:]


def write_bytes(tmp: str, data: bytes | memoryview, *, final: str) -> None:
    """Write ``data`` to ``tmp`` and make sure all of it arrived; errors name ``final`` (the artifact's real name).

    Python's ``write``/``close`` raise on a failed or short write (numpy's ``tofile`` and OpenCV's encoders may not,
    which left 0-byte PNGs on a full disk); the size comparison catches anything that still slips through.
    """
    data = memoryview(data)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
    except OSError as err:
        raise WriteError(final, _cause(err), err.errno) from err
    size = os.path.getsize(tmp)
    if size != data.nbytes:
        raise WriteError(final, f"{size} of {data.nbytes} bytes written (disk full?)")


@contextlib.contextmanager
def atomic_path(path: str, *, allow_empty: bool = False) -> Iterator[str]:
    """Yield a temporary path next to ``path``; on success move it to ``path``, on failure delete it.

    A body that leaves the temporary file empty is an error (unless ``allow_empty``): a writer that ignored a failed
    write must not give an empty file a final name.
    """
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        raise OSError(f"cannot create output folder {folder!r}: {err.strerror}") from err
    base = os.path.basename(path)
    # keep the real extension last so libraries that pick the format from the suffix (cv2, np.save) behave
    stem, ext = os.path.splitext(base)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".tmp{ext}", dir=folder)
    except OSError as err:
        raise OSError(f"cannot write into output folder {folder!r}: {err.strerror}") from err
    os.close(fd)
    try:
        yield tmp
        try:
            if not allow_empty and os.path.getsize(tmp) == 0:
                raise WriteError(path, "the writer produced an empty file (disk full?)")
            os.chmod(tmp, _DEFAULT_MODE)  # mkstemp makes the file private (0600); artifacts get the usual umask mode
            os.replace(tmp, path)
        except WriteError:
            raise
        except OSError as err:
            raise WriteError(path, _cause(err), err.errno) from err
    except OSError as err:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        # a writer of the body (rasterio, a streamed file) that failed on the disk: name the final file
        if not isinstance(err, WriteError) and (err.errno in _DISK_ERRNOS or tmp in str(err)
                                                or "No space left on device" in str(err)):
            raise WriteError(path, _cause(err).replace(tmp, path), err.errno) from err
        raise
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def save_npy(path: str, array: np.ndarray) -> None:
    """Write one array as ``.npy`` (never pickled)."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    with atomic_path(path) as tmp:
        write_bytes(tmp, buffer.getbuffer(), final=path)


def save_npz(path: str, **arrays: np.ndarray) -> None:
    """Write several named arrays as an uncompressed ``.npz`` (never pickled), byte-reproducible.

    ``np.savez`` stamps each zip member with the current time, so the same arrays written twice differ in bytes; a
    fixed timestamp makes equal artifacts equal files (the determinism test compares them byte for byte).
    """
    import zipfile

    buffer = io.BytesIO()  # built in memory, written with one checked write
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for key, value in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asarray(value), allow_pickle=False)
    with atomic_path(path) as tmp:
        write_bytes(tmp, buffer.getbuffer(), final=path)


def load_npz(path: str) -> dict[str, np.ndarray]:
    """Read an ``.npz`` written by :func:`save_npz` into a dict; a missing/corrupt file names itself."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"missing artifact: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except Exception as err:  # zipfile/ValueError/OSError: all mean the same thing to the user
        raise ValueError(f"corrupt or unreadable artifact {path}: {err}") from err


def save_png(path: str, array: np.ndarray) -> None:
    """Write a uint8 (H,W) or (H,W,3) RGB array as PNG."""
    import cv2

    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise TypeError(f"{path}: PNG artifacts are uint8, got {array.dtype}")
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", array)
    if not ok:
        raise WriteError(path, "OpenCV could not encode the PNG")
    with atomic_path(path) as tmp:
        write_bytes(tmp, buf.tobytes(), final=path)


def save_jpg(path: str, array: np.ndarray, quality: int = 95) -> None:
    """Write a uint8 (H,W,3) RGB array as JPEG."""
    import cv2

    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(np.asarray(array), cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise WriteError(path, "OpenCV could not encode the JPEG")
    with atomic_path(path) as tmp:
        write_bytes(tmp, buf.tobytes(), final=path)


def save_json(path: str, obj) -> None:
    """Write JSON (indented, keys in insertion order)."""
    text = json.dumps(obj, indent=2, default=_json_default) + "\n"
    with atomic_path(path) as tmp:
        write_bytes(tmp, text.encode("utf-8"), final=path)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value)}")


def save_text_lines(path: str, lines: Iterable[str]) -> None:
    """Write one item per line (a list file)."""
    text = "".join(f"{line}\n" for line in lines)
    with atomic_path(path, allow_empty=not text) as tmp:
        write_bytes(tmp, text.encode("utf-8"), final=path)


# Images whose header claims more pixels are refused before decoding (a corrupt header or a decompression bomb):
# 2**30 is OpenCV's own limit (CV_IO_MAX_IMAGE_PIXELS); the environment variable WSSS_MAX_IMAGE_PIXELS lowers it.
MAX_IMAGE_PIXELS = min(int(os.environ.get("WSSS_MAX_IMAGE_PIXELS", 1 << 30)), 1 << 30)


def check_image_size(path: str, width: int, height: int) -> None:
    """Refuse an image whose header claims more than MAX_IMAGE_PIXELS pixels (before any decoding)."""
    if width <= 0 or height <= 0:
        raise ValueError(f"corrupt image {path}: its header claims {width}x{height} pixels")
    if width * height > MAX_IMAGE_PIXELS:
        raise ValueError(f"image {path} is too large: its header claims {width}x{height} = {width * height:,} "
                         f"pixels, more than the limit of {MAX_IMAGE_PIXELS:,} (a corrupt header or a "
                         f"decompression bomb; tile it into smaller files first)")


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG, JPEG or BMP header without decoding; None when the format is not recognised or
    the header is cut short (the decoder then reports the damage)."""
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
            return struct.unpack(">II", data[16:24])
        if data[:2] == b"BM" and len(data) >= 26:
            width, height = struct.unpack("<ii", data[18:26])
            return width, abs(height)
        if data[:2] == b"\xff\xd8":
            pos = 2
            for _ in range(1000):  # bounded: a JPEG header has a handful of segments
                while pos < len(data) and data[pos] == 0xFF and pos + 1 < len(data) and data[pos + 1] == 0xFF:
                    pos += 1  # fill bytes
                if pos + 4 > len(data) or data[pos] != 0xFF:
                    return None
                marker = data[pos + 1]
                if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                    pos += 2
                    continue
                (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
                if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
                    height, width = struct.unpack(">HH", data[pos + 5:pos + 9])
                    return width, height
                if marker in (0xDA, 0xD9) or length < 2:  # start of scan / end: no frame header before it
                    return None
                pos += 2 + length
    except struct.error:
        return None
    return None


def load_png(path: str) -> np.ndarray:
    """Read a PNG as stored (uint8 (H,W) label or (H,W,3) RGB); a missing/corrupt file names itself."""
    import cv2

    if not os.path.isfile(path):
        raise FileNotFoundError(f"missing file: {path}")
    data = np.fromfile(path, np.uint8)
    size = header_size(data[:1 << 18].tobytes())
    if size is not None:
        check_image_size(path, *size)
    try:
        array = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    except cv2.error as err:
        raise ValueError(f"corrupt or unreadable image: {path} (OpenCV: {str(err).strip().splitlines()[-1]})") from err
    if array is None:
        raise ValueError(f"corrupt or unreadable image: {path}")
    if array.ndim == 3:
        array = cv2.cvtColor(array[..., :3], cv2.COLOR_BGR2RGB)
    return array


# (leading bytes, trailing bytes) of a complete file of each format; None = not checked
_SIGNATURES: dict[str, tuple[tuple[bytes, ...], tuple[bytes, ...] | None]] = {
    ".png": ((b"\x89PNG\r\n\x1a\n",), (b"IEND\xaeB`\x82",)),  # the IEND chunk closes every PNG
    ".jpg": ((b"\xff\xd8",), (b"\xff\xd9",)),
    ".jpeg": ((b"\xff\xd8",), (b"\xff\xd9",)),
    ".npy": ((b"\x93NUMPY",), None),
    ".npz": ((b"PK\x03\x04",), None),  # plus the end-of-central-directory record, checked below
    ".tif": ((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"), None),
    ".tiff": ((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"), None),
    ".pth": ((b"PK\x03\x04",), None),
}


def is_complete(path: str) -> bool:
    """Cheap check that an existing artifact is whole: not empty, and its format's first (and, where the format has
    one, last) bytes are there; ``.npz``/``.pth`` zip files also need their closing central directory.

    Reads at most a few dozen bytes, so a resuming pass can call it for every item. False for a missing file.
    """
    try:
        size = os.path.getsize(path)
        if size == 0:
            return False
        heads, tails = _SIGNATURES.get(os.path.splitext(path)[1].lower(), ((), None))
        if not heads:
            return True
        with open(path, "rb") as f:
            head = f.read(8)
            if not any(head.startswith(h) for h in heads):
                return False
            if tails is not None:
                f.seek(max(0, size - 8))
                if not any(f.read().endswith(t) for t in tails):
                    return False
            if head.startswith(b"PK"):
                f.seek(max(0, size - 22))  # the end record: the last 22 bytes of a zip without a comment
                if f.read(4) == b"PK\x05\x06":
                    return True
                f.seek(max(0, size - 22 - 65535))  # with a comment it is still within the last 64 KiB
                return b"PK\x05\x06" in f.read()
        return True
    except OSError:
        return False


def save_args(args, out_dir: str, pass_name: str) -> str:
    """Write the arguments a pass ran with next to its outputs (``args_<pass>.json``); returns the path.

    Also removes the temporary files a run killed while writing this pass's JSON files (``args_<pass>.json``,
    ``<pass>.json`` such as ``eval_cam.json``) left in ``out_dir``: eval passes write nothing else there.
    """
    from misc import artifacts
    from misc.robust import remove_stale_temp_files_of

    path = artifacts.args_json_path(out_dir, pass_name)
    remove_stale_temp_files_of(path)
    remove_stale_temp_files_of(artifacts.eval_json_path(out_dir, pass_name))
    save_json(path, {k: (list(v) if isinstance(v, tuple) else v) for k, v in sorted(vars(args).items())})
    return path
