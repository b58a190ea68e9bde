"""Pass select_tiles: choose the tiles to label by the model's uncertainty (ALS4GAN's active learner) or at random.

Reads:  --al_pool_list (default --train_list), <voc12_root>/JPEGImages, and for --al_model cam the CAM classifier
        --cam_weights_name (image-level sigmoids), for --al_model seg the segmenter --seg_weights_name (pixel softmax
        by sliding windows --predict_window/--predict_overlap, averaged per tile); --al_strategy random reads no model.
Writes: --al_out_list (default cdy12/al_<strategy>_<ratio>.txt): the round(--al_ratio × N) chosen names, most
        uncertain first (random: pool order); next to it the same path with .json = {"strategy", "model", "weights",
        "ratio", "seed", "pool_list", "num_pool", "num_selected", "selected", "scores": {name: score}} with scores in
        [0, 1] (see misc/active_learning.py; no scores for random), and args_select_tiles.json.

ALS4GAN queries its classifier once per round with entropy or margin sampling; here one round picks the whole
labelled budget from a classifier that is already trained (the CAM classifier of the weakly supervised pipeline),
so no extra network is trained for the selection.
"""
from __future__ import annotations

import logging
import os

import numpy as np
import torch

from data.labels import load_class_names, read_checked_list
from data.raster_io import read_image
from misc import active_learning, artifacts
from misc.inference_engine import engine_model_fn
from misc.io import save_args, save_json, save_text_lines
from misc.logutils import progress
from misc.sliding_window import predict_sliding
from net.zoo import load_model

log = logging.getLogger(__name__)


def cam_scores(names: list[str], voc12_root: str, weights: str, strategy: str, device: torch.device) -> np.ndarray:
    """(N,) uncertainty of the CAM classifier's image-level sigmoids, binary entropy/margin averaged over classes."""
    model, _ = load_model(weights, "cam", device)
    scores = np.zeros(len(names), np.float64)
    with torch.inference_mode():
        for i, name in enumerate(progress(names, desc="select_tiles (cam)")):
            rgb = read_image(artifacts.image_path(voc12_root, name))  # (H, W, 3) uint8
            x = torch.from_numpy(rgb).to(device).permute(2, 0, 1)[None].float().div(255)  # (1, 3, H, W)
            probs = torch.sigmoid(model(x).float())  # (1, K)
            scores[i] = float(active_learning.sigmoid_tile_score(probs, strategy)[0])
    return scores


def seg_scores(names: list[str], args, strategy: str, device: torch.device) -> np.ndarray:
    """(N,) uncertainty of the segmenter's pixel softmax, averaged over each tile's pixels."""
    model, ckpt = load_model(args.seg_weights_name, "seg", device)
    model_fn = engine_model_fn(model, "exact")
    num_classes = int(ckpt["num_classes"])
    scores = np.zeros(len(names), np.float64)
    with torch.inference_mode():
        for i, name in enumerate(progress(names, desc="select_tiles (seg)")):
            rgb = read_image(artifacts.image_path(args.voc12_root, name))
            probs = predict_sliding(model_fn, torch.from_numpy(rgb).permute(2, 0, 1), window=args.predict_window,
                                    overlap=args.predict_overlap, num_classes=num_classes,
                                    batch_size=args.predict_batch_size)  # (K, H, W)
            scores[i] = float(active_learning.softmax_tile_score(probs, strategy))
    return scores


def _num_classes(voc12_root: str) -> int | None:
    """Classes of the data set incl. background, or None without a readable classes.json (only used for advice)."""
    try:
        return len(load_class_names(voc12_root))
    except (OSError, ValueError):
        return None


def run(args) -> None:
    device = torch.device(args.device)
    pool_list = args.al_pool_list or args.train_list
    names = read_checked_list(pool_list, args.voc12_root, skip_bad=args.skip_bad)
    out_list = args.al_out_list or artifacts.al_list_path(args.al_strategy, args.al_ratio)
    count = active_learning.num_to_select(len(names), args.al_ratio)
    log.info("select_tiles: %d of %d tiles of %s by %s%s", count, len(names), pool_list, args.al_strategy,
             "" if args.al_strategy == "random" else f" of the {args.al_model} model")

    weights, scores = None, None
    if args.al_strategy == "random":
        selected = active_learning.select_random(names, args.al_ratio, seed=args.seed)
    else:
        if args.al_model == "cam":
            weights = args.cam_weights_name
            scores = cam_scores(names, args.voc12_root, weights, args.al_strategy, device)
            if _num_classes(args.voc12_root) == 2:
                log.warning("select_tiles: with one foreground class the CAM classifier is most unsure about tiles "
                            "with a sliver of it; on Dubai such picks held 1.5-2 % building pixels and taught a "
                            "segmenter nothing (BENCHMARKS.md). Consider --al_model seg or --al_strategy random.")
        else:
            weights = args.seg_weights_name
            scores = seg_scores(names, args, args.al_strategy, device)
        selected = active_learning.select_most_uncertain(names, scores, args.al_ratio)

    save_text_lines(out_list, selected)
    report = {"strategy": args.al_strategy, "model": None if scores is None else args.al_model, "weights": weights,
              "ratio": args.al_ratio, "seed": args.seed, "pool_list": pool_list, "num_pool": len(names),
              "num_selected": len(selected), "selected": selected}
    if scores is not None:
        report["scores"] = {name: float(s) for name, s in zip(names, scores)}
        chosen = np.asarray([report["scores"][n] for n in selected])
        log.info("select_tiles: chosen scores %.3f..%.3f (pool mean %.3f)", chosen.min(), chosen.max(), scores.mean())
    save_json(artifacts.al_scores_path(out_list), report)
    save_args(args, os.path.dirname(os.path.abspath(out_list)), "select_tiles")
    log.info("select_tiles: %d names in %s, scores in %s", len(selected), out_list,
             artifacts.al_scores_path(out_list))
