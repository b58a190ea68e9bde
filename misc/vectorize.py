"""Class masks to polygons (building footprints) and back, exact in pixel units, mergeable strip by strip.

Polygons are traced along pixel edges (``rasterio.features.shapes``, 4-connected), in pixel coordinates
x = column, y = row, so the area of an unsimplified polygon is its pixel count and a polygon cut by a strip border
shares that border edge exactly with its other half: ``unary_union`` glues the halves back without slivers. That
is how :class:`StripPolygonMerger` vectorizes a scene of any height one strip at a time: polygons that reach the
bottom of a strip stay open until the next strip, are unioned with the polygons touching its top, and are
finished once they no longer reach the strip border. Only the open polygons are held in memory.

Simplification and the map transform are applied last (:func:`footprint_features`), after merging.
"""
from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np
from affine import Affine
from shapely.affinity import affine_transform
from shapely.geometry import MultiPolygon, Polygon, mapping, shape
from shapely.ops import unary_union


def mask_to_polygons(mask: np.ndarray, *, row_offset: int = 0, connectivity: int = 4) -> list[Polygon]:
    """Polygons of the True pixels of a (H, W) bool mask, in pixel coordinates (x = column, y = row + row_offset).

    Holes (courtyards) are kept. Pixels touching only diagonally are separate polygons (4-connectivity).
    """
    from rasterio.features import shapes

    mask = np.ascontiguousarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {mask.shape}")
    if not mask.any():
        return []
    transform = Affine.translation(0, row_offset)
    return [shape(geom) for geom, _ in shapes(mask.view(np.uint8), mask=mask, connectivity=connectivity,
                                               transform=transform)]


def polygon_parts(geometry) -> list[Polygon]:
    """The polygons of a Polygon / MultiPolygon / GeometryCollection (other parts such as lines are dropped)."""
    if geometry.is_empty:
        return []
    if isinstance(geometry, Polygon):
        return [geometry]
    if isinstance(geometry, MultiPolygon):
        return list(geometry.geoms)
    return [p for g in getattr(geometry, "geoms", []) for p in polygon_parts(g)]


def polygons_to_mask(polygons: Iterable, shape_hw: tuple[int, int], transform: Affine | None = None) -> np.ndarray:
    """Rasterize polygons (GeoJSON-like dicts or shapely geometries) to a (H, W) uint8 0/1 mask.

    A pixel is set when its centre lies inside a polygon. ``transform`` maps pixel (col, row) to the polygons'
    coordinates (default: identity, i.e. the polygons are in pixel coordinates).
    """
    from rasterio.features import rasterize

    geoms = [(g, 1) for g in polygons]
    if not geoms:
        return np.zeros(shape_hw, np.uint8)
    return rasterize(geoms, out_shape=shape_hw, transform=transform or Affine.identity(), fill=0, dtype=np.uint8)


class StripPolygonMerger:
    """Vectorize a mask delivered as consecutive row strips; polygons crossing strip borders come out whole.

        merger = StripPolygonMerger()
        for top, strip_mask in strips:          # strips tile the rows top to bottom
            done.extend(merger.add_strip(strip_mask, top))
        done.extend(merger.finish())
    """

    def __init__(self, connectivity: int = 4):
        self.connectivity = connectivity
        self.open: list[Polygon] = []  # polygons reaching the bottom of the last strip
        self.next_top = 0

    def add_strip(self, mask: np.ndarray, top: int) -> list[Polygon]:
        """Add rows [top, top + h) of the mask; returns the polygons that are now complete."""
        if top != self.next_top:
            raise ValueError(f"strips must tile the rows in order: expected top {self.next_top}, got {top}")
        bottom = top + mask.shape[0]
        self.next_top = bottom
        polygons = mask_to_polygons(mask, row_offset=top, connectivity=self.connectivity)
        if self.open:
            at_top = [p for p in polygons if p.bounds[1] == top]
            if at_top:
                polygons = [p for p in polygons if p.bounds[1] != top]
                polygons += polygon_parts(unary_union(self.open + at_top))
            else:
                polygons += self.open
        finished = [p for p in polygons if p.bounds[3] < bottom]
        self.open = [p for p in polygons if p.bounds[3] >= bottom]
        return finished

    def finish(self) -> list[Polygon]:
        """The polygons still open after the last strip (they touch the bottom border of the scene)."""
        finished, self.open = self.open, []
        return finished


def footprint_features(polygons: Iterable[Polygon], *, class_name: str, transform: Affine | None = None,
                       pixel_area_m2: float | None = None, simplify_tolerance: float = 1.0,
                       min_area_px: float = 0.0, extra_properties: dict | None = None) -> Iterator[dict]:
    """GeoJSON features of pixel-coordinate polygons: simplified, mapped by ``transform``, with their area.

    Args:
        class_name: the ``class`` property.
        transform: pixel (col, row) → map coordinates (a rasterio Affine); None keeps pixel coordinates.
        pixel_area_m2: ground area of one pixel; when given the property is ``area_m2``, else ``area_px``.
        simplify_tolerance: Douglas-Peucker tolerance in pixels (topology preserved); 0 keeps every vertex.
        min_area_px: polygons smaller than this many pixels are dropped (speckle).
        extra_properties: added to every feature's properties (e.g. {"coordinates": "pixel"}).
    Areas are of the unsimplified polygon (pixel count × pixel area).
    """
    matrix = None if transform is None else [transform.a, transform.b, transform.d, transform.e,
                                             transform.c, transform.f]
    for polygon in polygons:
        area_px = float(polygon.area)
        if area_px < min_area_px or area_px <= 0:
            continue
        geometry = polygon.simplify(simplify_tolerance, preserve_topology=True) if simplify_tolerance > 0 else polygon
        if geometry.is_empty:
            continue
        if matrix is not None:
            geometry = affine_transform(geometry, matrix)
        properties = {"class": class_name}
        if pixel_area_m2 is not None:
            properties["area_m2"] = round(area_px * pixel_area_m2, 4)
        else:
            properties["area_px"] = area_px
        if extra_properties:
            properties.update(extra_properties)
        yield {"type": "Feature", "properties": properties, "geometry": mapping(geometry)}
