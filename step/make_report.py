"""Pass report: one self-contained HTML page with every evaluation found and pictures of a sample of images.

Reads (whichever exist; nothing is required):
    <cam_out_dir>/eval_cam.json, <sem_seg_out_dir>/eval_sem_seg.json, <ins_seg_out_dir>/eval_ins_seg.json,
    <seg_out_dir>/eval_seg.json; for up to --report_num_images names of --eval_list (default --infer_list), spread
    evenly over the list: the image, its CAM (<cam_out_dir>/<name>.npz), IR label (<ir_label_out_dir>), pseudo mask
    (<sem_seg_out_dir>), segmentation-model prediction (<seg_out_dir>) and ground truth (SegmentationClassAug).
Writes: --report_path (default result/report.html): tables of the metrics and a row of panels per image, the
        pictures embedded as base64 PNG downscaled to PANEL_SIDE pixels, so the file can be mailed or archived
        alone; args_report.json next to it. Rank 0 only under torchrun.
"""
from __future__ import annotations

import base64
import datetime
import html
import json
import logging
import os
from typing import Callable

import cv2
import numpy as np

from data.labels import read_name_list
from misc import artifacts, dist
from misc.io import load_npz, load_png, save_args, save_text_lines
from misc.visualize import cam_overlay, label_overlay

log = logging.getLogger(__name__)

PANEL_SIDE = 192  # long side of each embedded picture (px)
# (title, folder argument, eval pass name): the eval JSONs the report looks for
EVAL_SOURCES = (
    ("CAM (eval_cam)", "cam_out_dir", "eval_cam"),
    ("Pseudo masks (eval_sem_seg)", "sem_seg_out_dir", "eval_sem_seg"),
    ("Instances (eval_ins_seg)", "ins_seg_out_dir", "eval_ins_seg"),
    ("Segmentation model (eval_seg)", "seg_out_dir", "eval_seg"),
)
SCALAR_ORDER = ("miou", "map50", "pixel_accuracy", "threshold", "num_images", "iou_threshold", "weights")


# --- formatting -----------------------------------------------------------------------------------------------------

