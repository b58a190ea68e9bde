"""Pass cam_to_ir_label: inter-pixel relation (IR) labels from CAMs, refined by a dense CRF (IRN step 5).

Processes ``--train_list`` (as the seed README's step 5 does): these are the images IRN trains on in the next pass.

Reads:  <cam_out_dir>/<name>.npz (``keys``, ``high_res``), <voc12_root>/JPEGImages/<name>.*
With background (``--background threshold``) a pixel is a confident class where its strongest CAM exceeds
--conf_fg_thres, confident background where no CAM exceeds --conf_bg_thres (both after the CRF), unsure between.
Background-free data (``--background none``, or ``auto`` with ``background_free`` in classes.json) has no background
to be confident about: a pixel is its best class where that class's CAM beats the second-best present class's by at
least --conf_margin and the CRF keeps it; unsure otherwise. The classes are compared as eval_cam and make_sem_seg
compare them (--class_scale; misc.cam.comparable_scores keeps the scores in [0, 1]). An image with a single present class is that class
everywhere (its tags say nothing else is there).

Writes: <ir_label_out_dir>/<name>.png  uint8: 1..K confident class, 0 confident background, 255 unsure;
        <ir_label_out_dir>/overlays/<name>.png (image | CAM | IR label) for the first --cam_num_overlays names;
        <ir_label_out_dir>/args_cam_to_ir_label.json.
Items whose PNG exists are skipped unless --overwrite; ranks of torchrun share the list (misc.dist.shard), and
--num_workers > 1 runs the CRFs (the slow, CPU-only part) in that many processes.
"""
from __future__ import annotations

import functools
import logging

import numpy as np

from data.labels import background_free, load_class_names, overlay_sample, read_checked_list
from misc import artifacts, dist
from misc.cam import comparable_scores
from misc.crf import crf_inference_label
from misc.io import load_npz, save_png
from misc.item_pass import for_each_item, open_item_pass
from misc.visualize import cam_overlay, colorize_label, legend_entries, side_by_side

log = logging.getLogger(__name__)
PASS_NAME = "cam_to_ir_label"


def confident_label(high_res: np.ndarray, keys: np.ndarray, threshold: float) -> np.ndarray:
    """Index map (H, W) int64 into ``[background, keys...]``: 0 where every CAM is <= ``threshold``, else 1 + the
    position of the strongest CAM. A CAM exactly at the threshold is not enough (the background channel comes first
    and wins the tie)."""
    h, w = high_res.shape[-2:]
    scores = np.concatenate([np.full((1, h, w), threshold, np.float32), high_res.astype(np.float32)], axis=0)
    return np.argmax(scores, axis=0)


def combine_confident(fg_conf: np.ndarray, bg_conf: np.ndarray) -> np.ndarray:
    """IR label (H, W) uint8 from two class maps (0 background, 1..K): the high-threshold map's class where it says a
    class, 0 where even the low-threshold map says background, 255 (unsure) in between."""
    label = fg_conf.astype(np.uint8)
    label[fg_conf == 0] = artifacts.IGNORE_INDEX
    label[(fg_conf == 0) & (bg_conf == 0)] = 0
    return label


def make_ir_label(image: np.ndarray, high_res: np.ndarray, keys: np.ndarray, *, conf_fg_thres: float,
                  conf_bg_thres: float, use_crf: bool = True, **crf_kwargs) -> np.ndarray:
    """IR label of one image, as IRN's cam_to_ir_label.

    Args:
        image: uint8 (H, W, 3).
        high_res: (k, H, W) float max-normalised CAMs of the present classes ``keys`` ((k,) 0-based).
        conf_fg_thres: a pixel is confident foreground where its strongest CAM exceeds this (after the CRF).
        conf_bg_thres: a pixel is confident background where no CAM exceeds this (after the CRF).
        use_crf: refine both maps with misc.crf.crf_inference_label (``crf_kwargs`` go to it).
    Returns:
        (H, W) uint8: 1..K confident class, 0 confident background, 255 unsure.
    """
    if conf_bg_thres > conf_fg_thres:
        raise ValueError(f"--conf_bg_thres ({conf_bg_thres}) must not exceed --conf_fg_thres ({conf_fg_thres})")
    if high_res.shape[-2:] != image.shape[:2] or high_res.shape[0] != len(keys):
        raise ValueError(f"CAM {high_res.shape} does not fit the image {image.shape[:2]} and {len(keys)} keys")
    lookup = np.concatenate([[0], np.asarray(keys, np.int64) + 1]).astype(np.uint8)  # index → class
    maps = []
    for threshold in (conf_fg_thres, conf_bg_thres):
        index = confident_label(high_res, keys, threshold)
        if use_crf and len(keys):
            index = crf_inference_label(image, index, n_labels=len(keys) + 1, **crf_kwargs)
        maps.append(lookup[index])
    return combine_confident(*maps)


