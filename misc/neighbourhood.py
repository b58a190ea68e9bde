"""The stride-4 neighbourhood IRN and AffinityNet share: half-plane pair offsets and the pixels on each pair's line.

A pair is a pixel ``p`` and ``p + (dy, dx)`` with ``0 < dy² + dx² < radius²``. Only one half-plane of offsets is
kept (``dy > 0``, or ``dy == 0`` and ``dx > 0``): the mirror ``(-dy, -dx)`` is the same pair seen from the other pixel.
Used by the pair losses (misc/pair_sampler.py, misc/affinity.py) and the random walk (misc/random_walk.py), so the
training pairs and the walked graph are the same graph.
"""
from __future__ import annotations

import functools


@functools.lru_cache(maxsize=8)
def search_offsets(radius: int) -> tuple[tuple[int, int], ...]:
    """Half-plane neighbour offsets (dy, dx) with ``0 < dy² + dx² < radius²`` and ``dy > 0 or (dy == 0, dx > 0)``.

    Order: ``(0, 1), ..., (0, radius - 1)``, then row by row ``dy = 1 .. radius - 1``, ``dx`` increasing.
    Each offset stands for the undirected pair {p, p + (dy, dx)}; the full neighbourhood is these offsets, their
    mirrors and the self-loop. radius 2 → (0, 1), (1, -1), (1, 0), (1, 1); radius 5 → 34 offsets (68 neighbours),
    IRN's ``PathIndex`` search directions; radius 10 → 152.
    """
    if radius < 1:
        raise ValueError(f"radius must be >= 1, got {radius}")
    offsets = [(0, dx) for dx in range(1, radius)]
    offsets += [(dy, dx) for dy in range(1, radius) for dx in range(-radius + 1, radius)
                if dy * dy + dx * dx < radius ** 2]
    return tuple(offsets)


@functools.lru_cache(maxsize=512)
def line_pixels(dy: int, dx: int) -> tuple[tuple[int, int], ...]:
    """Pixels (y, x) on the straight line from (0, 0) to (dy, dx), both ends included, row by row.

    A pixel of the bounding box is on the line when its distance to the infinite line through the two ends is below
    1 (IRN's rule): a line crossing a one-pixel-thick wall always picks up a wall pixel, even diagonally — the line
    (1, 1) visits (0, 0), (0, 1), (1, 0), (1, 1).
    """
    length_sq = dy * dy + dx * dx
    if length_sq == 0:
        return ((0, 0),)
    pixels = []
    for y in range(min(0, dy), max(0, dy) + 1):
        for x in range(min(0, dx), max(0, dx) + 1):
            if (dy * x - dx * y) ** 2 < length_sq:  # squared distance (dy*x - dx*y)² / |d|² < 1
                pixels.append((y, x))
    return tuple(pixels)