def format_value(value) -> str:
    """How every metric appears on the page: floats with 4 decimals, None as n/a."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def png_data_uri(rgb: np.ndarray, max_side: int = PANEL_SIDE) -> str:
    """uint8 (H, W, 3) RGB → ``data:image/png;base64,...`` downscaled so the long side is at most ``max_side``."""
    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        rgb = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("cannot encode a report picture as PNG")
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def eval_tables(title: str, path: str, result: dict) -> str:
    """HTML of one eval JSON: its scalars, a per-class table of its per-class metrics, and the threshold sweep."""
    parts = [f"<h3>{html.escape(title)}</h3>", f'<p class="path">{html.escape(path)}</p>']
    scalars = {k: v for k, v in result.items() if not isinstance(v, (dict, list))}
    ordered = [k for k in SCALAR_ORDER if k in scalars] + sorted(k for k in scalars if k not in SCALAR_ORDER)
    parts.append("<table><tr>" + "".join(f"<th>{html.escape(k)}</th>" for k in ordered) + "</tr><tr>"
                 + "".join(f"<td>{html.escape(format_value(scalars[k]))}</td>" for k in ordered) + "</tr></table>")
    per_class = {k: v for k, v in result.items() if isinstance(v, dict)}
    classes = list(dict.fromkeys(c for v in per_class.values() for c in v))
    if per_class:
        rows = ["<tr><th>class</th>" + "".join(f"<th>{html.escape(k)}</th>" for k in per_class) + "</tr>"]
        for c in classes:
            rows.append(f"<tr><td>{html.escape(str(c))}</td>" + "".join(
                f"<td>{html.escape(format_value(v.get(c)))}</td>" for v in per_class.values()) + "</tr>")
        parts.append("<table>" + "".join(rows) + "</table>")
    sweep = result.get("sweep")
    if isinstance(sweep, list) and sweep and isinstance(sweep[0], dict):
        rows = "".join(f"<tr><td>{format_value(s.get('threshold'))}</td><td>{format_value(s.get('miou'))}</td></tr>"
                       for s in sweep)
        parts.append("<details><summary>background threshold sweep</summary><table><tr><th>threshold</th>"
                     f"<th>miou</th></tr>{rows}</table></details>")
    return "\n".join(parts)


# --- pictures -------------------------------------------------------------------------------------------------------

def _label_panel(image: np.ndarray, path: str) -> np.ndarray | None:
    """Label PNG at ``path`` over the image, or None when missing or of another size."""
    if not os.path.isfile(path):
        return None
    label = load_png(path)
    if label.ndim != 2 or label.shape != image.shape[:2]:
        log.warning("report: %s is %s, the image %s; not shown", path, label.shape, image.shape[:2])
        return None
    return label_overlay(image, label)


def _cam_panel(image: np.ndarray, path: str) -> np.ndarray | None:
    """Strongest CAM of the present classes over the image, or None when there is no CAM file."""
    if not os.path.isfile(path):
        return None
    high_res = load_npz(path)["high_res"]  # (k, H, W)
    if high_res.shape[-2:] != image.shape[:2]:
        log.warning("report: %s is %s, the image %s; not shown", path, high_res.shape[-2:], image.shape[:2])
        return None
    strongest = high_res.max(axis=0) if len(high_res) else np.zeros(image.shape[:2], np.float32)
    return cam_overlay(image, strongest)


def image_panels(args, name: str) -> list[tuple[str, np.ndarray]]:
    """(title, RGB picture) for every stage output of ``name`` that exists, image first."""
    from data.raster_io import read_image

    image = read_image(artifacts.image_path(args.voc12_root, name))
    sources: list[tuple[str, Callable[[], np.ndarray | None]]] = [
        ("CAM", lambda: _cam_panel(image, artifacts.cam_path(args.cam_out_dir, name))),
        ("IR label", lambda: _label_panel(image, artifacts.ir_label_path(args.ir_label_out_dir, name))),
        ("pseudo mask", lambda: _label_panel(image, artifacts.sem_seg_path(args.sem_seg_out_dir, name))),
        ("prediction", lambda: _label_panel(image, artifacts.seg_pred_path(args.seg_out_dir, name))),
        ("ground truth", lambda: _label_panel(image, artifacts.mask_path(args.voc12_root, name))),
    ]
    panels = [("image", image)]
    for title, make in sources:
        picture = make()
        if picture is not None:
            panels.append((title, picture))
    return panels


def sample_names(names: list[str], count: int) -> list[str]:
    """Up to ``count`` names spread evenly over the list (first and last included)."""
    if count <= 0 or not names:
        return []
    if len(names) <= count:
        return list(names)
    picks = np.linspace(0, len(names) - 1, count).round().astype(int)
    return [names[i] for i in dict.fromkeys(picks.tolist())]


def picture_rows(args) -> tuple[str, int]:
    """HTML of the picture rows and the number of <img> panels; unreadable items are noted, not fatal."""
    list_path = args.eval_list or args.infer_list
    try:
        names = read_name_list(list_path)
    except (OSError, ValueError) as err:
        log.warning("report: no pictures (%s)", err)
        return f'<p class="note">No pictures: {html.escape(str(err))}</p>', 0
    rows, count = [], 0
    for name in sample_names(names, args.report_num_images):
        try:
            panels = image_panels(args, name)
        except (OSError, ValueError, KeyError) as err:
            rows.append(f'<p class="note">{html.escape(name)}: {html.escape(str(err))}</p>')
            continue
        figures = "".join(f'<figure><img src="{png_data_uri(picture)}" alt="{html.escape(title)} of '
                          f'{html.escape(name)}"><figcaption>{html.escape(title)}</figcaption></figure>'
                          for title, picture in panels)
        rows.append(f'<div class="row"><h4>{html.escape(name)}</h4>{figures}</div>')
        count += len(panels)
    return "\n".join(rows), count


# --- page -----------------------------------------------------------------------------------------------------------

STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.4em 0 1em; }
th, td { border: 1px solid #bbb; padding: 2px 8px; text-align: right; }
th { background: #eee; }
.path, .note { color: #666; font-size: 0.9em; }
.row { margin-bottom: 1em; }
figure { display: inline-block; margin: 0 6px 0 0; text-align: center; }
figure img { height: 160px; image-rendering: pixelated; }  /* small patches are shown enlarged */
figcaption { font-size: 0.8em; }
"""


