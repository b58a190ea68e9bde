"""Pass refine_cam: CAMs refined along the image's edges: pixel-adaptive refinement over colour affinities
(``--refine_method par``, misc/par.py) or pooling inside SLIC superpixels (``superpixel``, misc/superpixels.py).

Reads:  <cam_out_dir>/<name>.npz for --infer_list, <voc12_root>/JPEGImages/<name>.*
Writes: <refined_cam_out_dir>/<name>.npz in the same CAM format (``high_res`` refined at full size and max-normalised
        again per class, ``cam`` its stride-4 average), overlays for the first --cam_num_overlays names,
        args_refine_cam.json. Every downstream pass reads the refined folder as it reads make_cam's.
Items whose .npz exists are skipped unless --overwrite; torchrun ranks share the list.
"""
from __future__ import annotations

import logging
import os

import numpy as np
import torch
import torch.nn.functional as F

from data.labels import load_class_names, overlay_sample, read_checked_list
from data.raster_io import read_image
from misc import artifacts, dist
from misc.cam import max_normalize
from misc.cam_maps import write_cam_overlay
from misc.io import load_npz, save_args, save_npz
from misc.item_pass import for_each_item
from misc.par import par_refine
from misc.superpixels import slic, superpixel_pool
from misc.random_walk import stride_size
from misc.robust import prepare_out_dir

log = logging.getLogger(__name__)
PASS_NAME = "refine_cam"


def refine_one(image: np.ndarray, keys: np.ndarray, high_res: np.ndarray, *, num_iter: int,
               dilations: tuple[int, ...], method: str = "par", superpixel_size: int = 16,
               superpixel_compactness: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """(cam (k, ceil(H/4), ceil(W/4)), high_res (k, H, W)) float32 of one image after PAR or superpixel pooling,
    max-normalised."""
    h, w = image.shape[:2]
    if high_res.shape[-2:] != (h, w):
        raise ValueError(f"CAM is {high_res.shape[-2:]} but the image is {(h, w)} (stale --cam_out_dir?)")
    if len(keys) == 0:
        return np.zeros((0,) + stride_size(h, w), np.float32), np.zeros((0, h, w), np.float32)
    if method == "superpixel":
        regions = slic(image, size=superpixel_size, compactness=superpixel_compactness)
        refined = torch.from_numpy(superpixel_pool(high_res, regions))
    elif method == "par":
        rgb = torch.from_numpy(image).permute(2, 0, 1).float().div(255)  # (3, H, W)
        refined = par_refine(rgb, torch.from_numpy(high_res).float(), num_iter=num_iter, dilations=dilations)
    else:
        raise ValueError(f"unknown refine method {method!r} (par, superpixel)")
    refined = max_normalize(refined)  # (k, H, W), each class peaks at 1 again
    strided = F.adaptive_avg_pool2d(refined[None], stride_size(h, w))[0]
    return strided.numpy().astype(np.float32), refined.numpy().astype(np.float32)


def run(args) -> None:
    if not args.refined_cam_out_dir:
        raise ValueError("refine_cam: --refined_cam_out_dir is required (the refined CAMs' folder)")
    if os.path.abspath(args.refined_cam_out_dir) == os.path.abspath(args.cam_out_dir):
        raise ValueError("refine_cam: --refined_cam_out_dir must differ from --cam_out_dir (the input CAMs)")
    names = read_checked_list(args.infer_list, args.voc12_root, skip_bad=args.skip_bad)
    out_dir = args.refined_cam_out_dir
    prepare_out_dir(out_dir)
    if dist.is_main():
        save_args(args, out_dir, PASS_NAME)
    mine = dist.shard(names)
    todo = mine if args.overwrite else [n for n in mine if not os.path.isfile(artifacts.cam_path(out_dir, n))]
    overlays = overlay_sample(names, artifacts.cls_labels_path(args.voc12_root, args.cls_labels_path),
                              args.cam_num_overlays)
    if args.refine_method == "par":
        how = f"PAR, {args.par_num_iter} iterations, dilations {args.par_dilations}"
    else:
        how = f"superpixel pooling, SLIC {args.superpixel_size} px, compactness {args.superpixel_compactness}"
    log.info("%s: %d images to do (%d already done), %s", PASS_NAME, len(todo), len(mine) - len(todo), how)
    dilations = tuple(int(d) for d in args.par_dilations)

    def one(name: str) -> None:
        cam = load_npz(artifacts.cam_path(args.cam_out_dir, name))
        image = read_image(artifacts.image_path(args.voc12_root, name))
        strided, high = refine_one(image, cam["keys"], cam["high_res"], num_iter=args.par_num_iter,
                                   dilations=dilations, method=args.refine_method,
                                   superpixel_size=args.superpixel_size,
                                   superpixel_compactness=args.superpixel_compactness)
        if name in overlays:
            write_cam_overlay(out_dir, name, image, cam["keys"], high, class_names=load_class_names(args.voc12_root))
        save_npz(artifacts.cam_path(out_dir, name), keys=cam["keys"].astype(np.int64), cam=strided, high_res=high)

    for_each_item(todo, one, pass_name=PASS_NAME, skip_bad=args.skip_bad)
    log.info("%s: refined CAMs in %s", PASS_NAME, out_dir)
