"""Mask palettes: how the pixels of a ground-truth mask map to classes, and decoding masks to label indices.

A mask is decoded to the label convention every later pass uses: uint8 (H, W), 0 = background (any known class that
is not foreground), 1..K = the foreground classes in the order asked for, 255 = ignore (ignore classes such as
"unlabeled" AND every pixel whose colour/value the palette does not know -- never guess a class).

Built-in palettes (``PALETTES``):
- ``dubai``: the Dubai aerial data set, with the colours actually used in its masks (its shipped classes.json is wrong).
- ``isprs``: ISPRS Potsdam / Vaihingen colour labels (clutter is a real class there, not ignore; in land-cover mode
  ``all`` it is the background, label 0).
- ``binary``: building masks stored as 0 / 255 (or 0 / 1), one channel or three equal channels.
- ``index``: one-channel class-index masks, value v = class v, 255 = ignore. Names default to ``class_<v>``; give
  real names as ``index:background,building,...``.
A JSON file path is also accepted:
``{"classes": [{"name": "building", "color": "#3C1098"}, ...], "ignore": ["unlabeled"]}``
("title" may replace "name", as in the Dubai classes.json; colours as "#RRGGBB" or [r, g, b]; classes without
colours make an index palette where class i has value i).
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field

import numpy as np

from misc.artifacts import IGNORE_INDEX  # noqa: F401 (re-exported: the label convention of decoded masks)
# class names treated as ignore by default in JSON palettes that do not list "ignore" themselves
DEFAULT_IGNORE_NAMES = ("unlabeled", "unlabelled", "ignore", "void", "nodata", "no_data")


@dataclass
class Palette:
    """How mask pixels map to classes.

    ``colors[i]`` is the RGB colour of ``class_names[i]``; ``colors is None`` means a one-channel mask whose pixel
    values are ``values[i]`` for class i (default: value i). ``open_index`` marks the bare ``index`` palette, which
    accepts any value 0..254 as ``class_<v>``.
    """

    name: str
    class_names: list[str]
    colors: list[tuple[int, int, int]] | None
    ignore_names: list[str] = field(default_factory=list)
    values: list[tuple[int, ...]] | None = None
    open_index: bool = False
    # classes that land-cover mode (fg_classes "all") keeps as background (label 0) instead of a foreground class
    background_names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"palette {self.name!r}: duplicate class names in {self.class_names}")
        unknown = [n for n in self.ignore_names + self.background_names if n not in self.class_names]
        if unknown:
            raise ValueError(f"palette {self.name!r}: ignore/background classes {unknown} not among "
                             f"{self.class_names}")
        if self.colors is not None:
            if len(self.colors) != len(self.class_names):
                raise ValueError(f"palette {self.name!r}: {len(self.colors)} colours for "
                                 f"{len(self.class_names)} classes")
            if len(set(self.colors)) != len(self.colors):
                raise ValueError(f"palette {self.name!r}: two classes share a colour: {self.colors}")
        elif not self.open_index:
            if self.values is None:
                self.values = [(i,) for i in range(len(self.class_names))]
            flat = [v for vs in self.values for v in vs]
            if len(set(flat)) != len(flat) or any(not 0 <= v <= 255 for v in flat):
                raise ValueError(f"palette {self.name!r}: pixel values must be distinct and in 0..255: {self.values}")

    @property
    def valid_names(self) -> list[str]:
        """Class names that are not ignore, in palette order."""
        return [n for n in self.class_names if n not in self.ignore_names]

    @property
    def land_cover_names(self) -> list[str]:
        """The foreground classes of land-cover mode (fg_classes "all"): every valid class except the background
        ones (``background_names``, or a class literally named "background")."""
        return [n for n in self.valid_names if n not in self.background_names and n != "background"]


def _builtin_palettes() -> dict[str, Palette]:
    return {
        "dubai": Palette(
            name="dubai",
            class_names=["building", "land", "road", "vegetation", "water", "unlabeled"],
            colors=[(60, 16, 152), (132, 41, 246), (110, 193, 228), (254, 221, 58), (226, 169, 41),
                    (155, 155, 155)],
            ignore_names=["unlabeled"]),
        "isprs": Palette(
            name="isprs",
            class_names=["impervious_surfaces", "building", "low_vegetation", "tree", "car", "clutter"],
            colors=[(255, 255, 255), (0, 0, 255), (0, 255, 255), (0, 255, 0), (255, 255, 0), (255, 0, 0)],
            background_names=["clutter"]),
        # 255 means building here (not ignore): binary masks are usually saved as 0/255 for viewing
        "binary": Palette(name="binary", class_names=["background", "building"], colors=None,
                          values=[(0,), (1, 255)]),
        "index": Palette(name="index", class_names=[], colors=None, open_index=True),
    }


PALETTES: dict[str, Palette] = _builtin_palettes()


def normalize_class_name(name: str) -> str:
    """'Land (unpaved area)' -> 'land', 'Low vegetation' -> 'low_vegetation' (lower-case snake, no parentheses)."""
    name = re.sub(r"\(.*?\)", " ", str(name))
    name = re.sub(r"[^0-9a-zA-Z]+", "_", name.strip().lower()).strip("_")
    if not name:
        raise ValueError(f"class name {name!r} is empty after normalisation")
    return name


def _parse_color(color, where: str) -> tuple[int, int, int]:
    if isinstance(color, str):
        m = re.fullmatch(r"#?([0-9a-fA-F]{6})", color.strip())
        if not m:
            raise ValueError(f"{where}: colour {color!r} is not '#RRGGBB'")
        h = m.group(1)
        return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)
    if isinstance(color, (list, tuple)) and len(color) == 3 and all(
            isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in color):
        return int(color[0]), int(color[1]), int(color[2])
    raise ValueError(f"{where}: colour {color!r} is neither '#RRGGBB' nor [r, g, b] with 0..255 integers")


def _palette_from_json(path: str) -> Palette:
    try:
        with open(path, encoding="utf-8") as f:
            spec = json.load(f)
    except UnicodeDecodeError as err:
        raise ValueError(f"palette file {path} is not UTF-8 text (byte 0x{err.object[err.start]:02x}): re-save it "
                         f"as UTF-8") from err
    except json.JSONDecodeError as err:
        raise ValueError(f"palette file {path} is not valid JSON: {err}") from err
    classes = spec.get("classes") if isinstance(spec, dict) else None
    if not isinstance(classes, list) or not classes:
        raise ValueError(f"palette file {path}: expected {{'classes': [{{'name': ..., 'color': ...}}, ...]}}")
    names, colors = [], []
    for i, entry in enumerate(classes):
        where = f"palette file {path}, class #{i}"
        if not isinstance(entry, dict) or not ("name" in entry or "title" in entry):
            raise ValueError(f"{where}: each class needs a 'name' (or 'title')")
        names.append(normalize_class_name(entry.get("name", entry.get("title"))))
        colors.append(_parse_color(entry["color"], where) if entry.get("color") is not None else None)
    if any(c is None for c in colors) and any(c is not None for c in colors):
        raise ValueError(f"palette file {path}: give a colour for every class or for none (index masks)")
    if "ignore" in spec:
        ignore = [normalize_class_name(n) for n in spec["ignore"]]
    else:
        ignore = [n for n in names if n in DEFAULT_IGNORE_NAMES]
    label = os.path.basename(path)
    try:
        return Palette(name=label, class_names=names, colors=None if colors[0] is None else colors,
                       ignore_names=ignore)
    except ValueError as err:
        raise ValueError(f"palette file {path}: {err}") from err


def load_palette(name_or_path: str | Palette, class_names: list[str] | None = None) -> Palette:
    """Return a built-in palette by name, ``index:<name0>,<name1>,...``, or a palette read from a JSON file.

    ``class_names`` names the classes of the ``index`` palette (value i = class_names[i]).
    """
    if isinstance(name_or_path, Palette):
        return name_or_path
    spec = str(name_or_path)
    if spec.startswith("index:"):
        class_names = [c for c in spec[len("index:"):].split(",") if c.strip()]
        spec = "index"
    if spec in PALETTES:
        if spec == "index" and class_names:
            names = [normalize_class_name(c) for c in class_names]
            return Palette(name="index", class_names=names, colors=None,
                           ignore_names=[n for n in names if n in DEFAULT_IGNORE_NAMES])
        return _builtin_palettes()[spec]  # a fresh copy: callers may not mutate the shared table
    if os.path.isfile(spec):
        return _palette_from_json(spec)
    raise ValueError(f"unknown palette {spec!r}: use one of {sorted(PALETTES)}, 'index:<name0>,<name1>,...' "
                     f"or the path of a JSON palette file")


def resolve_fg_classes(palette: Palette, fg_classes: list[str] | None) -> list[str]:
    """The foreground class names, in order. ``None`` or ``["all"]``: every non-ignore, non-background class
    (land-cover mode; ISPRS keeps clutter as background)."""
    if fg_classes is None or [c.strip().lower() for c in fg_classes] == ["all"]:
        if palette.open_index:
            raise ValueError("palette 'index' has no class names, so fg_classes 'all' is undefined: name the "
                             "classes ('index:background,building,...') or list the foreground classes")
        return list(palette.land_cover_names)
    if not fg_classes:
        raise ValueError("fg_classes is empty: name at least one foreground class (or 'all')")
    names = [normalize_class_name(c) for c in fg_classes]
    if len(set(names)) != len(names):
        raise ValueError(f"fg_classes lists a class twice: {fg_classes}")
    for n in names:
        if palette.open_index:
            if not re.fullmatch(r"class_(\d+)", n) or int(n[6:]) >= IGNORE_INDEX:
                raise ValueError(f"foreground class {n!r} is not in palette 'index': its classes are "
                                 f"class_0..class_254 (or name them with 'index:a,b,...')")
        elif n not in palette.class_names:
            raise ValueError(f"foreground class {n!r} is not in palette {palette.name!r}: "
                             f"its classes are {palette.class_names}")
        elif n in palette.ignore_names:
            raise ValueError(f"foreground class {n!r} is an ignore class of palette {palette.name!r}")
    return names


def is_background_free(palette: Palette, fg: list[str]) -> bool:
    """True when no valid pixel can be background: every non-ignore class of the palette is a foreground class
    (Dubai or DeepGlobe in land-cover mode). Open index palettes are never background-free (unnamed values are
    background)."""
    return not palette.open_index and set(palette.valid_names) <= set(fg)


def _class_outputs(palette: Palette, fg: list[str]) -> tuple[list[str], np.ndarray]:
    """Per palette class, the output label: fg index 1..K, 255 for ignore classes, else 0."""
    out = []
    for n in palette.class_names:
        if n in palette.ignore_names:
            out.append(IGNORE_INDEX)
        elif n in fg:
            out.append(fg.index(n) + 1)
        else:
            out.append(0)
    return palette.class_names, np.asarray(out, dtype=np.uint8)


def _as_rgb(mask: np.ndarray) -> np.ndarray:
    if mask.ndim == 2:
        return np.repeat(mask[..., None], 3, axis=2)  # a grey mask: value v is colour (v, v, v)
    if mask.ndim == 3 and mask.shape[2] in (3, 4):
        return mask[..., :3]  # alpha carries no class
    raise ValueError(f"colour mask must be (H, W, 3) RGB, got shape {mask.shape}")


def decode_mask(mask: np.ndarray, palette: Palette | str, fg_classes: list[str] | None
                ) -> tuple[np.ndarray, int]:
    """Decode a ground-truth mask to a uint8 (H, W) label and count the pixels of unknown colour/value.

    Args:
        mask: uint8 (H, W, 3) RGB for colour palettes (a 4th alpha channel is dropped); (H, W) or (H, W, 3) with
            equal channels for index/binary palettes.
        palette: a :class:`Palette` or anything :func:`load_palette` accepts.
        fg_classes: foreground class names; ``None`` / ``["all"]`` = every non-ignore class.

    Returns:
        (label, n_unknown): label uint8 (H, W) with 0 = background, 1..K = fg_classes in order, 255 = ignore
        (ignore classes and unknown colours); n_unknown = number of pixels whose colour/value the palette lacks.
    """
    palette = load_palette(palette)
    fg = resolve_fg_classes(palette, list(fg_classes) if fg_classes is not None else None)
    mask = np.asarray(mask)
    if mask.dtype != np.uint8:
        if mask.size and (mask.min() < 0 or mask.max() > 255 or not np.issubdtype(mask.dtype, np.integer)):
            raise ValueError(f"mask must be uint8-valued, got dtype {mask.dtype} with range "
                             f"{mask.min()}..{mask.max()}")
        mask = mask.astype(np.uint8)

    if palette.colors is not None:
        rgb = _as_rgb(mask).astype(np.int32)
        packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]  # (H, W) one int per colour
        _, outputs = _class_outputs(palette, fg)
        keys = np.asarray([(r << 16) | (g << 8) | b for r, g, b in palette.colors], dtype=np.int32)
        order = np.argsort(keys)
        keys, outputs = keys[order], outputs[order]
        # O(HW log C) lookup: position of each pixel's colour among the sorted palette colours
        idx = np.minimum(np.searchsorted(keys, packed), len(keys) - 1)
        known = keys[idx] == packed
        label = np.where(known, outputs[idx], IGNORE_INDEX).astype(np.uint8)
        return label, int(known.size - np.count_nonzero(known))

    # one-channel palettes: a 256-entry lookup table
    if mask.ndim == 3:
        if mask.shape[2] not in (3, 4):
            raise ValueError(f"index mask must be (H, W) or (H, W, 3), got shape {mask.shape}")
        gray = mask[..., 0]
        consistent = (mask[..., 1] == gray) & (mask[..., 2] == gray)  # a coloured pixel is unknown
    elif mask.ndim == 2:
        gray, consistent = mask, None
    else:
        raise ValueError(f"index mask must be (H, W) or (H, W, 3), got shape {mask.shape}")
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    known_lut = np.zeros(256, dtype=bool)
    known_lut[IGNORE_INDEX] = True  # 255 is the ignore value of index masks (binary overrides it below)
    if palette.open_index:
        known_lut[:] = True
        lut[:IGNORE_INDEX] = 0
        for k, n in enumerate(fg, start=1):
            lut[int(n[6:])] = k
    else:
        _, outputs = _class_outputs(palette, fg)
        for values, out in zip(palette.values, outputs):
            lut[list(values)] = out
            known_lut[list(values)] = True
    label = lut[gray]
    known = known_lut[gray]
    if consistent is not None:
        known &= consistent
        label = np.where(consistent, label, IGNORE_INDEX).astype(np.uint8)
    return label, int(known.size - np.count_nonzero(known))


def _hex(rgb) -> str:
    return "#%02X%02X%02X" % tuple(int(c) for c in rgb)


def describe_unknown(mask: np.ndarray, palette: Palette | str, top: int = 5) -> str:
    """Why a mask's pixels are unknown to ``palette``, for an error message: the kind of mask given, the palette's
    colours (or values) and the mask's most common colours (or values) with their shares.

    mask: uint8 (H, W) or (H, W, 3|4), as :func:`data.raster_io.read_mask` returns it.
    """
    palette = load_palette(palette)
    mask = np.asarray(mask)
    total = max(mask.shape[0] * mask.shape[1], 1) if mask.ndim >= 2 else max(mask.size, 1)
    one_band = mask.ndim == 2 or (mask.ndim == 3 and mask.shape[2] >= 3
                                   and (mask[..., 0] == mask[..., 1]).all() and (mask[..., 1] == mask[..., 2]).all())
    if palette.colors is not None:
        known = ", ".join(f"{n} {_hex(c)}" for n, c in zip(palette.class_names, palette.colors))
        rgb = _as_rgb(mask[..., 0] if one_band and mask.ndim == 3 else mask).reshape(-1, 3).astype(np.int64)
        packed = (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]
        values, counts = np.unique(packed, return_counts=True)
        order = np.argsort(-counts)[:top]
        common = ", ".join(f"{_hex(((v >> 16) & 255, (v >> 8) & 255, v & 255))} {100.0 * c / total:.1f} %"
                           for v, c in zip(values[order], counts[order]))
        kind = ("it is a one-band (grey/index) mask, but palette %r is a colour palette (try --palette index or "
                "binary); " % palette.name) if one_band else ""
        return f"{kind}palette {palette.name!r} colours: {known}; the mask's most common colours: {common}"
    gray = mask if mask.ndim == 2 else mask[..., 0]
    values, counts = np.unique(gray, return_counts=True)
    order = np.argsort(-counts)[:top]
    common = ", ".join(f"{int(v)} {100.0 * c / total:.1f} %" for v, c in zip(values[order], counts[order]))
    if palette.open_index:
        known = "0..254 (255 = ignore)"
    else:
        known = ", ".join(f"{n} {'/'.join(str(v) for v in vs)}" for n, vs in zip(palette.class_names, palette.values))
    kind = (f"it is a colour mask, but palette {palette.name!r} reads one-band values (try a colour palette such as "
            f"dubai or isprs, or a JSON palette); ") if not one_band else ""
    return f"{kind}palette {palette.name!r} values: {known}; the mask's most common values: {common}"
