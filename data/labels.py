"""The prepared data set's layout, name lists, and the image-level label file ``cls_labels.npy``.

Layout under ``voc12_root`` (VOC-style, written by ``data.prepare``; file names are built in ``misc.artifacts``)::

    JPEGImages/<name>.jpg            RGB patch (or .png with --image_ext png)
    SegmentationClassAug/<name>.png  uint8 label: 0 background, 1..K foreground classes, 255 ignore
    classes.json                     {"classes": ["background", <fg 1..K>], "ignore_index": 255, ...}
    cls_labels.npy                   structured array [("name", "U<n>"), ("labels", "u1", (K,))], never pickled

Image-level labels are multi-hot over the K foreground classes (background is not a label). They come either from
the masks (:func:`build_cls_labels`) or from tags a person gave whole images (:func:`build_cls_labels_from_tags`):
a CSV (``image,classes`` with ``;``-separated class names, or ``image,<class 1>,<class 2>,...`` with 0/1 columns)
or a folder-per-class layout (UC Merced style) with a map from folder name to the classes its images contain.
Both write the same ``cls_labels.npy`` and lists.
"""
from __future__ import annotations

import csv
import json
import logging
import os
import re

import numpy as np

from misc.artifacts import IGNORE_INDEX, IMAGE_DIR, MASK_DIR, classes_json_path, cls_labels_path, mask_path
from misc.io import load_png, save_npy, save_text_lines
from misc.logutils import progress

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


def read_checked_list(path: str, voc12_root: str, *, cls_labels: dict | str | None = None,
                      skip_bad: bool = False) -> list[str]:
    """:func:`read_name_list`, then every name checked up front (not after the first images are done): each must
    have an image in ``<voc12_root>/JPEGImages`` and, when ``cls_labels`` (a dict or a ``cls_labels.npy`` path) is
    given, an image-level label. One error lists how many names fail and the first few (a typo in the list?).
    Under ``skip_bad`` (--skip_bad) the same line is a warning and the pass skips those items one by one."""
    names = read_name_list(path)
    problems = []
    folder = os.path.join(voc12_root, IMAGE_DIR)
    if os.path.isdir(folder):  # a missing folder is reported by the first image read, with its own hint
        stems = {os.path.splitext(f)[0] for f in os.listdir(folder)}
        missing = [n for n in names if n not in stems]
        if missing:
            problems.append(f"name list {path}: {len(missing)} of {len(names)} listed images not found in {folder}, "
                            f"e.g. {missing[:3]} (a typo in the list, or the wrong --voc12_root?)")
    if cls_labels is not None:
        labels = load_cls_labels(cls_labels) if isinstance(cls_labels, str) else cls_labels
        missing = [n for n in names if n not in labels]
        if missing:
            problems.append(f"name list {path}: {len(missing)} of {len(names)} names have no image-level label in "
                            f"{cls_labels if isinstance(cls_labels, str) else 'cls_labels.npy'}, e.g. {missing[:3]} "
                            f"(a typo in the list? else rerun write_numpy.py for this list)")
    if problems and not skip_bad:
        raise ValueError(problems[0])
    for problem in problems:
        logger.warning("%s; --skip_bad skips them", problem)
    return names


def ground_truth_available(voc12_root: str, names: list[str], pass_name: str) -> bool:
    """Whether an eval pass can score ``names``: True when every one has a mask in SegmentationClassAug; False, with
    one log line, when none has (a data set labelled by tags only: the pass skips); an error when only some have,
    or when ``voc12_root`` itself does not exist (a wrong path is not a data set without masks)."""
    require_data_root(voc12_root)
    have = [os.path.isfile(mask_path(voc12_root, n)) for n in names]
    if all(have):
        return True
    if not any(have):
        logger.info("%s: skipped: no ground truth (no masks in %s for the %d images; the data set has image-level "
                    "labels only)", pass_name, os.path.join(voc12_root, MASK_DIR), len(names))
        return False
    missing = [n for n, h in zip(names, have) if not h]
    raise ValueError(f"{pass_name}: {len(missing)} of {len(names)} images have no ground-truth mask in "
                     f"{os.path.join(voc12_root, MASK_DIR)}, e.g. {missing[:3]}: evaluate a list of the images "
                     f"with masks (--eval_list / --seg_val_list)")
