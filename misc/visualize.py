"""Pictures for people: CAM heat maps and label overlays as RGB uint8 arrays."""
from __future__ import annotations

import cv2
import numpy as np

# Colours for class indices 0..K (background first); 255 (ignore/unsure) is drawn grey.
CLASS_COLORS = np.array([
    (0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)], np.uint8)
IGNORE_COLOR = np.array((128, 128, 128), np.uint8)


def colorize_label(label: np.ndarray) -> np.ndarray:
    """(H, W) uint8 class index → (H, W, 3) RGB."""
    out = CLASS_COLORS[np.minimum(label, len(CLASS_COLORS) - 1)]
    out[label == 255] = IGNORE_COLOR
    return out


def label_overlay(image: np.ndarray, label: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend class colours over the image; background pixels keep the image as it is."""
    color = colorize_label(label).astype(np.float32)
    out = image.astype(np.float32)
    fg = (label > 0)[..., None]
    out = np.where(fg, (1 - alpha) * out + alpha * color, out)
    return out.clip(0, 255).astype(np.uint8)


def cam_overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Jet heat map of a [0, 1] map (H, W) blended over the RGB image (H, W, 3)."""
    heat = cv2.applyColorMap((np.clip(cam, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)
    heat = cv2.cvtColor(heat, cv2.COLOR_BGR2RGB).astype(np.float32)
    return ((1 - alpha) * image.astype(np.float32) + alpha * heat).clip(0, 255).astype(np.uint8)


TITLE_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _text_band(width: int, height: int) -> np.ndarray:
    return np.full((height, width, 3), 255, np.uint8)


def _put_text(canvas: np.ndarray, text: str, x: int, y_base: int, max_width: int, scale: float = 0.4) -> None:
    """Black text on ``canvas`` at (x, baseline y), shrunk (down to scale 0.3) and then cut to fit ``max_width``."""
    while scale > 0.3 and cv2.getTextSize(text, TITLE_FONT, scale, 1)[0][0] > max_width:
        scale -= 0.05
    while len(text) > 1 and cv2.getTextSize(text, TITLE_FONT, scale, 1)[0][0] > max_width:
        text = text[:-1]
    cv2.putText(canvas, text, (x, y_base), TITLE_FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)


def legend_entries(class_names: list[str], unsure: bool = False, background: bool = False) -> list[tuple[str, np.ndarray]]:
    """(name, RGB colour) of the classes as :func:`colorize_label` / :func:`label_overlay` draw them.

    class_names: ["background", fg_1, ...] (index = label). ``background``: include label 0 (drawn black by
    colorize_label; label_overlay leaves it as the image). ``unsure``: add the grey of label 255."""
    entries = [(n, CLASS_COLORS[min(i, len(CLASS_COLORS) - 1)]) for i, n in enumerate(class_names)
               if i > 0 or background]
    if unsure:
        entries.append(("unsure/ignore", IGNORE_COLOR))
    return entries


def _legend_band(width: int, entries: list[tuple[str, np.ndarray]], row_height: int = 16) -> np.ndarray:
    """Colour swatches with their names, left to right, wrapping onto more rows when the width is used up."""
    items = []
    for name, color in entries:
        text_w = cv2.getTextSize(name, TITLE_FONT, 0.35, 1)[0][0]
        items.append((name, color, 12 + 4 + min(text_w, max(width - 20, 10)) + 10))
    rows, row, used = [], [], 0
    for item in items:
        if row and used + item[2] > width:
            rows.append(row)
            row, used = [], 0
        row.append(item)
        used += item[2]
    if row:
        rows.append(row)
    band = _text_band(width, row_height * len(rows) + 2)
    for r, row in enumerate(rows):
        x, top = 2, r * row_height + 2
        for name, color, item_w in row:
            band[top + 2:top + 12, x:x + 12] = color
            cv2.rectangle(band, (x, top + 2), (x + 11, top + 11), (0, 0, 0), 1)
            _put_text(band, name, x + 16, top + 11, item_w - 26, scale=0.35)
            x += item_w
    return band


def side_by_side(panels: list[np.ndarray], gap: int = 4, titles: list[str] | None = None,
                 legend: list[tuple[str, np.ndarray]] | None = None) -> np.ndarray:
    """Concatenate RGB panels of equal height left to right with a white gap.

    titles: one per panel, written in a white band above it (``cv2.putText``, shrunk/cut to the panel's width).
    legend: (name, RGB colour) pairs (see :func:`legend_entries`) drawn as swatches in a band below.
    """
    if titles is not None and len(titles) != len(panels):
        raise ValueError(f"{len(titles)} titles for {len(panels)} panels")
    h = max(p.shape[0] for p in panels)
    parts, widths = [], []
    for i, p in enumerate(panels):
        if p.ndim == 2:
            p = np.repeat(p[..., None], 3, axis=2)
        if p.shape[0] != h:
            p = cv2.resize(p, (round(p.shape[1] * h / p.shape[0]), h), interpolation=cv2.INTER_NEAREST)
        if i:
            parts.append(np.full((h, gap, 3), 255, np.uint8))
        parts.append(p.astype(np.uint8))
        widths.append(p.shape[1])
    picture = np.concatenate(parts, axis=1)
    if titles is not None:
        band = _text_band(picture.shape[1], 16)
        x = 0
        for title, w in zip(titles, widths):
            _put_text(band, title, x + 2, 12, w - 4)
            x += w + gap
        picture = np.concatenate([band, picture], axis=0)
    if legend:
        picture = np.concatenate([picture, _legend_band(picture.shape[1], legend)], axis=0)
    return picture
