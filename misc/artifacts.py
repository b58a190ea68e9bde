"""The artifact contract: every file name a pass reads or writes is built here and nowhere else.

Data set (``voc12_root``, the seed's name for the data folder)::

    <voc12_root>/JPEGImages/<name>.jpg|png|tif     input patches (RGB)
    <voc12_root>/SegmentationClassAug/<name>.png   uint8 class index: 0 background, 1..K classes, 255 ignore
    <voc12_root>/classes.json                      {"classes": ["background", "building", ...], ...}
    <voc12_root>/cls_labels.npy                    structured array (name, labels[K]) — see data/labels.py

Pass outputs::

    <cam_out_dir>/<name>.npz           keys (k,) int64 fg class indices (0-based, without background),
                                       cam (k, ceil(H/4), ceil(W/4)) float32, high_res (k, H, W) float32;
                                       each map max-normalised to [0, 1]
    <cam_out_dir>/eval_cam.json        {"miou", "iou": {class: iou}, "threshold", "sweep": [...]}
    <ir_label_out_dir>/<name>.png      uint8: 0 background, 1..K classes, 255 unsure
    <sem_seg_out_dir>/<name>.png       uint8 pseudo mask: 0 background, 1..K classes
    <sem_seg_out_dir>/eval_sem_seg.json
    <ins_seg_out_dir>/<name>.npz       instance masks of one image (see step/make_ins_seg_labels.py)
    <any out dir>/overlays/<name>.png  RGB pictures for people
    <any out dir>/args_<pass>.json     the arguments the pass ran with
"""
from __future__ import annotations

import os

IMAGE_DIR = "JPEGImages"
MASK_DIR = "SegmentationClassAug"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
IGNORE_INDEX = 255


def image_path(voc12_root: str, name: str) -> str:
    """Path of the image patch ``name``; the first existing extension of IMAGE_EXTENSIONS wins."""
    base = os.path.join(voc12_root, IMAGE_DIR, name)
    for ext in IMAGE_EXTENSIONS:
        if os.path.isfile(base + ext):
            return base + ext
    if not os.path.isdir(voc12_root):
        raise FileNotFoundError(f"data folder {voc12_root} does not exist (--voc12_root)")
    raise FileNotFoundError(
        f"image {name!r} not found: no {base}{{{','.join(IMAGE_EXTENSIONS)}}} (is --voc12_root right?)")


def mask_path(voc12_root: str, name: str) -> str:
    return os.path.join(voc12_root, MASK_DIR, f"{name}.png")


def classes_json_path(voc12_root: str) -> str:
    return os.path.join(voc12_root, "classes.json")


def cls_labels_path(voc12_root: str, override: str | None = None) -> str:
    return override if override else os.path.join(voc12_root, "cls_labels.npy")


def cam_path(cam_out_dir: str, name: str) -> str:
    return os.path.join(cam_out_dir, f"{name}.npz")


def ir_label_path(ir_label_out_dir: str, name: str) -> str:
    return os.path.join(ir_label_out_dir, f"{name}.png")


def sem_seg_path(sem_seg_out_dir: str, name: str) -> str:
    return os.path.join(sem_seg_out_dir, f"{name}.png")


def ins_seg_path(ins_seg_out_dir: str, name: str) -> str:
    return os.path.join(ins_seg_out_dir, f"{name}.npz")


def seg_pred_path(seg_out_dir: str, name: str) -> str:
    return os.path.join(seg_out_dir, f"{name}.png")


def overlay_path(out_dir: str, name: str) -> str:
    return os.path.join(out_dir, "overlays", f"{name}.png")


def eval_json_path(out_dir: str, pass_name: str) -> str:
    """``eval_cam.json``, ``eval_sem_seg.json``, ... inside the folder that was evaluated."""
    return os.path.join(out_dir, f"{pass_name}.json")


def args_json_path(out_dir: str, pass_name: str) -> str:
    return os.path.join(out_dir, f"args_{pass_name}.json")


def checkpoint_timings_path(weights_path: str) -> str:
    """``<weights>.timings.json``: seconds per saved epoch of a training pass, kept out of the checkpoint itself so
    that the same seed gives a byte-identical checkpoint."""
    return f"{weights_path}.timings.json"


