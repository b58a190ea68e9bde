"""The prepared data set's layout, name lists, and the image-level label file ``cls_labels.npy``.

Layout under ``voc12_root`` (VOC-style, written by ``data.prepare``; file names are built in ``misc.artifacts``)::

    JPEGImages/<name>.jpg            RGB patch (or .png with --image_ext png)
    SegmentationClassAug/<name>.png  uint8 label: 0 background, 1..K foreground classes, 255 ignore
    classes.json                     {"classes": ["background", <fg 1..K>], "ignore_index": 255, ...}
    cls_labels.npy                   structured array [("name", "U<n>"), ("labels", "u1", (K,))], never pickled

Image-level labels are multi-hot over the K foreground classes (background is not a label).
"""
from __future__ import annotations

import json
import logging
import os
import sys

import numpy as np

from misc.artifacts import IGNORE_INDEX, MASK_DIR, classes_json_path, cls_labels_path, mask_path
from misc.io import save_npy, save_text_lines

logger = logging.getLogger(__name__)

# --- name lists ---------------------------------------------------------------------------------------------------

def read_name_list(path: str) -> list[str]:
    """Read a list file: one name per line; blank lines and ``#`` comments are skipped.

    Raises FileNotFoundError (missing file) or ValueError (empty list, duplicate name), naming the file.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"name list not found: {path}")
    names: list[str] = []
    seen: set[str] = set()
    try:
        with open(path, encoding="utf-8-sig") as f:  # -sig: lists saved by Windows editors start with a BOM
            lines = f.read().split("\n")
    except UnicodeDecodeError as err:
        raise ValueError(f"name list {path} is not UTF-8 text: {_decode_position(path, err)}; re-save it as UTF-8 "
                         f"(e.g. `iconv -f latin1 -t utf-8`)") from err
    for lineno, line in enumerate(lines, start=1):
        name = line.strip()
        if not name or name.startswith("#"):
            continue
        if name in seen:
            raise ValueError(f"name list {path}: duplicate name {name!r} (line {lineno})")
        seen.add(name)
        names.append(name)
    if not names:
        raise ValueError(f"name list {path} is empty")
    return names


def _decode_position(path: str, err: UnicodeDecodeError) -> str:
    """'byte 0xe9 on line 3' for a text file that is not UTF-8."""
    with open(path, "rb") as f:
        data = f.read()
    line = data[:err.start].count(b"\n") + 1
    return f"byte 0x{data[err.start]:02x} on line {line}"


def require_data_root(voc12_root: str) -> None:
    """A missing data folder is reported as such (not as its first missing file)."""
    if not os.path.isdir(voc12_root):
        raise FileNotFoundError(f"data folder {voc12_root} does not exist (--voc12_root)")


def load_class_names(voc12_root: str) -> list[str]:
    """Class names of a prepared data set, from ``<voc12_root>/classes.json``: ["background", fg_1, ..., fg_K]."""
    path = classes_json_path(voc12_root)
    if not os.path.isfile(path):
        require_data_root(voc12_root)
        raise FileNotFoundError(f"class file not found: {path} (run `python -m data.prepare` first)")
    try:
        with open(path, encoding="utf-8") as f:
            classes = json.load(f)["classes"]
    except (ValueError, KeyError, TypeError) as err:  # ValueError: JSONDecodeError and UnicodeDecodeError
        raise ValueError(f"class file {path} is not {{'classes': [...], ...}}: {err}") from err
    if not isinstance(classes, list) or len(classes) < 2 or not all(isinstance(c, str) for c in classes):
        raise ValueError(f"class file {path}: 'classes' must list 'background' and at least one class, "
                         f"got {classes!r}")
    return classes


# --- cls_labels.npy -----------------------------------------------------------------------------------------------

def save_cls_labels(path: str, names: list[str], labels: np.ndarray) -> None:
    """Write image-level labels atomically as a structured array (no pickle).

    Args:
        names: N unique patch names.
        labels: (N, K) multi-hot, values 0/1.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.shape[0] != len(names) or labels.shape[1] < 1:
        raise ValueError(f"labels must be (N={len(names)}, K>=1), got shape {labels.shape}")
    if labels.size and not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be multi-hot 0/1")
    if len(set(names)) != len(names):
        raise ValueError("duplicate names in image-level labels")
    maxlen = max([len(n) for n in names] + [1])
    table = np.zeros(len(names), dtype=[("name", f"U{maxlen}"), ("labels", "u1", (labels.shape[1],))])
    table["name"] = names
    table["labels"] = labels.astype(np.uint8)
    save_npy(path, table)