def load_ground_truth(voc12_root: str, name: str, shape: tuple[int, int]) -> np.ndarray:
    """The uint8 class-index mask of ``name``; a size different from the prediction is an error naming the file."""
    path = mask_path(voc12_root, name)
    gt = load_png(path)
    if gt.ndim != 2:
        raise ValueError(f"{path}: expected a single-channel class-index mask (run data.prepare), got {gt.shape}")
    if gt.shape != tuple(shape):
        raise ValueError(f"{path}: mask is {gt.shape[1]}x{gt.shape[0]} but the prediction is {shape[1]}x{shape[0]}")
    return gt


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


BACKGROUND_MODES = ("auto", "threshold", "none")


def background_free(voc12_root: str, mode: str = "auto") -> bool:
    """Whether the passes label pixels without a background class (``--background``).

    ``threshold``: IRN's way, a constant background score competes with the CAMs (data with a background or clutter
    class). ``none``: background-free, every pixel takes the best-scoring present class (Dubai, DeepGlobe in
    land-cover mode). ``auto``: ``none`` when ``<voc12_root>/classes.json`` says ``"background_free": true`` (written
    by data.prepare when every non-ignore palette class is a foreground class), else ``threshold``.
    """
    if mode not in BACKGROUND_MODES:
        raise ValueError(f"--background {mode!r}: choose one of {BACKGROUND_MODES}")
    if mode != "auto":
        return mode == "none"
    path = classes_json_path(voc12_root)
    if not os.path.isfile(path):
        return False
    try:
        with open(path, encoding="utf-8") as f:
            return bool(json.load(f).get("background_free", False))
    except (json.JSONDecodeError, AttributeError) as err:
        raise ValueError(f"class file {path} is not a JSON object: {err}") from err


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

    class_names = load_class_names(voc12_root)
    fg_names = class_names[1:]
    num_fg = len(fg_names)
    if names is None:
        folder = os.path.join(voc12_root, MASK_DIR)
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"label folder not found: {folder} (a data set prepared without masks: label "
                                    f"it with --tags CSV or --class_folders)")
        names = sorted(f[:-4] for f in os.listdir(folder) if f.endswith(".png") and not f.startswith("."))
        if not names:
            raise ValueError(f"no PNG labels in {folder}")
    cls_labels_file = cls_labels_path(voc12_root, cls_labels_file)

    kept, kept_labels = [], []
    dropped_ambiguous, dropped_no_valid = [], []
    for name in progress(names, desc="image-level labels", quiet=quiet):
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
    summary = write_cls_labels(cls_labels_file, kept, np.stack(kept_labels), fg_names, out_list=out_list,
                               out_pos_list=out_pos_list)
    logger.info("image-level labels: %d of %d patches kept; positive %s; negative (no fg class) %d; "
                "dropped ambiguous (%g < share < %g) %d; dropped without valid pixels %d",
                len(kept), len(names), summary["positive"], summary["negative"], neg_thres, pos_thres,
                len(dropped_ambiguous), len(dropped_no_valid))
    _warn_degenerate(summary, num_fg)
    summary.update(num_patches=len(names), dropped_ambiguous=len(dropped_ambiguous),
                   dropped_no_valid=len(dropped_no_valid))
    return summary


def write_cls_labels(cls_labels_file: str, names: list[str], labels: np.ndarray, fg_names: list[str], *,
                     out_list: str | None = None, out_pos_list: str | None = None) -> dict:
    """Write ``cls_labels.npy`` and the lists (all kept names; names with a foreground class), sorted by name.

    Args:
        labels: (N, K) 0/1 multi-hot over ``fg_names``.
    Returns a summary dict: kept, positive (per class), negative, num_positive_patches, paths, class_names.
    """
    labels = np.asarray(labels, np.uint8)  # (N, K)
    order = np.argsort(names)
    kept = [names[i] for i in order]
    labels = labels[order]
    positive = {n: int(labels[:, k].sum()) for k, n in enumerate(fg_names)}
    is_pos = labels.any(axis=1)
    negative = int((~is_pos).sum())
    save_cls_labels(cls_labels_file, kept, labels)
    if out_list:
        save_text_lines(out_list, kept)
    if out_pos_list:
        save_text_lines(out_pos_list, [n for n, p in zip(kept, is_pos) if p])
    return {"kept": len(kept), "positive": positive, "negative": negative,
            "num_positive_patches": int(is_pos.sum()), "cls_labels_path": cls_labels_file,
            "out_list": out_list, "out_pos_list": out_pos_list, "class_names": list(fg_names)}