def make_ir_label_background_free(image: np.ndarray, high_res: np.ndarray, keys: np.ndarray, *, conf_margin: float,
                                  class_scale: str = "max", use_crf: bool = True, **crf_kwargs) -> np.ndarray:
    """IR label of one image of background-free data: the best present class where it is clear, else unsure.

    Args:
        image: uint8 (H, W, 3).
        high_res: (k, H, W) float max-normalised CAMs of the present classes ``keys`` ((k,) 0-based).
        conf_margin: a pixel is confident where (best CAM - second-best CAM) >= this; with k = 1 every pixel is.
        class_scale: how the classes are compared (misc.cam.comparable_scores), as in eval_cam and make_sem_seg.
        use_crf: also require that misc.crf.crf_inference_label (``crf_kwargs`` go to it) keeps the argmax class.
    Returns:
        (H, W) uint8: 1..K confident class, 255 unsure (never 0: there is no background).
    """
    if not 0.0 <= conf_margin <= 1.0:
        raise ValueError(f"--conf_margin must be in [0, 1], got {conf_margin}")
    if high_res.shape[-2:] != image.shape[:2] or high_res.shape[0] != len(keys):
        raise ValueError(f"CAM {high_res.shape} does not fit the image {image.shape[:2]} and {len(keys)} keys")
    h, w = image.shape[:2]
    label = np.full((h, w), artifacts.IGNORE_INDEX, np.uint8)
    if len(keys) == 0:
        return label  # no tag at all: nothing is known
    lookup = (np.asarray(keys, np.int64) + 1).astype(np.uint8)  # index → class
    if len(keys) == 1:
        label[:] = lookup[0]
        return label
    scores = comparable_scores(high_res, class_scale)
    index = np.argmax(scores, axis=0)  # (H, W) into keys
    top2 = np.partition(scores, -2, axis=0)[-2:]  # (2, H, W): second best, best
    confident = (top2[1] - top2[0]) >= conf_margin
    if use_crf:
        confident &= crf_inference_label(image, index, n_labels=len(keys), **crf_kwargs) == index
    label[confident] = lookup[index[confident]]
    return label


def write_ir_overlay(out_dir: str, name: str, image: np.ndarray, high_res: np.ndarray, label: np.ndarray,
                     class_names: list[str] | None = None) -> None:
    """Image | strongest CAM | IR label in colour (black = background, grey = unsure), titled, with a legend."""
    strongest = high_res.max(axis=0) if len(high_res) else np.zeros(image.shape[:2], np.float32)
    legend = legend_entries(class_names, unsure=True, background=True) if class_names else None
    save_png(artifacts.overlay_path(out_dir, name),
             side_by_side([image, cam_overlay(image, strongest), colorize_label(label)],
                          titles=["image", "strongest CAM", "IR label"], legend=legend))


def _process(cfg: dict, name: str) -> None:
    """One image: read its CAM and image, write its IR label (and overlay). Runs in worker processes too."""
    from data.raster_io import read_image

    cam = load_npz(artifacts.cam_path(cfg["cam_out_dir"], name))
    image = read_image(artifacts.image_path(cfg["voc12_root"], name))
    if cam["high_res"].shape[-2:] != image.shape[:2]:
        raise ValueError(f"{artifacts.cam_path(cfg['cam_out_dir'], name)}: CAM is {cam['high_res'].shape[-2:]} but "
                         f"the image is {image.shape[:2]} (stale --cam_out_dir?)")
    if cfg["background_free"]:
        label = make_ir_label_background_free(image, cam["high_res"], cam["keys"], conf_margin=cfg["conf_margin"],
                                               class_scale=cfg["class_scale"])
    else:
        label = make_ir_label(image, cam["high_res"], cam["keys"], conf_fg_thres=cfg["conf_fg_thres"],
                              conf_bg_thres=cfg["conf_bg_thres"])
    if name in cfg["overlay"]:  # before the label: the label marks the item done
        write_ir_overlay(cfg["ir_label_out_dir"], name, image, cam["high_res"], label, cfg.get("class_names"))
    save_png(artifacts.ir_label_path(cfg["ir_label_out_dir"], name), label)


def run(args) -> None:
    names = read_checked_list(args.train_list, args.voc12_root, skip_bad=args.skip_bad)
    out_dir = args.ir_label_out_dir
    if args.conf_bg_thres > args.conf_fg_thres:
        raise ValueError(f"--conf_bg_thres ({args.conf_bg_thres}) must not exceed --conf_fg_thres "
                         f"({args.conf_fg_thres})")
    todo = open_item_pass(args, PASS_NAME, out_dir, names, lambda n: artifacts.ir_label_path(out_dir, n))
    mine = dist.shard(names)
    no_background = background_free(args.voc12_root, args.background)
    rule = (f"background-free, margin {args.conf_margin:.2f} on {args.class_scale}-scaled maps" if no_background
            else f"fg {args.conf_fg_thres:.2f} / bg {args.conf_bg_thres:.2f}")
    log.info("%s: %d images of --train_list to do (%d already done), %s", PASS_NAME, len(todo),
             len(mine) - len(todo), rule)
    cfg = {"cam_out_dir": args.cam_out_dir, "voc12_root": args.voc12_root, "ir_label_out_dir": out_dir,
           "conf_fg_thres": args.conf_fg_thres, "conf_bg_thres": args.conf_bg_thres,
           "background_free": no_background, "conf_margin": args.conf_margin,
           "class_scale": args.class_scale,
           "overlay": frozenset(overlay_sample(
               names, artifacts.cls_labels_path(args.voc12_root, args.cls_labels_path), args.cam_num_overlays)),
           "class_names": load_class_names(args.voc12_root)}
    # --num_workers > 1: the CRF (single-threaded C++) of that many images at once, one process each
    for_each_item(todo, functools.partial(_process, cfg), pass_name=PASS_NAME, skip_bad=args.skip_bad,
                  workers=args.num_workers)
    log.info("%s: IR labels in %s", PASS_NAME, out_dir)
