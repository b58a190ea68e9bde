"""Procedural aerial-like scenes with pixel labels: the toolkit's embedded default data set.

Each scene looks like a top-down image at about 0.5 m per pixel over a dry coastal city: sand with low-frequency
colour variation and grain, a road network (asphalt, sidewalks, lane markings, cars), buildings in blocks along the
roads (rectangles and L-shapes, rotated, roofs of varied colour with a ridge or AC units, a darker edge, a shadow
cast to one side per scene), trees and lawns/parks, ponds / coast, and some areas with no building at all (desert,
water, park) so that image-level labels have negatives. Sensor effects (colour shift, blur, noise, JPEG on save)
finish the image.

``write_dataset`` writes scenes in the on-disk layout and colour palette of the real Dubai data set::

    <out>/Tile N/images/image_part_00K.jpg   RGB JPEG, quality 95
    <out>/Tile N/masks/image_part_00K.png    RGB colour PNG, Dubai colours (data.palettes "dubai")

and leaves a few black (0, 0, 0) stray pixels in some masks, as the real masks have, to exercise the loaders'
unknown-colour handling. Labels follow annotators' habits: cars are road, shadows take the class of the ground
they fall on.

CLI: ``python -m data.synthetic --out Dataset/synthetic_raw --num_tiles 2 --scenes_per_tile 4 --size 512 --seed 0``
"""
from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass, field

import cv2
import numpy as np

logger = logging.getLogger(__name__)

# Class indices of the label returned by generate_scene, in the order of the Dubai palette.
CLASS_NAMES = ("building", "land", "road", "vegetation", "water", "unlabeled")
BUILDING, LAND, ROAD, VEGETATION, WATER, UNLABELED = range(6)
STRAY_COLOR = (0, 0, 0)  # not a Dubai colour: loaders must map it to ignore

# Surface colours (RGB, 0..255) the scenes draw from; pale, as Dubai imagery is.
_SAND_COLORS = np.array([[214, 210, 202], [218, 206, 184], [206, 196, 178], [226, 222, 214]], np.float32)
_SAND_TINT = np.array([[202, 186, 158], [184, 182, 178], [222, 210, 186]], np.float32)
_ROOF_COLORS = np.array([
    [205, 205, 202],  # light grey concrete
    [226, 210, 178],  # beige
    [242, 240, 234],  # white
    [176, 92, 64],    # terracotta
    [86, 86, 92],     # dark
    [206, 186, 150],  # sand
    [150, 160, 172],  # blue-grey
], np.float32)
_ROOF_WEIGHTS = np.array([0.24, 0.2, 0.22, 0.08, 0.08, 0.12, 0.06])
_CAR_COLORS = np.array([[235, 235, 235], [190, 192, 196], [40, 40, 44], [160, 30, 30], [40, 60, 130],
                        [120, 120, 125], [200, 190, 160]], np.float32)
_CAR_WEIGHTS = np.array([0.35, 0.2, 0.15, 0.07, 0.08, 0.1, 0.05])
_ASPHALT = np.array([[92, 92, 98], [76, 76, 80], [110, 108, 108]], np.float32)
_SIDEWALK = np.array([[190, 186, 180], [204, 196, 182], [170, 170, 172]], np.float32)
_GRASS = np.array([[86, 118, 60], [106, 128, 72], [70, 102, 54], [122, 134, 88]], np.float32)
_TREE = np.array([[44, 78, 40], [58, 92, 44], [36, 64, 38], [72, 96, 52]], np.float32)
_WATER_DEEP = np.array([[22, 52, 62], [28, 70, 92], [18, 40, 44], [34, 88, 110]], np.float32)
_WATER_SHALLOW = np.array([[60, 128, 132], [70, 140, 156], [52, 104, 100], [84, 156, 170]], np.float32)


def dubai_colors() -> np.ndarray:
    """(6, 3) uint8 RGB colour of each class of :data:`CLASS_NAMES`, from the ``dubai`` palette."""
    from data.palettes import load_palette

    palette = load_palette("dubai")
    if tuple(palette.class_names) != CLASS_NAMES:
        raise ValueError(f"dubai palette classes {palette.class_names} differ from {CLASS_NAMES}")
    return np.asarray(palette.colors, dtype=np.uint8)


def colorize_label(label: np.ndarray) -> np.ndarray:
    """uint8 (H, W) class index -> uint8 (H, W, 3) Dubai colour mask; values outside 0..5 become black."""
    lut = np.zeros((256, 3), np.uint8)
    lut[:len(CLASS_NAMES)] = dubai_colors()
    return lut[label]


# ---------------------------------------------------------------------------------------------------------------
# Scene state and small helpers
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class _Scene:
    """Everything the element painters share. Images are float32 RGB 0..255; masks uint8 0/1."""

    rng: np.random.Generator
    height: int
    width: int
    urban: np.ndarray            # (H, W) 1 where buildings may stand
    kind: str                    # urban | edge | coast | open
    empty_fill: str              # what the building-free region holds: desert | park | water | none
    empty_region: np.ndarray     # (H, W) 1 in the building-free region of an "edge" scene
    sun: np.ndarray              # (2,) unit (x, y) direction in which shadows fall
    image: np.ndarray = field(init=False)
    label: np.ndarray = field(init=False)
    shadow: np.ndarray = field(init=False)     # (H, W) float32 0..1, how much each pixel is shaded
    blocked: np.ndarray = field(init=False)    # (H, W) uint8, 1 where no new building/yard may go
    grain: np.ndarray = field(init=False)      # (H, W) float32 N(0, 1) fine noise
    low: np.ndarray = field(init=False)        # (H, W) float32 smooth noise, ~100 px features
    mid: np.ndarray = field(init=False)        # (H, W) float32 smooth noise, ~20 px features
    asphalt: np.ndarray | None = field(init=False, default=None)      # (H, W) uint8, where cars may drive
    tree_crowns: np.ndarray | None = field(init=False, default=None)  # (H, W) uint8, painted last
    tree_light: np.ndarray | None = field(init=False, default=None)   # (H, W) float32 sunlit part of crowns
    tree_color: np.ndarray | None = field(init=False, default=None)   # (3,) crown colour
    grid_angle: float = field(init=False, default=0.0)                # street grid orientation, radians

    def __post_init__(self) -> None:
        shape = (self.height, self.width)
        self.image = np.zeros(shape + (3,), np.float32)
        self.label = np.full(shape, LAND, np.uint8)
        self.shadow = np.zeros(shape, np.float32)
        self.blocked = np.zeros(shape, np.uint8)
        self.grain = self.rng.standard_normal(shape, dtype=np.float32)
        self.low = _smooth_noise(self.rng, shape, 96)
        self.mid = _smooth_noise(self.rng, shape, 20)
        self.grid_angle = float(self.rng.uniform(0, np.pi))