def _num_fg_classes(voc12_root: str) -> int:
    """K, the number of image-level label columns a data set's classes.json implies (its "fg_classes" when it lists
    them, else the classes after "background")."""
    with open(classes_json_path(voc12_root), encoding="utf-8") as f:
        spec = json.load(f)
    fg = spec.get("fg_classes") if isinstance(spec, dict) else None
    return len(fg) if isinstance(fg, list) and fg else len(load_class_names(voc12_root)) - 1


def load_cls_labels(path: str) -> dict[str, np.ndarray]:
    """Read ``cls_labels.npy``: {name: (K,) float32 multi-hot}. Errors name the file."""
    if not os.path.isfile(path):
        require_data_root(os.path.dirname(path) or ".")
        raise FileNotFoundError(f"image-level label file not found: {path} (run write_numpy.py first)")
    try:
        table = np.load(path, allow_pickle=False)
    except ValueError as err:
        # IRN stored a pickled dict here; refuse it rather than unpickle arbitrary code
        raise ValueError(f"{path} is not a plain structured array (a pickled dict from an old version?): "
                         f"regenerate it with write_numpy.py ({err})") from err
    except Exception as err:  # truncated/corrupt header
        raise ValueError(f"corrupt image-level label file {path}: {err}") from err
    names = table.dtype.names if isinstance(table, np.ndarray) else None
    if (names != ("name", "labels") or table.ndim != 1 or table.dtype["name"].kind != "U"
            or table.dtype["labels"].base != np.uint8 or len(table.dtype["labels"].shape) != 1):
        raise ValueError(f"{path} has dtype {getattr(table, 'dtype', type(table))}, expected "
                         f"[('name', 'U<n>'), ('labels', 'u1', (K,))]")
    labels = table["labels"]  # (N, K) uint8
    stray = np.setdiff1d(np.unique(labels), [0, 1])
    if stray.size:
        row = int(np.nonzero(~np.isin(labels, (0, 1)).all(axis=1))[0][0])
        raise ValueError(f"{path}: image-level labels must be 0/1, but {table['name'][row]!r} has "
                         f"{labels[row].tolist()} (regenerate it with write_numpy.py)")
    classes_file = os.path.join(os.path.dirname(path), "classes.json")
    if os.path.isfile(classes_file):  # the label file of a prepared data set must match its classes
        try:
            num_fg = _num_fg_classes(os.path.dirname(path) or ".")
        except ValueError:
            num_fg = None  # a broken classes.json is reported by the pass that reads it
        if num_fg is not None and labels.shape[1] != num_fg:
            raise ValueError(f"{path} has {labels.shape[1]} classes per image but {classes_file} lists {num_fg} "
                             f"foreground classes: regenerate it with write_numpy.py")
    return {str(n): lab.astype(np.float32) for n, lab in zip(table["name"], labels)}


# --- deriving image-level labels from masks -----------------------------------------------------------------------

def image_level_labels(mask: np.ndarray, num_fg: int, pos_thres: float = 0.05, neg_thres: float = 0.0
                       ) -> np.ndarray | None:
    """Multi-hot image-level label of one patch from its index mask, or None when the patch must be dropped.

    share_k = pixels of class k / non-ignore pixels. Class k is present if share_k >= pos_thres, absent if
    share_k <= neg_thres; a share in between makes the patch ambiguous (None). A patch without valid pixels -> None.

    Args:
        mask: uint8 (H, W), 0 background, 1..num_fg foreground, 255 ignore.
    Returns:
        (num_fg,) uint8 0/1, or None.
    """
    if not 0.0 <= neg_thres < pos_thres <= 1.0:
        raise ValueError(f"need 0 <= neg_thres < pos_thres <= 1, got neg_thres={neg_thres}, pos_thres={pos_thres}")
    mask = np.asarray(mask)
    if mask.dtype != np.uint8:
        raise ValueError(f"mask must be uint8, got {mask.dtype}")
    counts = np.bincount(mask.ravel(), minlength=256)  # (256,)
    stray = np.flatnonzero(counts[num_fg + 1:IGNORE_INDEX])
    if stray.size:
        raise ValueError(f"mask holds label {stray[0] + num_fg + 1}, but there are only {num_fg} foreground classes")
    valid = mask.size - counts[IGNORE_INDEX]
    if valid == 0:
        return None
    shares = counts[1:num_fg + 1] / valid  # (K,)
    present = shares >= pos_thres
    absent = shares <= neg_thres
    if not np.all(present | absent):
        return None
    return present.astype(np.uint8)