def _warn_degenerate(summary: dict, num_fg: int) -> None:
    for n, count in summary["positive"].items():
        if count == 0:
            logger.warning("no patch is positive for class %r: training a classifier on it is meaningless", n)
    if summary["negative"] == 0 and num_fg == 1:
        logger.warning("no negative patch (without the foreground class): the classifier sees no contrast")


# --- image-level labels from tags (no masks) ----------------------------------------------------------------------

_TAG_EXTS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
_TRUE_TAGS, _FALSE_TAGS = {"1", "true", "yes", "y", "x"}, {"0", "false", "no", "n", ""}


def _normalise_id(text: str) -> list[str]:
    """'./Buildings\\images\\x.TIF ' -> ['Buildings/x', 'x']: the ways a CSV's image may be keyed, longest first
    (without extension, ./ prefix or an ``images`` folder, as data.prepare keys its sources)."""
    text = text.strip().replace("\\", "/")
    stem, ext = os.path.splitext(text)
    text = stem if ext.lower() in _TAG_EXTS else text
    parts = [p for p in text.split("/") if p not in ("", ".") and p.lower() != "images"]
    return ["/".join(parts[i:]) for i in range(len(parts))]


def dataset_image_names(voc12_root: str) -> list[str]:
    """Names of the images of a prepared data set (``JPEGImages/<name>.<ext>``), sorted."""
    folder = os.path.join(voc12_root, IMAGE_DIR)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"image folder not found: {folder} (run `python -m data.prepare` first)")
    names = sorted({os.path.splitext(f)[0] for f in os.listdir(folder)
                    if not f.startswith(".") and f.lower().endswith(_TAG_EXTS)})
    if not names:
        raise ValueError(f"no images in {folder}")
    return names


def dataset_sources(voc12_root: str) -> dict[str, str]:
    """{name: source key} recorded by data.prepare in classes.json (the key is the image's relative path without
    extension, e.g. ``"Buildings/buildings07"``); empty for data sets prepared before it was recorded."""
    try:
        with open(classes_json_path(voc12_root), encoding="utf-8") as f:
            sources = json.load(f).get("sources") or {}
    except (OSError, ValueError, AttributeError):
        return {}
    return {str(k): str(v) for k, v in sources.items()} if isinstance(sources, dict) else {}


def _id_index(names: list[str], sources: dict[str, str]) -> dict[str, set[str]]:
    """Every identifier a CSV may use for an image -> the data-set names it denotes: the name, the source key, the
    key's file stem (unique or not; an ambiguous stem is an error when used)."""
    index: dict[str, set[str]] = {}
    for name in names:
        key = sources.get(name, name)
        for ident in {name, key, key.split("/")[-1], name.split("__")[-1]}:
            index.setdefault(ident, set()).add(name)
    return index


def _class_index(fg_names: list[str]) -> dict[str, int]:
    return {n.lower(): k for k, n in enumerate(fg_names)}