def build_report(args) -> tuple[str, list[str], int]:
    """The HTML page, the eval JSON files it shows, and the number of <img> panels."""
    sections, found = [], []
    for title, folder_arg, pass_name in EVAL_SOURCES:
        path = artifacts.eval_json_path(getattr(args, folder_arg), pass_name)
        if not os.path.isfile(path):
            continue
        try:
            with open(path, encoding="utf-8") as f:
                result = json.load(f)
        except (OSError, json.JSONDecodeError) as err:
            sections.append(f'<p class="note">{html.escape(path)}: unreadable ({html.escape(str(err))})</p>')
            continue
        found.append(path)
        sections.append(eval_tables(title, path, result))
    if not found:
        sections.append('<p class="note">No eval JSON found in --cam_out_dir, --sem_seg_out_dir, --ins_seg_out_dir '
                        'or --seg_out_dir.</p>')
    rows, num_images = picture_rows(args)
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>wsss-rs report</title>'
            f"<style>{STYLE}</style></head><body>\n<h1>wsss-rs report</h1>\n"
            f'<p class="path">data {html.escape(args.voc12_root)} · written {when}</p>\n'
            f"<h2>Metrics</h2>\n" + "\n".join(sections) + "\n<h2>Images</h2>\n"
            + '<p class="note">Panels: image | strongest CAM | IR label (grey = unsure) | pseudo mask | '
              "model prediction | ground truth, whichever exist.</p>\n" + rows + "\n</body></html>")
    return page, found, num_images


def fill_from_recorded_args(args) -> None:
    """Where --voc12_root or the image list is left at a default that does not exist, take the ones the outputs were
    made with (``args_make_cam.json`` / ``args_eval_cam.json`` next to the CAMs, ``args_make_sem_seg.json`` next to the
    pseudo masks), so ``--report_pass True`` alone reports what the last run (e.g. ``bash demo.sh``) wrote."""
    for folder, pass_name in ((args.cam_out_dir, "make_cam"), (args.cam_out_dir, "eval_cam"),
                              (args.sem_seg_out_dir, "make_sem_seg"), (args.seg_out_dir, "eval_seg")):
        path = artifacts.args_json_path(folder, pass_name)
        if not os.path.isfile(path):
            continue
        try:
            with open(path, encoding="utf-8") as f:
                recorded = json.load(f)
        except (OSError, json.JSONDecodeError):
            continue
        if not os.path.isdir(args.voc12_root) and os.path.isdir(str(recorded.get("voc12_root", ""))):
            log.info("report: --voc12_root %s does not exist; using %s from %s", args.voc12_root,
                     recorded["voc12_root"], path)
            args.voc12_root = recorded["voc12_root"]
        list_path = args.eval_list or args.infer_list
        recorded_list = recorded.get("eval_list") or recorded.get("infer_list")
        if not (list_path and os.path.isfile(list_path)) and recorded_list and os.path.isfile(recorded_list):
            args.eval_list = recorded_list
            log.info("report: using the image list %s from %s", recorded_list, path)


def run(args) -> None:
    if not dist.is_main():
        return  # one page, written once
    fill_from_recorded_args(args)
    page, found, num_images = build_report(args)
    if not found and not num_images:
        raise FileNotFoundError(
            f"report: nothing to report: no eval JSON in --cam_out_dir {args.cam_out_dir}, --sem_seg_out_dir "
            f"{args.sem_seg_out_dir}, --ins_seg_out_dir {args.ins_seg_out_dir} or --seg_out_dir {args.seg_out_dir}, "
            f"and no pictures; point those flags at a run's outputs (bash demo.sh writes to these defaults)")
    save_text_lines(args.report_path, [page])
    save_args(args, os.path.dirname(os.path.abspath(args.report_path)), "report")
    log.info("report: %d eval table(s), %d picture(s) -> %s", len(found), num_images, args.report_path)