def irn_boundary_overlay_path(irn_weights_name: str, name: str) -> str:
    """Image | boundary map picture written after IRN training, next to the weights."""
    return os.path.join(os.path.dirname(irn_weights_name), "irn_boundary_overlays", f"{name}.png")


def aff_overlay_path(aff_weights_name: str, name: str) -> str:
    """Image | affinity edge map picture written after AffinityNet training (step/train_aff.py), next to the weights."""
    return os.path.join(os.path.dirname(aff_weights_name), "aff_overlays", f"{name}.png")


# --- segmentation model outputs (step/eval_seg.py, step/predict.py) -------------------------------------------------
#   <seg_out_dir>/<name>.png                 uint8 predicted class index of a data-set image (seg_pred_path)
#   <seg_out_dir>/eval_seg.json              {"miou", "iou", "precision", "recall", "f1": {class: value}, ...}
#   <seg_out_dir>/<stem>_classes.tif|png     uint8 class index of a scene (GeoTIFF in → GeoTIFF out, same CRS/transform)
#   <seg_out_dir>/<stem>_overlay.png         RGB colour overlay, long side at most ~4000 px
#   <seg_out_dir>/<stem>_buildings.geojson   building footprints in map coordinates: properties class, area_m2 (or
#                                            area_px), "crs" member when the CRS is known
#   <seg_out_dir>/<stem>_buildings_pixels.geojson  the same in pixel coordinates (x = column, y = row), for a scene
#                                            without georeference (no GeoTIFF tags, world file or --predict_transform)
#   <seg_out_dir>/<stem>_classes.<world ext> the input's world file copied next to a PNG class raster (.pgw, .jgw, ...)

def scene_classes_path(seg_out_dir: str, stem: str, tiff: bool) -> str:
    """Class raster of a mapped scene: GeoTIFF for (Geo)TIFF input (``tiff=True``), PNG otherwise."""
    return os.path.join(seg_out_dir, f"{stem}_classes.{'tif' if tiff else 'png'}")


def scene_overlay_path(seg_out_dir: str, stem: str) -> str:
    return os.path.join(seg_out_dir, f"{stem}_overlay.png")


def scene_footprints_path(seg_out_dir: str, stem: str, pixels: bool = False) -> str:
    """Footprints of a mapped scene; ``pixels=True``: in pixel coordinates, and the name says so."""
    return os.path.join(seg_out_dir, f"{stem}_buildings{'_pixels' if pixels else ''}.geojson")


def scene_outputs(seg_out_dir: str, stem: str) -> list[str]:
    """Every file predict may have written for the scene ``stem`` (to remove maps made by other weights)."""
    names = [f"{stem}_classes.tif", f"{stem}_classes.png", f"{stem}_overlay.png", f"{stem}_buildings.geojson",
             f"{stem}_buildings_pixels.geojson"] + [f"{stem}_classes{ext}" for ext in (".pgw", ".wld", ".prj")]
    return [os.path.join(seg_out_dir, n) for n in names]


# --- active learning and semi-supervised training (step/select_tiles.py, step/train_semi.py) -------------------------
#   <al_out_list>                      the chosen names, one per line (default cdy12/al_<strategy>_<ratio>.txt)
#   <al_out_list without .txt>.json    {"strategy", "model", "ratio", "num_pool", "num_selected", "selected",
#                                       "scores": {name: uncertainty in [0, 1]} (absent for random), ...}
#   --semi_weights_name                a train_seg-format checkpoint (kind "seg"), loadable by eval_seg / predict

def al_list_path(strategy: str, ratio: float, folder: str = "cdy12") -> str:
    """Default list of actively (or randomly) chosen tiles: ``<folder>/al_<strategy>_<ratio>.txt``."""
    return os.path.join(folder, f"al_{strategy}_{ratio:g}.txt")


def al_scores_path(list_path: str) -> str:
    """The JSON of scores next to a chosen list: the list's path with ``.json`` for its extension."""
    return os.path.splitext(list_path)[0] + ".json"


def rw_scores_dir(sem_seg_out_dir: str) -> str:
    """``<sem_seg_out_dir>/rw``: the random walk's normalised scores in the CAM artifact format (written under
    ``--sem_seg_save_rw``), so that ``eval_cam --cam_out_dir <sem_seg_out_dir>/rw`` sweeps their threshold."""
    return os.path.join(sem_seg_out_dir, "rw")