@dataclass
class _Road:
    points: np.ndarray    # (N, 2) float32 (x, y), ~1 px apart
    tangents: np.ndarray  # (N, 2) unit (x, y)
    width: int            # asphalt width in px
    sidewalk: int         # sidewalk width on each side in px (0 = none)
    median: int           # central median width in px (0 = single carriageway)

    @property
    def half_total(self) -> float:
        return self.width / 2 + self.sidewalk


@dataclass
class _Building:
    outline: np.ndarray   # (K, 2) float32 (x, y) footprint polygon
    parts: list           # convex (4, 2) quads whose union is the footprint
    angle: float          # orientation of the long axis, radians
    height: float         # shadow length in px
    color: np.ndarray     # (3,) roof colour
    roof: str             # gable | flat


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cell: int) -> np.ndarray:
    """(H, W) float32 noise with features about ``cell`` px across, zero mean and unit std."""
    h, w = shape
    coarse = rng.standard_normal((h // cell + 3, w // cell + 3), dtype=np.float32)
    big = cv2.resize(coarse, ((w // cell + 3) * cell, (h // cell + 3) * cell), interpolation=cv2.INTER_CUBIC)
    out = big[cell:cell + h, cell:cell + w]
    return (out - out.mean()) / (out.std() + 1e-6)


def _rect(center: np.ndarray, length: float, depth: float, angle: float) -> np.ndarray:
    """(4, 2) corners of a rectangle ``length`` along ``angle`` and ``depth`` across it."""
    local = np.array([[-length, -depth], [length, -depth], [length, depth], [-length, depth]], np.float32) / 2
    return _to_world(local, center, angle)


def _to_world(local: np.ndarray, center: np.ndarray, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, s], [-s, c]], np.float32)  # row vectors: x' = x c - y s, y' = x s + y c
    return (local @ rot + center).astype(np.float32)


def _ipts(poly: np.ndarray) -> np.ndarray:
    return np.round(poly).astype(np.int32)


def _fill(mask: np.ndarray, poly: np.ndarray, value: int = 1) -> None:
    cv2.fillPoly(mask, [_ipts(poly)], value)


def _hits(mask: np.ndarray, poly: np.ndarray) -> bool:
    """True when polygon ``poly`` covers any nonzero pixel of ``mask`` or lies outside the image."""
    h, w = mask.shape
    lo, hi = poly.min(0), poly.max(0)
    x0, y0 = max(int(lo[0]) - 1, 0), max(int(lo[1]) - 1, 0)
    x1, y1 = min(int(hi[0]) + 2, w), min(int(hi[1]) + 2, h)
    if x1 <= x0 or y1 <= y0:
        return True
    window = mask[y0:y1, x0:x1]
    if not window.any():  # the common cheap answer
        return False
    local = np.zeros(window.shape, np.uint8)
    cv2.fillPoly(local, [_ipts(poly - np.float32([x0, y0]))], 1)
    return bool((window & local).any())


@dataclass
class _Window:
    """Views of the scene arrays inside one object's bounding box: per-object drawing costs its own area only."""

    image: np.ndarray   # (h, w, 3) view
    label: np.ndarray   # (h, w) view
    grain: np.ndarray   # (h, w) view
    mid: np.ndarray     # (h, w) view
    origin: np.ndarray  # (2,) float32 (x, y) of the window's top-left pixel in the scene
    box: tuple          # (row slice, column slice) of the window in the scene

    def crop(self, array: np.ndarray) -> np.ndarray:
        """The window's view of another scene-sized array."""
        return array[self.box]

    def mask(self, poly: np.ndarray) -> np.ndarray:
        """(h, w) uint8, 1 inside scene-coordinate polygon ``poly``."""
        out = np.zeros(self.label.shape, np.uint8)
        cv2.fillPoly(out, [_ipts(poly - self.origin)], 1)
        return out


def _window(scene: _Scene, poly: np.ndarray, pad: int = 3) -> _Window | None:
    """The window around ``poly`` (clipped to the image), or None when it lies outside."""
    x0, y0 = np.floor(poly.min(0)).astype(int) - pad
    x1, y1 = np.ceil(poly.max(0)).astype(int) + pad + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, scene.width), min(y1, scene.height)
    if x1 <= x0 or y1 <= y0:
        return None
    ys, xs = slice(y0, y1), slice(x0, x1)
    return _Window(scene.image[ys, xs], scene.label[ys, xs], scene.grain[ys, xs], scene.mid[ys, xs],
                   np.array([x0, y0], np.float32), (ys, xs))


def _stamp(mask: np.ndarray, poly: np.ndarray, margin: int = 0) -> None:
    """Set ``mask`` to 1 inside ``poly`` and ``margin`` px around it, touching only its bounding box."""
    x0, y0 = np.floor(poly.min(0)).astype(int) - margin - 1
    x1, y1 = np.ceil(poly.max(0)).astype(int) + margin + 2
    x0, y0 = max(x0, 0), max(y0, 0)
    view = mask[y0:max(y1, y0), x0:max(x1, x0)]
    if view.size == 0:
        return
    local = [_ipts(poly - np.float32([x0, y0]))]
    cv2.fillPoly(view, local, 1)
    if margin:
        cv2.polylines(view, local, True, 1, 2 * margin + 1)


def _paint(target: _Scene | _Window, mask: np.ndarray, color: np.ndarray, texture: float = 0.03,
           variation: float = 0.0) -> None:
    """Paint ``color`` where ``mask`` with grain (``texture``) and smooth brightness ``variation``."""
    sel = mask.astype(bool)
    gain = 1 + texture * target.grain[sel] + variation * target.mid[sel]  # (N,)
    target.image[sel] = color[None, :] * gain[:, None]


def _resample(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Resample a polyline to ~1 px spacing; return points (N, 2) and unit tangents (N, 2)."""
    seg = np.diff(points, axis=0)
    arc = np.concatenate([[0], np.cumsum(np.hypot(seg[:, 0], seg[:, 1]))])
    s = np.arange(0, arc[-1], 1.0)
    out = np.stack([np.interp(s, arc, points[:, 0]), np.interp(s, arc, points[:, 1])], 1).astype(np.float32)
    tan = np.gradient(out, axis=0)
    tan /= np.linalg.norm(tan, axis=1, keepdims=True) + 1e-6
    return out, tan.astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------
# Scene elements, in painting order
# ---------------------------------------------------------------------------------------------------------------

def _plan_zones(rng: np.random.Generator, h: int, w: int) -> tuple[str, str, np.ndarray, np.ndarray]:
    """Choose the scene kind and where buildings may stand.

    Returns (kind, empty_fill, urban (H, W) uint8, empty_region (H, W) uint8). About a third of 128 px patches
    end up without buildings: "edge" scenes leave a quadrant or half empty, "coast" scenes have a sea side,
    "open" scenes have no buildings at all.
    """
    kind = str(rng.choice(["urban", "edge", "coast", "open"], p=[0.3, 0.36, 0.19, 0.15]))
    urban = np.ones((h, w), np.uint8)
    empty = np.zeros((h, w), np.uint8)
    fill = "none"
    if kind == "open":
        urban[:] = 0
        fill = "desert"
    elif kind == "edge":
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        wobble = 12 * _smooth_noise(rng, (h, w), 48)
        cx, cy = rng.uniform(0.35, 0.65) * w, rng.uniform(0.35, 0.65) * h
        sx, sy = rng.choice([-1, 1], size=2)
        if rng.random() < 0.35:  # a half
            empty = ((xx - cx) * sx + wobble > 0) if rng.random() < 0.5 else ((yy - cy) * sy + wobble > 0)
        else:  # a quadrant
            empty = ((xx - cx) * sx + wobble > 0) & ((yy - cy) * sy + wobble > 0)
        empty = empty.astype(np.uint8)
        urban = 1 - empty
        fill = str(rng.choice(["desert", "park", "water"], p=[0.3, 0.35, 0.35]))
    return kind, fill, urban, empty


def _paint_ground(scene: _Scene) -> None:
    """Sand: a base colour, a second tint in low-frequency patches, brightness waves, grain, scrub and tracks."""
    rng = scene.rng
    base = _SAND_COLORS[rng.integers(len(_SAND_COLORS))] + rng.normal(0, 4, 3).astype(np.float32)
    tint = _SAND_TINT[rng.integers(len(_SAND_TINT))]
    mix = 0.5 / (1 + np.exp(-2.5 * (_smooth_noise(rng, (scene.height, scene.width), 64) - 0.6)))  # (H, W)
    color = base * (1 - mix[..., None]) + tint * mix[..., None]
    gain = 1 + 0.05 * scene.low + 0.025 * scene.mid + 0.03 * scene.grain  # (H, W)
    scene.image[:] = color * gain[..., None]
    # scrub bushes and stones: small dark dots the annotators leave as land
    n = int(rng.integers(20, 160) * scene.height * scene.width / 512 ** 2)
    dots = np.zeros((scene.height, scene.width), np.uint8)
    for x, y, r in zip(rng.integers(0, scene.width, n), rng.integers(0, scene.height, n), rng.integers(1, 3, n)):
        cv2.circle(dots, (int(x), int(y)), int(r), 1, -1)
    scene.image[dots > 0] *= np.float32(0.78)
    # faint vehicle tracks across the sand
    tracks = np.zeros((scene.height, scene.width), np.float32)
    for _ in range(rng.integers(0, 4)):
        pts = _bezier(rng, scene.height, scene.width, bend=0.3)
        cv2.polylines(tracks, [_ipts(pts)], False, 1.0, int(rng.integers(1, 3)), cv2.LINE_AA)
    scene.image *= (1 - 0.08 * tracks)[..., None]


def _bezier(rng: np.random.Generator, h: int, w: int, bend: float) -> np.ndarray:
    """A quadratic curve from one image border to another, (N, 2) float32 (x, y) ~1 px apart."""
    def border_point() -> np.ndarray:
        side, t = rng.integers(4), rng.uniform(0.1, 0.9)
        return np.array([[t * w, -10], [w + 10, t * h], [t * w, h + 10], [-10, t * h]][side], np.float32)
    p0 = border_point()
    p2 = border_point()
    while np.linalg.norm(p2 - p0) < 0.6 * min(h, w):
        p2 = border_point()
    normal = np.array([p0[1] - p2[1], p2[0] - p0[0]], np.float32)
    p1 = (p0 + p2) / 2 + normal * rng.uniform(-bend, bend)
    t = np.linspace(0, 1, 64, dtype=np.float32)[:, None]
    return _resample((1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2)[0]


def _add_water(scene: _Scene) -> np.ndarray:
    """Sea along one side (coast scenes), a lake in an empty region, small ponds and creeks.

    Returns the (H, W) uint8 mask of the sea / lake, where roads stop; roads cross creeks and ponds on bridges.
    """
    rng, h, w = scene.rng, scene.height, scene.width
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    water = np.zeros((h, w), bool)
    if scene.kind == "coast":
        a = rng.uniform(0, 2 * np.pi)
        field_ = (xx * np.cos(a) + yy * np.sin(a)) / max(h, w) + 0.08 * scene.low + 0.02 * scene.mid
        water = field_ > np.quantile(field_, 1 - rng.uniform(0.3, 0.45))
        scene.urban[cv2.dilate(water.astype(np.uint8), np.ones((15, 15), np.uint8)) > 0] = 0
    elif scene.empty_fill == "water":
        ys, xs = np.nonzero(scene.empty_region)
        cx, cy = xs.mean(), ys.mean()
        rx, ry = 0.45 * (np.ptp(xs) + 1), 0.45 * (np.ptp(ys) + 1)
        blob = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 + 0.35 * scene.mid
        water = (blob < 1) & (scene.empty_region > 0)
    sea = water.astype(np.uint8)
    if scene.kind in ("open", "urban") or rng.random() < 0.45:
        for _ in range(rng.integers(1, 3)):
            if rng.random() < 0.5:  # a pond
                cx, cy = rng.uniform(0, w), rng.uniform(0, h)
                rx, ry = rng.uniform(20, 70, 2)
                water |= ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 + 0.3 * scene.mid < 1
            else:  # a winding creek
                band = np.zeros((h, w), np.uint8)
                cv2.polylines(band, [_ipts(_bezier(rng, h, w, bend=0.6))], False, 1, int(rng.integers(14, 36)))
                band = cv2.GaussianBlur(band.astype(np.float32), (0, 0), 4) + 0.15 * scene.mid
                water |= band > 0.5
    # drop specks and slivers the noise leaves behind: real ponds are at least a few metres across
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
    water = cv2.morphologyEx(water.astype(np.uint8), cv2.MORPH_OPEN, kernel)
    sea &= water
    if not water.any():
        return sea
    # colour by depth: shallow near the shore, deep further out; gentle ripples
    depth = cv2.distanceTransform(water, cv2.DIST_L2, 3)
    t = np.clip(depth / rng.uniform(4, 14), 0, 1)[..., None]
    k = rng.integers(len(_WATER_DEEP))
    color = _WATER_SHALLOW[k] * (1 - t) + _WATER_DEEP[k] * t
    ripples = _smooth_noise(rng, (h, w), 4)  # small waves, a few px across
    color = color * (1 + 0.035 * scene.mid + 0.025 * ripples + 0.015 * scene.grain)[..., None]
    # soft shore: blend over ~2 px, with a darker wet band on the sand side
    alpha = cv2.GaussianBlur(water.astype(np.float32), (0, 0), 1.2)[..., None]
    wet = cv2.GaussianBlur(water.astype(np.float32), (0, 0), 2.5)[..., None]
    scene.image *= 1 - 0.15 * np.clip(wet * 2, 0, 1)
    scene.image[:] = scene.image * (1 - alpha) + color * alpha
    scene.label[water > 0] = WATER
    scene.blocked |= cv2.dilate(water, np.ones((9, 9), np.uint8))
    return sea


def _add_roads(scene: _Scene, sea: np.ndarray) -> list[_Road]:
    """A grid of streets at one orientation per scene plus an arterial (straight or curved, dual carriageway)."""
    rng, h, w = scene.rng, scene.height, scene.width
    roads = []
    theta = scene.grid_angle
    direction = np.array([np.cos(theta), np.sin(theta)], np.float32)
    normal = np.array([-direction[1], direction[0]], np.float32)
    center = np.array([w / 2, h / 2], np.float32)
    half = 0.75 * np.hypot(h, w)
    scale = max(h, w) / 512
    if scene.kind == "open":
        n_along, n_across = int(rng.integers(0, 2)), int(rng.integers(0, 2))
    else:
        n_along, n_across = int(rng.integers(2, 4) * scale), int(rng.integers(1, 3) * scale)
    for count, axis, across in ((n_along, direction, normal), (n_across, normal, direction)):
        if count == 0:
            continue
        spacing = rng.uniform(130, 190)
        offsets = (np.arange(count) - (count - 1) / 2) * spacing + rng.uniform(-30, 30)
        for off in offsets:
            p = center + across * off
            pts = np.stack([p - axis * half, p + axis * half]).astype(np.float32)
            points, tangents = _resample(pts)
            roads.append(_Road(points, tangents, width=int(rng.integers(9, 15)), sidewalk=int(rng.integers(1, 4)),
                               median=0))
    if scene.kind == "open" or rng.random() < 0.6:
        pts = _bezier(rng, h, w, bend=0.35 if rng.random() < 0.5 else 0.0)
        points, tangents = _resample(pts)
        roads.append(_Road(points, tangents, width=int(rng.integers(18, 28)), sidewalk=int(rng.integers(1, 4)),
                           median=int(rng.integers(0, 5))))

    full = np.zeros((h, w), np.uint8)
    asphalt = np.zeros((h, w), np.uint8)
    median = np.zeros((h, w), np.uint8)
    marks = np.zeros((h, w), np.uint8)
    for road in roads:
        line = [_ipts(road.points)]
        cv2.polylines(full, line, False, 1, road.width + 2 * road.sidewalk)
        cv2.polylines(asphalt, line, False, 1, road.width)
        if road.median:
            cv2.polylines(median, line, False, 1, road.median)
        if road.width >= 10:  # dashed lane lines: centre line, or one line per carriageway on dual roads
            shifts = [0.0] if not road.median else [-(road.median + road.width / 2) / 2,
                                                    (road.median + road.width / 2) / 2]
            for shift in shifts:
                pts = road.points + np.stack([-road.tangents[:, 1], road.tangents[:, 0]], 1) * shift
                dash = pts[: len(pts) // 10 * 10].reshape(-1, 10, 2)[::2, :5]  # 5 px on, 15 px off
                cv2.polylines(marks, [_ipts(d) for d in dash], False, 1, 1)
    keep = 1 - sea
    full &= keep
    asphalt &= full
    median &= asphalt
    marks &= asphalt & (1 - median)
    asphalt &= 1 - median
    _paint(scene, full, _SIDEWALK[rng.integers(len(_SIDEWALK))], texture=0.03)
    _paint(scene, asphalt, _ASPHALT[rng.integers(len(_ASPHALT))] * rng.uniform(0.92, 1.08), texture=0.06,
           variation=0.04)
    _paint(scene, median, np.array([178, 172, 160], np.float32), texture=0.05)
    scene.image[marks > 0] = np.float32([228, 226, 214])
    scene.label[full > 0] = ROAD
    scene.blocked |= cv2.dilate(full, np.ones((2 * 3 + 1,) * 2, np.uint8))  # setback of ~3 px
    scene.asphalt = asphalt  # used by cars
    return roads


def _add_cars(scene: _Scene, roads: list[_Road]) -> None:
    """Cars (9x4 px) in the lanes: a coloured body with a darker windscreen; labelled road (they sit on roads)."""
    rng = scene.rng
    for road in roads:
        n = int(len(road.points) * rng.uniform(0.01, 0.04) * (0.4 if scene.kind == "open" else 1))
        for i in rng.integers(0, len(road.points), n):
            tangent = road.tangents[i]
            normal = np.array([-tangent[1], tangent[0]], np.float32)
            lane = rng.choice([-1, 1])
            offset = lane * (road.median / 2 + road.width / 4 if road.median else road.width / 4)
            c = road.points[i] + normal * offset
            x, y = int(round(c[0])), int(round(c[1]))
            if not (0 <= x < scene.width and 0 <= y < scene.height) or not scene.asphalt[y, x]:
                continue
            angle = float(np.arctan2(tangent[1], tangent[0]) + (np.pi if lane < 0 else 0))
            length, width = rng.uniform(8, 10), rng.uniform(3.5, 4.5)
            outline = _rect(c, length, width, angle)
            win = _window(scene, outline)
            road_here = win.crop(scene.asphalt)
            body = win.mask(outline) & road_here
            color = _CAR_COLORS[rng.choice(len(_CAR_COLORS), p=_CAR_WEIGHTS)]
            _paint(win, body, color, texture=0.03)
            front = c + np.array([np.cos(angle), np.sin(angle)], np.float32) * length * 0.18
            _paint(win, win.mask(_rect(front, length * 0.2, width * 0.8, angle)) & body, color * 0.35, texture=0.02)
            # a thin dark rim: the car's own small shadow
            rim = (cv2.dilate(body, np.ones((3, 3), np.uint8)) > 0) & (body == 0) & (road_here > 0)
            win.image[rim] *= np.float32(0.85)


def _add_grass(scene: _Scene) -> None:
    """A park in the empty region of park scenes and a few lawns elsewhere (labelled vegetation)."""
    rng, h, w = scene.rng, scene.height, scene.width
    grass = np.zeros((h, w), np.uint8)
    if scene.empty_fill == "park":
        patch = (scene.mid + 0.8 * scene.low > rng.uniform(-1.2, -0.4)).astype(np.uint8)
        grass |= patch & scene.empty_region
    for _ in range(rng.integers(2, 8)):
        c = np.array([rng.uniform(0, w), rng.uniform(0, h)], np.float32)
        if scene.kind == "open" and rng.random() < 0.5:  # a circular irrigated field
            cv2.circle(grass, (int(c[0]), int(c[1])), int(rng.uniform(25, 60)), 1, -1)
        else:
            _fill(grass, _rect(c, rng.uniform(25, 80), rng.uniform(20, 60), scene.grid_angle + rng.normal(0, 0.05)))
    grass &= 1 - scene.blocked  # not on water or roads
    if not grass.any():
        return
    color = _GRASS[rng.integers(len(_GRASS))]
    _paint(scene, grass, color, texture=0.05, variation=0.08)
    # mowing stripes
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = rng.uniform(0, np.pi)
    stripes = 1 + 0.025 * np.sin((xx * np.cos(a) + yy * np.sin(a)) * 2 * np.pi / 8)
    scene.image[grass > 0] *= stripes[grass > 0][:, None]
    scene.label[grass > 0] = VEGETATION
    scene.blocked |= grass


def _building_shape(rng: np.random.Generator, center: np.ndarray, length: float, depth: float,
                    angle: float) -> tuple[np.ndarray, list]:
    """A rectangle or an L-shape: (outline (K, 2), convex parts)."""
    if rng.random() < 0.7 or min(length, depth) < 16:
        quad = _rect(center, length, depth, angle)
        return quad, [quad]
    a, d = length / 2, depth / 2
    ca, cd = rng.uniform(0.35, 0.6) * length, rng.uniform(0.35, 0.6) * depth
    local = np.array([[-a, -d], [a, -d], [a, d - cd], [a - ca, d - cd], [a - ca, d], [-a, d]], np.float32)
    part1 = np.array([[-a, -d], [a, -d], [a, d - cd], [-a, d - cd]], np.float32)
    part2 = np.array([[-a, d - cd], [a - ca, d - cd], [a - ca, d], [-a, d]], np.float32)
    return _to_world(local, center, angle), [_to_world(p, center, angle) for p in (part1, part2)]


def _place_buildings(scene: _Scene, roads: list[_Road]) -> list[_Building]:
    """Buildings in the urban zone: rows facing each road on both sides, then infill of the blocks' interiors.

    Every footprint keeps 2 px from its neighbours and 3 px from roads; a few plots stay empty (sand or a lawn).
    """
    rng = scene.rng
    h, w = scene.height, scene.width
    blocked = scene.blocked | (1 - scene.urban)
    buildings: list[_Building] = []
    lawns = np.zeros_like(scene.blocked)

    def try_place(center: np.ndarray, length: float, depth: float, angle: float) -> bool:
        if not (0 <= center[0] < w and 0 <= center[1] < h):
            return False
        outline, parts = _building_shape(rng, center, length, depth, angle)
        if _hits(blocked, outline):
            return False
        _stamp(blocked, outline, margin=2)
        if rng.random() < 0.14:  # an empty plot: sand or a lawn
            if rng.random() < 0.7:
                _fill(lawns, outline)
            return True
        color = _ROOF_COLORS[rng.choice(len(_ROOF_COLORS), p=_ROOF_WEIGHTS)]
        color = np.clip(color * rng.uniform(0.9, 1.08) + rng.normal(0, 5, 3), 0, 255).astype(np.float32)
        roof = "gable" if len(parts) == 1 and rng.random() < 0.3 else "flat"
        height = rng.uniform(3, 9) if rng.random() < 0.85 else rng.uniform(10, 22)
        buildings.append(_Building(outline, parts, angle, height, color, roof))
        return True

    def random_size() -> tuple[float, float]:
        if rng.random() < 0.1:
            return rng.uniform(40, 60), rng.uniform(25, 50)
        return rng.uniform(10, 40), rng.uniform(10, 34)

    for road in rng.permutation(len(roads)):
        road = roads[road]
        for side in (-1, 1):
            start = road.half_total + 5 + rng.uniform(0, 4)  # past the 3 px setback in ``blocked``
            # only the stretch of road near the image can have buildings in view
            near = np.nonzero((road.points[:, 0] > -80) & (road.points[:, 0] < w + 80)
                              & (road.points[:, 1] > -80) & (road.points[:, 1] < h + 80))[0]
            if len(near) == 0:
                continue
            for _row in range(int(rng.integers(2, 5))):
                row_depth = rng.uniform(14, 40)
                s = near[0] + rng.uniform(0, 10)
                while s < near[-1]:
                    i = int(s)
                    tangent = road.tangents[i]
                    normal = np.array([-tangent[1], tangent[0]], np.float32) * side
                    length = rng.uniform(10, 44) if rng.random() < 0.9 else rng.uniform(40, 60)
                    depth = row_depth * rng.uniform(0.7, 1.0)
                    along = road.points[min(i + int(length / 2), len(road.points) - 1)]
                    angle = float(np.arctan2(tangent[1], tangent[0]) + rng.normal(0, 0.04))
                    try_place(along + normal * (start + depth / 2), length, depth, angle)
                    s += length + rng.uniform(2, 5)
                start += row_depth + rng.uniform(2, 7)
    # infill: random spots in what is still free, aligned with the street grid
    free = np.argwhere(blocked == 0)
    if len(free):
        for y, x in free[rng.integers(len(free), size=int(h * w / 250))]:
            if blocked[y, x]:
                continue
            length, depth = random_size()
            angle = scene.grid_angle + rng.choice([0, np.pi / 2]) + rng.normal(0, 0.04)
            for shrink in (1.0, 0.7, 0.5):
                if try_place(np.array([x, y], np.float32), length * shrink, depth * shrink, angle):
                    break
    if lawns.any():
        lawns &= 1 - scene.blocked
        _paint(scene, lawns, _GRASS[rng.integers(len(_GRASS))], texture=0.06, variation=0.06)
        scene.label[lawns > 0] = VEGETATION
    scene.blocked = blocked
    return buildings


def _add_yard(scene: _Scene, roads: list[_Road]) -> None:
    """Sometimes a storage yard of clutter next to a road, labelled unlabeled (as Dubai's grey class)."""
    rng = scene.rng
    if scene.kind == "open" or not roads or rng.random() > 0.5:
        return
    for _ in range(60):
        road = roads[rng.integers(len(roads))]
        inside = np.nonzero((road.points[:, 0] >= 0) & (road.points[:, 0] < scene.width)
                            & (road.points[:, 1] >= 0) & (road.points[:, 1] < scene.height))[0]
        if len(inside) == 0:
            continue
        i = int(inside[rng.integers(len(inside))])
        normal = np.array([-road.tangents[i, 1], road.tangents[i, 0]], np.float32) * rng.choice([-1, 1])
        length, depth = rng.uniform(25, 60), rng.uniform(20, 45)
        center = road.points[i] + normal * (road.half_total + 6 + depth / 2)
        angle = float(np.arctan2(road.tangents[i, 1], road.tangents[i, 0]))
        quad = _rect(center, length, depth, angle)
        if _hits(scene.blocked | (1 - scene.urban), quad):
            continue
        yard = np.zeros_like(scene.blocked)
        _fill(yard, quad)
        _paint(scene, yard, np.array([150, 146, 140], np.float32), texture=0.08)
        for _ in range(int(length * depth / 40)):  # containers, vehicles, crates
            box = np.zeros_like(yard)
            _fill(box, _rect(center + rng.uniform(-0.45, 0.45, 2).astype(np.float32) * [length, depth],
                             rng.uniform(3, 9), rng.uniform(2, 4), angle + rng.choice([0, np.pi / 2])))
            _paint(scene, box & yard, _CAR_COLORS[rng.integers(len(_CAR_COLORS))] * rng.uniform(0.7, 1.1))
        scene.label[yard > 0] = UNLABELED
        scene.blocked |= yard
        return


def _cast_building_shadows(scene: _Scene, buildings: list[_Building]) -> None:
    """Each building's shadow: the footprint swept by ``sun * height`` (convex hull per convex part)."""
    for b in buildings:
        shift = scene.sun * b.height
        for part in b.parts:
            hull = cv2.convexHull(np.concatenate([part, part + shift]).astype(np.float32))
            cv2.fillPoly(scene.shadow, [_ipts(hull[:, 0])], 1.0)


def _paint_roofs(scene: _Scene, buildings: list[_Building]) -> None:
    """Roofs: gable (two halves shaded by the sun, a ridge line) or flat (AC units with shadows); darker edge."""
    rng = scene.rng
    for b in buildings:
        win = _window(scene, b.outline)
        if win is None:
            continue
        foot = win.mask(b.outline)  # (h, w)
        sel = foot > 0
        if not sel.any():
            continue
        _paint(win, foot, b.color, texture=0.025, variation=0.02)
        win.label[sel] = BUILDING
        center = b.outline.mean(0)
        axis = np.array([np.cos(b.angle), np.sin(b.angle)], np.float32)
        across = np.array([-axis[1], axis[0]], np.float32)
        q = b.parts[0]
        length, depth = np.linalg.norm(q[1] - q[0]), np.linalg.norm(q[3] - q[0])
        if b.roof == "gable":
            # the half facing the sun (away from the shadow) is lit, the other in shade
            lit = 1.12 if np.dot(across, scene.sun) < 0 else 0.82
            yy, xx = np.nonzero(foot)
            cx, cy = center - win.origin
            side = (xx - cx) * across[0] + (yy - cy) * across[1] > 0
            win.image[yy[side], xx[side]] *= np.float32(lit)
            win.image[yy[~side], xx[~side]] *= np.float32(1.94 - lit)
            ridge = np.stack([center - axis * length * 0.45, center + axis * length * 0.45]) - win.origin
            ridge_mask = np.zeros_like(foot)
            cv2.polylines(ridge_mask, [_ipts(ridge)], False, 1, 1)
            win.image[(ridge_mask & foot) > 0] = np.clip(b.color * 1.2, 0, 255)
        else:
            inner = np.zeros_like(foot)  # parapet: a thin lighter ring inside the edge
            cv2.polylines(inner, [_ipts(b.outline - win.origin)], True, 1, 3)
            win.image[(inner & foot) > 0] *= np.float32(1.06)
            q_center = q.mean(0)
            for _ in range(int(rng.integers(0, 2 + int(length * depth / 250)))):
                offset = (rng.uniform(-0.35, 0.35) * length) * axis + (rng.uniform(-0.35, 0.35) * depth) * across
                unit = _rect(q_center + offset, rng.uniform(2, 4), rng.uniform(2, 4), b.angle)
                win.image[(win.mask(unit + scene.sun * 1.5) & foot) > 0] *= np.float32(0.7)
                win.image[(win.mask(unit) & foot) > 0] = np.float32([218, 218, 214]) * rng.uniform(0.85, 1.05)
        edge = np.zeros_like(foot)
        cv2.polylines(edge, [_ipts(b.outline - win.origin)], True, 1, 1)
        win.image[(edge & foot) > 0] *= np.float32(0.72)


def _add_trees(scene: _Scene, roads: list[_Road]) -> None:
    """Tree crowns (clustered circles, lit on the sun side) with shadows: street rows, park groves, gardens."""
    rng, h, w = scene.rng, scene.height, scene.width
    centers = []
    # street trees just outside the road edge
    for road in roads:
        if scene.kind == "open" and rng.random() < 0.7:
            continue
        for side in (-1, 1):
            if rng.random() < 0.5:
                continue
            step = rng.uniform(8, 14)
            idx = np.arange(rng.uniform(0, step), len(road.points), step).astype(int)
            normal = np.stack([-road.tangents[idx, 1], road.tangents[idx, 0]], 1) * side
            pts = road.points[idx] + normal * (road.half_total + rng.uniform(2, 5))
            keep = rng.random(len(pts)) < 0.75
            centers += [(p, rng.uniform(2.5, 5)) for p in pts[keep]]
    # groves in parks and scattered garden trees in the urban zone
    n_groves = int(rng.integers(3, 9) if scene.empty_fill == "park" else rng.integers(0, 4))
    n_gardens = int(rng.integers(60, 140) if scene.kind != "open" else rng.integers(0, 8))
    park = np.argwhere(scene.label == VEGETATION)
    for _ in range(n_groves):
        if len(park):
            cy, cx = park[rng.integers(len(park))]
        else:
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        spread = rng.uniform(6, 22)
        for _ in range(rng.integers(4, 16)):
            centers.append((np.array([cx, cy], np.float32) + rng.normal(0, spread, 2).astype(np.float32),
                            rng.uniform(3, 7)))
    for _ in range(n_gardens):
        c = np.array([rng.uniform(0, w), rng.uniform(0, h)], np.float32)
        for _ in range(rng.integers(1, 5)):
            centers.append((c + rng.normal(0, 4, 2).astype(np.float32), rng.uniform(2.5, 5)))
    if not centers:
        return
    color = _TREE[rng.integers(len(_TREE))]
    crowns = np.zeros((h, w), np.uint8)
    light = np.zeros((h, w), np.float32)
    shadow = np.zeros((h, w), np.float32)
    forbidden = (scene.label == BUILDING) | (scene.label == WATER)
    for c, r in centers:
        x, y = int(round(c[0])), int(round(c[1]))
        if not (0 <= x < w and 0 <= y < h) or forbidden[y, x]:
            continue
        cv2.circle(crowns, (x, y), int(round(r)), 1, -1)
        # a lit spot towards the sun, a shadow away from it
        lx, ly = c - scene.sun * r * 0.35
        cv2.circle(light, (int(round(lx)), int(round(ly))), max(1, int(r * 0.55)), 1.0, -1)
        sx, sy = c + scene.sun * r * 1.3
        cv2.circle(shadow, (int(round(sx)), int(round(sy))), int(round(r)), 1.0, -1)
    crowns &= (~forbidden).astype(np.uint8)
    scene.shadow = np.maximum(scene.shadow, shadow * (1 - crowns) * (scene.label != BUILDING))
    scene.tree_crowns = crowns
    scene.tree_light = cv2.GaussianBlur(light, (0, 0), 1.0) * crowns
    scene.tree_color = color


def _finish(scene: _Scene, buildings: list[_Building]) -> np.ndarray:
    """Apply shadows, paint roofs and crowns on top, then the sensor: colour shift, haze, blur, noise."""
    rng = scene.rng
    # shadows darken the ground by ~40 %, soft at the edge; roofs and crowns are painted over them afterwards
    shade = cv2.GaussianBlur(np.clip(scene.shadow, 0, 1), (0, 0), 0.7)
    scene.image *= (1 - rng.uniform(0.35, 0.45) * shade)[..., None]
    _paint_roofs(scene, buildings)
    crowns = scene.tree_crowns
    if crowns is not None and crowns.any():
        sel = crowns > 0
        tex = 1 + 0.12 * scene.grain[sel] + 0.08 * scene.mid[sel] + 0.45 * scene.tree_light[sel] - 0.15
        scene.image[sel] = scene.tree_color[None, :] * tex[:, None]
        scene.label[sel] = VEGETATION
    image = scene.image
    gain = rng.normal(1.0, 0.02, 3).astype(np.float32) * rng.uniform(0.9, 1.08)
    image = image * gain + rng.uniform(-8, 8)
    haze = rng.uniform(0, 0.12)
    image = image * (1 - haze) + 235 * haze
    image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.5, 0.85))
    image += rng.normal(0, 1.5, image.shape).astype(np.float32)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------------------

def generate_scene(size: tuple[int, int] = (512, 512), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Generate one aerial-like scene and its labels; pure and deterministic in ``seed``.

    Args:
        size: (height, width) in pixels, at about 0.5 m per pixel (object sizes do not scale with it).
        seed: the only source of randomness (``np.random.default_rng(seed)``).

    Returns:
        image: uint8 (H, W, 3) RGB.
        label: uint8 (H, W) class index into :data:`CLASS_NAMES`
            (0 building, 1 land, 2 road, 3 vegetation, 4 water, 5 unlabeled).
    """
    h, w = int(size[0]), int(size[1])
    if h < 16 or w < 16:
        raise ValueError(f"scene size must be at least 16x16, got {size}")
    rng = np.random.default_rng(seed)
    kind, fill, urban, empty = _plan_zones(rng, h, w)
    a = rng.uniform(0, 2 * np.pi)
    scene = _Scene(rng=rng, height=h, width=w, urban=urban, kind=kind, empty_fill=fill, empty_region=empty,
                   sun=np.array([np.cos(a), np.sin(a)], np.float32))
    _paint_ground(scene)
    sea = _add_water(scene)
    roads = _add_roads(scene, sea)
    _add_cars(scene, roads)
    _add_grass(scene)
    _add_yard(scene, roads)
    buildings = _place_buildings(scene, roads)
    _cast_building_shadows(scene, buildings)
    _add_trees(scene, roads)
    image = _finish(scene, buildings)
    return image, scene.label


def add_stray_pixels(mask: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """Blacken small random spots (1-3 px across) of a colour mask until about ``share`` of its pixels are black.

    Returns a copy; uint8 (H, W, 3). At most ``share`` of the pixels become (0, 0, 0).
    """
    if not 0 <= share <= 1:
        raise ValueError(f"stray pixel share must be in [0, 1], got {share}")
    out = mask.copy()
    h, w = mask.shape[:2]
    budget = int(share * h * w)
    spots = np.zeros((h, w), np.uint8)
    done = 0
    while done < budget:
        x, y, r = int(rng.integers(w)), int(rng.integers(h)), int(rng.integers(0, 2))
        trial = spots.copy()
        cv2.circle(trial, (x, y), r, 1, -1)
        n = int(trial.sum())
        if n > budget:
            if r == 0:
                break
            continue
        spots, done = trial, n
    out[spots > 0] = STRAY_COLOR
    return out


def scene_seed(seed: int, tile: int, part: int) -> int:
    """The generate_scene seed of scene ``part`` of tile ``tile`` in a data set written with ``seed``."""
    return int(np.random.SeedSequence([seed, tile, part]).generate_state(1)[0])


def dataset_paths(out_dir: str, tile: int, part: int) -> tuple[str, str]:
    """(image path, mask path) of one scene, in the Dubai layout (tile and part count from 1)."""
    tile_dir = os.path.join(out_dir, f"Tile {tile}")
    name = f"image_part_{part:03d}"
    return os.path.join(tile_dir, "images", f"{name}.jpg"), os.path.join(tile_dir, "masks", f"{name}.png")


def write_dataset(out_dir: str, num_tiles: int = 2, scenes_per_tile: int = 4, size: tuple[int, int] = (512, 512),
                  seed: int = 0, stray_pixel_share: float = 0.002) -> list[tuple[str, str]]:
    """Write ``num_tiles * scenes_per_tile`` scenes in the Dubai layout; every file is written atomically.

    About half the masks get ``stray_pixel_share`` of their pixels blackened in small spots (unknown colour).

    Returns:
        [(image_path, mask_path), ...] in tile, part order.
    """
    from misc.io import save_jpg, save_png

    if num_tiles < 1 or scenes_per_tile < 1:
        raise ValueError(f"need at least one tile and one scene per tile, got {num_tiles} x {scenes_per_tile}")
    colors = np.zeros((256, 3), np.uint8)
    colors[:len(CLASS_NAMES)] = dubai_colors()
    written = []
    for tile in range(1, num_tiles + 1):
        for part in range(1, scenes_per_tile + 1):
            image, label = generate_scene(size, scene_seed(seed, tile, part))
            mask = colors[label]  # (H, W, 3)
            stray_rng = np.random.default_rng([seed, tile, part, 1])
            if stray_pixel_share > 0 and stray_rng.random() < 0.5:
                mask = add_stray_pixels(mask, stray_pixel_share, stray_rng)
            image_path, mask_path = dataset_paths(out_dir, tile, part)
            save_jpg(image_path, image, quality=95)
            save_png(mask_path, mask)
            written.append((image_path, mask_path))
            logger.debug("wrote %s", image_path)
    logger.info("wrote %d synthetic scenes to %s", len(written), out_dir)
    return written


def preview(image: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Image and colour mask side by side, uint8 (H, 2W, 3) RGB."""
    return np.concatenate([image, colorize_label(label)], axis=1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the synthetic aerial data set in the Dubai layout.")
    parser.add_argument("--out", default="Dataset/synthetic_raw", help="output folder (Tile N/images|masks)")
    parser.add_argument("--num_tiles", type=int, default=2)
    parser.add_argument("--scenes_per_tile", type=int, default=4)
    parser.add_argument("--size", type=int, nargs="+", default=[512], help="side, or height width, in px")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stray_pixel_share", type=float, default=0.002,
                        help="share of pixels blackened in about half the masks (unknown colour)")
    parser.add_argument("--preview", default=None, help="also write the first scene and its mask as this PNG")
    args = parser.parse_args(argv)
    if len(args.size) not in (1, 2):
        parser.error("--size takes one value (square) or two (height width)")
    size = (args.size[0], args.size[-1])
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    write_dataset(args.out, args.num_tiles, args.scenes_per_tile, size, args.seed, args.stray_pixel_share)
    if args.preview:
        from misc.io import save_png

        save_png(args.preview, preview(*generate_scene(size, scene_seed(args.seed, 1, 1))))


if __name__ == "__main__":
    main()
