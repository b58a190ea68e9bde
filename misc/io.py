"""Atomic artifact writers and small readers.

Every artifact is written to a temporary file in the destination folder and then moved into place with
``os.replace``: a crash (or SIGKILL) never leaves a half-written file under the final name, and a reader either
sees the old file or the complete new one.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from typing import Iterable, Iterator

import numpy as np


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_DEFAULT_MODE = _umask_mode()  # read once at import: os.umask can only be read by setting it


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a temporary path next to ``path``; on success move it to ``path``, on failure delete it."""
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
        os.chmod(tmp, _DEFAULT_MODE)  # mkstemp makes the file private (0600); artifacts get the usual umask mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def save_npy(path: str, array: np.ndarray) -> None:
    """Write one array as ``.npy`` (never pickled)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, np.asarray(array), allow_pickle=False)


def save_npz(path: str, **arrays: np.ndarray) -> None:
    """Write several named arrays as an uncompressed ``.npz`` (never pickled), byte-reproducible.

    ``np.savez`` stamps each zip member with the current time, so the same arrays written twice differ in bytes; a
    fixed timestamp makes equal artifacts equal files (the determinism test compares them byte for byte).
    """
    import zipfile

    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
            for key, value in arrays.items():
                info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                with archive.open(info, "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asarray(value), allow_pickle=False)


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
    with atomic_path(path) as tmp:
        ok, buf = cv2.imencode(".png", array)
        if not ok:
            raise OSError(f"cannot encode PNG for {path}")
        buf.tofile(tmp)


def save_jpg(path: str, array: np.ndarray, quality: int = 95) -> None:
    """Write a uint8 (H,W,3) RGB array as JPEG."""
    import cv2

    with atomic_path(path) as tmp:
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(np.asarray(array), cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        if not ok:
            raise OSError(f"cannot encode JPEG for {path}")
        buf.tofile(tmp)


def save_json(path: str, obj) -> None:
    """Write JSON (indented, keys in insertion order)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, default=_json_default)
            f.write("\n")


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value)}")


def save_text_lines(path: str, lines: Iterable[str]) -> None:
    """Write one item per line (a list file)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for line in lines:
                f.write(f"{line}\n")


def load_png(path: str) -> np.ndarray:
    """Read a PNG as stored (uint8 (H,W) label or (H,W,3) RGB); a missing/corrupt file names itself."""
    import cv2

    if not os.path.isfile(path):
        raise FileNotFoundError(f"missing file: {path}")
    array = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise ValueError(f"corrupt or unreadable image: {path}")
    if array.ndim == 3:
        array = cv2.cvtColor(array[..., :3], cv2.COLOR_BGR2RGB)
    return array


def save_args(args, out_dir: str, pass_name: str) -> str:
    """Write the arguments a pass ran with next to its outputs (``args_<pass>.json``); returns the path."""
    from misc import artifacts

    path = artifacts.args_json_path(out_dir, pass_name)
    save_json(path, {k: (list(v) if isinstance(v, tuple) else v) for k, v in sorted(vars(args).items())})
    return path