def build_cls_labels(voc12_root: str, names: list[str] | None = None, *, cls_labels_file: str | None = None,
                     out_list: str | None = None, out_pos_list: str | None = None, pos_thres: float = 0.05,
                     neg_thres: float = 0.0, quiet: bool = False) -> dict:
    """Derive image-level labels for the patches of a prepared data set and write the label file and lists.

    Reads ``<voc12_root>/classes.json`` and ``SegmentationClassAug/<name>.png`` for each name (default: every PNG
    there). Writes ``cls_labels_file`` (default ``<voc12_root>/cls_labels.npy``; kept patches), ``out_list`` (kept patches, positives and negatives) and
    ``out_pos_list`` (patches with at least one foreground class present), each sorted by name.

    Returns a summary dict: kept, positive (per class), negative, dropped_ambiguous, dropped_no_valid, paths.
    """
    from misc.io import load_png
    from tqdm import tqdm

    class_names = load_class_names(voc12_root)
    fg_names = class_names[1:]
    num_fg = len(fg_names)
    if names is None:
        folder = os.path.join(voc12_root, MASK_DIR)
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"label folder not found: {folder}")
        names = sorted(f[:-4] for f in os.listdir(folder) if f.endswith(".png") and not f.startswith("."))
        if not names:
            raise ValueError(f"no PNG labels in {folder}")
    cls_labels_file = cls_labels_path(voc12_root, cls_labels_file)

    kept, kept_labels = [], []
    dropped_ambiguous, dropped_no_valid = [], []
    disable = quiet or not sys.stderr.isatty()
    for name in tqdm(names, desc="image-level labels", unit="patch", disable=disable):
        path = mask_path(voc12_root, name)
        mask = load_png(path)
        if mask.ndim != 2:
            raise ValueError(f"label {path} must be a one-channel index PNG, got shape {mask.shape}")
        try:
            label = image_level_labels(mask, num_fg, pos_thres=pos_thres, neg_thres=neg_thres)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from err
        if label is None:
            (dropped_no_valid if not (mask != IGNORE_INDEX).any() else dropped_ambiguous).append(name)
            continue
        kept.append(name)
        kept_labels.append(label)
    if not kept:
        raise ValueError(f"no patch kept out of {len(names)} (ambiguous: {len(dropped_ambiguous)}, "
                         f"no valid pixels: {len(dropped_no_valid)}): check --pos_thres/--neg_thres")

    labels = np.stack(kept_labels)  # (N, K)
    order = np.argsort(kept)
    kept = [kept[i] for i in order]
    labels = labels[order]
    positive = {n: int(labels[:, k].sum()) for k, n in enumerate(fg_names)}
    is_pos = labels.any(axis=1)
    negative = int((~is_pos).sum())

    save_cls_labels(cls_labels_file, kept, labels)
    if out_list:
        save_text_lines(out_list, kept)
    if out_pos_list:
        save_text_lines(out_pos_list, [n for n, p in zip(kept, is_pos) if p])

    logger.info("image-level labels: %d of %d patches kept; positive %s; negative (no fg class) %d; "
                "dropped ambiguous (%g < share < %g) %d; dropped without valid pixels %d",
                len(kept), len(names), positive, negative, neg_thres, pos_thres, len(dropped_ambiguous),
                len(dropped_no_valid))
    for n, count in positive.items():
        if count == 0:
            logger.warning("no patch is positive for class %r: training a classifier on it is meaningless", n)
    if negative == 0 and num_fg == 1:
        logger.warning("no negative patch (without the foreground class): the classifier sees no contrast")
    return {"num_patches": len(names), "kept": len(kept), "positive": positive, "negative": negative,
            "num_positive_patches": int(is_pos.sum()), "dropped_ambiguous": len(dropped_ambiguous),
            "dropped_no_valid": len(dropped_no_valid), "cls_labels_path": cls_labels_file,
            "out_list": out_list, "out_pos_list": out_pos_list, "class_names": fg_names}


def overlay_sample(names: list[str], cls_labels_file: str, count: int) -> set[str]:
    """The images a pass draws overlays for: ``count`` names spread evenly over the list, preferring images with a
    foreground class (a picture of a CAM needs a CAM). Every pass picks the same names, so the pictures line up.
    Without a readable ``cls_labels_file`` the whole list is sampled."""
    if count <= 0 or not names:
        return set()
    try:
        labels = load_cls_labels(cls_labels_file)
        positives = [n for n in names if n in labels and labels[n].max() > 0]
    except (OSError, ValueError):
        positives = []
    pool = positives if len(positives) >= count else list(names)
    step = len(pool) / min(count, len(pool))
    return {pool[int(i * step)] for i in range(min(count, len(pool)))}