def read_tags_csv(path: str, fg_names: list[str]) -> list[tuple[int, str, np.ndarray]]:
    """Rows of a tag CSV as (line number, image identifier, (K,) uint8 multi-hot).

    Two forms (header required; ``,`` or ``;``/tab delimited files are detected):
      ``image,classes``: ``x.tif,building;road`` (``;``- or ``|``-separated names, empty = no foreground class);
      ``image,building,road``: one 0/1 column per class (every class of classes.json must have a column).
    Class names are matched without case; ``background`` is not a label and is ignored. Errors name file and line.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"tag file not found: {path}")
    classes = _class_index(fg_names)
    with open(path, encoding="utf-8-sig", newline="") as f:
        text = f.read()
    try:
        dialect = csv.Sniffer().sniff(text.split("\n", 1)[0], delimiters=",\t")
    except csv.Error:
        dialect = csv.excel
    rows = list(csv.reader(text.splitlines(), dialect))
    rows = [(i + 1, r) for i, r in enumerate(rows) if any(c.strip() for c in r) and not r[0].startswith("#")]
    if not rows:
        raise ValueError(f"tag file {path} is empty")
    _, header = rows[0]
    header = [h.strip().lower() for h in header]
    if len(header) < 2:
        raise ValueError(f"tag file {path}: header {header} needs an image column and a 'classes' column (or one "
                         f"0/1 column per class: {', '.join(fg_names)})")
    out = []
    if header[1] in ("classes", "labels", "tags") and len(header) == 2:
        for lineno, row in rows[1:]:
            if len(row) > 2:
                raise ValueError(f"{path}:{lineno}: {len(row)} fields; separate class names with ';' not ','")
            label = np.zeros(len(fg_names), np.uint8)
            for tag in re.split(r"[;|]", row[1] if len(row) > 1 else ""):
                tag = tag.strip().lower()
                if not tag or tag in ("background", "none"):
                    continue
                if tag not in classes:
                    raise ValueError(f"{path}:{lineno}: unknown class {tag!r} for image {row[0]!r}; the data set's "
                                     f"classes are {', '.join(fg_names)}")
                label[classes[tag]] = 1
            out.append((lineno, row[0], label))
        return out
    columns = header[1:]
    unknown = [c for c in columns if c not in classes and c != "background"]
    missing = [n for n in fg_names if n.lower() not in columns]
    if unknown or missing:
        raise ValueError(f"tag file {path}: class columns {columns} do not match the data set's classes {fg_names}"
                         + (f" (unknown: {unknown})" if unknown else "") + (f" (missing: {missing})" if missing else "")
                         + "; for class names in one column use the header 'image,classes'")
    for lineno, row in rows[1:]:
        if len(row) != len(header):
            raise ValueError(f"{path}:{lineno}: {len(row)} fields, the header has {len(header)}")
        label = np.zeros(len(fg_names), np.uint8)
        for column, value in zip(columns, row[1:]):
            value = value.strip().lower()
            if value not in _TRUE_TAGS | _FALSE_TAGS:
                raise ValueError(f"{path}:{lineno}: column {column!r} is {value!r}, expected 0 or 1")
            if column in classes and value in _TRUE_TAGS:
                label[classes[column]] = 1
        out.append((lineno, row[0], label))
    return out


def parse_class_folders(specs: list[str] | str, fg_names: list[str]) -> dict[str, np.ndarray]:
    """Folder name (lower case) -> (K,) uint8 multi-hot, from ``folder:class1;class2`` pairs (comma- or
    space-separated; ``forest:`` = no foreground class) and/or JSON files ``{"Buildings": ["building"], ...}``."""
    classes = _class_index(fg_names)
    mapping: dict[str, list[str]] = {}
    for spec in [specs] if isinstance(specs, str) else specs:
        if spec.lower().endswith(".json"):
            try:
                with open(spec, encoding="utf-8-sig") as f:
                    loaded = json.load(f)
            except (OSError, ValueError) as err:
                raise ValueError(f"class-folder map {spec} is not a JSON object: {err}") from err
            if not isinstance(loaded, dict):
                raise ValueError(f"class-folder map {spec} must be {{folder: [class, ...]}}")
            for folder, names in loaded.items():
                mapping[str(folder)] = [names] if isinstance(names, str) else list(names or [])
            continue
        for pair in spec.split(","):
            if not pair.strip():
                continue
            if ":" not in pair:
                raise ValueError(f"--class_folders {pair!r}: expected folder:class1;class2 (or folder: for none)")
            folder, names = pair.rsplit(":", 1)
            mapping[folder.strip()] = [n for n in re.split(r"[;|]", names) if n.strip()]
    if not mapping:
        raise ValueError("--class_folders: no folder given")
    out: dict[str, np.ndarray] = {}
    for folder, names in mapping.items():
        label = np.zeros(len(fg_names), np.uint8)
        for n in names:
            n = str(n).strip().lower()
            if n in ("background", "none"):
                continue
            if n not in classes:
                raise ValueError(f"--class_folders: folder {folder!r} names unknown class {n!r}; the data set's "
                                 f"classes are {', '.join(fg_names)}")
            label[classes[n]] = 1
        out[folder.lower()] = label
    return out


def _folders_of(name: str, sources: dict[str, str]) -> list[str]:
    """The source folders of an image, outermost first (from classes.json's sources, else from the name)."""
    key = sources.get(name)
    return key.split("/")[:-1] if key else name.split("__")[:-1]


def build_cls_labels_from_tags(voc12_root: str, names: list[str] | None = None, *, tags_csv: str | None = None,
                               class_folders: list[str] | None = None, cls_labels_file: str | None = None,
                               out_list: str | None = None, out_pos_list: str | None = None) -> dict:
    """Image-level labels from tags a person gave whole images; writes the same files as :func:`build_cls_labels`.

    Args:
        names: the images to label (default: every image in ``<voc12_root>/JPEGImages``). Every one needs a tag.
        tags_csv: see :func:`read_tags_csv`. A row naming no image of the data set is an error (a typo), as is an
            identifier that matches several images or an image tagged twice differently.
        class_folders: see :func:`parse_class_folders`; an image's label is that of its innermost mapped folder.
    Every problem of the whole list is found before anything is written.
    """
    if (tags_csv is None) == (class_folders is None):
        raise ValueError("give exactly one of --tags (a CSV) and --class_folders")
    fg_names = load_class_names(voc12_root)[1:]
    all_names = dataset_image_names(voc12_root)
    names = list(all_names if names is None else names)
    unknown = sorted(set(names) - set(all_names))
    if unknown:
        raise ValueError(f"{len(unknown)} listed names have no image in {os.path.join(voc12_root, IMAGE_DIR)}, "
                         f"e.g. {unknown[:3]} (a typo in the list?)")
    sources = dataset_sources(voc12_root)
    labels: dict[str, np.ndarray] = {}
    if tags_csv is not None:
        index = _id_index(all_names, sources)
        where: dict[str, int] = {}
        problems = []
        for lineno, ident, label in read_tags_csv(tags_csv, fg_names):
            matches = next((index[k] for k in _normalise_id(ident) if k in index), set())
            if not matches:
                problems.append(f"line {lineno}: no image {ident!r}")
                continue
            if len(matches) > 1:
                problems.append(f"line {lineno}: {ident!r} matches {len(matches)} images, e.g. "
                                f"{sorted(matches)[:2]}; give the relative path")
                continue
            (name,) = matches
            if name in labels and not np.array_equal(labels[name], label):
                problems.append(f"line {lineno}: {ident!r} was tagged differently on line {where[name]}")
            labels[name], where[name] = label, lineno
        if problems:
            raise ValueError(f"tag file {tags_csv}: {len(problems)} problem(s): " + "; ".join(problems[:5])
                             + (" ..." if len(problems) > 5 else ""))
        untagged = [n for n in names if n not in labels]
        if untagged:
            raise ValueError(f"tag file {tags_csv} has no row for {len(untagged)} of {len(names)} images, e.g. "
                             f"{untagged[:3]}; tag them or pass a --train_list without them")
    else:
        folder_labels = parse_class_folders(class_folders, fg_names)
        unmapped: dict[str, int] = {}
        for name in names:
            folders = [f for f in _folders_of(name, sources) if f.lower() in folder_labels]
            if folders:
                labels[name] = folder_labels[folders[-1].lower()]
            else:
                folder = "/".join(_folders_of(name, sources)) or "(top level)"
                unmapped[folder] = unmapped.get(folder, 0) + 1
        if unmapped:
            listing = ", ".join(f"{f!r} ({n} images)" for f, n in sorted(unmapped.items())[:5])
            raise ValueError(f"--class_folders maps no folder of {sum(unmapped.values())} images: {listing}; add "
                             f"e.g. 'FOLDER:class' (or 'FOLDER:' for images without any class)")
    summary = write_cls_labels(cls_labels_path(voc12_root, cls_labels_file), names,
                               np.stack([labels[n] for n in names]), fg_names, out_list=out_list,
                               out_pos_list=out_pos_list)
    logger.info("image-level labels from %s: %d images; positive %s; negative (no fg class) %d",
                tags_csv or "class folders", len(names), summary["positive"], summary["negative"])
    _warn_degenerate(summary, len(fg_names))
    summary.update(num_patches=len(names), dropped_ambiguous=0, dropped_no_valid=0)
    return summary


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
