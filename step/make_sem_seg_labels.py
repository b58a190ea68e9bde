"""Pass make_sem_seg: pseudo masks by a random walk of the CAMs over IRN's boundary map (IRN step 7).

For each image of --infer_list: the trained IRN predicts a stride-4 boundary map (image and flip averaged), the
stride-4 CAMs (raised to --sem_seg_cam_power, as AdvCAM does) walk ``2 ** --exp_times`` steps over the affinities
``(1 - boundary) ** --beta`` (misc/random_walk.py), are upsampled ×4, divided by their maximum (--rw_normalize max,
IRN's way; ``none`` keeps the CAMs' scale, ``local`` divides by the walk of a map of ones) and compared with a constant background score --sem_seg_bg_thres; the
argmax is the pseudo mask. An image without a present class is all
background and costs no network call. Background-free data (``--background none``, or ``auto`` with
``background_free`` in classes.json) has no background score: each pixel takes its best walked present class.

With --rw_method affinitynet (AffinityNet, Ahn & Kwak 2018, as SBNet uses it) the network is the embedding trained by
train_aff (--aff_weights_name) and the walk's weights are ``a_ij ** --beta`` with ``a_ij = exp(-mean_c |f_i - f_j|)``
(misc/affinity.py; AffinityNet's own beta is 8, pass --beta 8), over the same radius-5 neighbourhood, with the same
number of steps and the same thresholding; the CAMs are not masked by a boundary map. The overlay's boundary panel
then shows where the embedding changes (1 - mean affinity to the nearest neighbours).

With --rw_method none there is no walk and no network: the pseudo mask is the label eval_cam scores, from the
full-resolution CAMs (``high_res``): the argmax of the --class_scale scores on background-free data, else the
strongest present class above --sem_seg_bg_thres. It is the baseline the walk has to beat, and the labels to
train the segmenter on when it does not.

Reads:  --irn_weights_name (irn) or --aff_weights_name (affinitynet), <cam_out_dir>/<name>.npz (``keys``, ``cam``),
        <voc12_root>/JPEGImages/<name>.*,
        <voc12_root>/SegmentationClassAug/<name>.png (overlays only, when present)
Writes: <sem_seg_out_dir>/<name>.png  uint8: 0 background, 1..K classes;
        <sem_seg_out_dir>/overlays/<name>.png (image | boundary | pseudo mask | ground truth) for the first
        --cam_num_overlays names; <sem_seg_out_dir>/args_make_sem_seg.json.
Items whose PNG exists are skipped unless --overwrite; torchrun ranks share the list (misc.dist.shard).
"""
from __future__ import annotations

import logging
import os

import numpy as np
import torch
import torch.nn.functional as F

from data.labels import background_free, load_class_names, overlay_sample, read_checked_list
from misc import artifacts, dist
from misc.io import load_npz, load_png, save_npz, save_png
from misc.item_pass import for_each_item, open_item_pass
from misc.robust import BadItems
from misc.cam import cams_to_label, scale_classes
from misc.affinity import affinity_edge_map, affinity_random_walk
from misc.random_walk import label_from_random_walk, random_walk, random_walk_scores, stride_size
from misc.visualize import label_overlay, legend_entries, side_by_side

log = logging.getLogger(__name__)
PASS_NAME = "make_sem_seg"
RW_RADIUS = 5  # IRN: neighbours within 5 stride-4 pixels
# Maps larger than this (stride-4 pixels per side, i.e. 4096-pixel images) are walked in windows with a halo, which
# bounds memory on whole scenes; patches of the usual sizes are walked in one piece.
RW_TILE_SIZE = 1024
RW_TILE_HALO = 128
RW_NORMALIZATIONS = ("max", "none", "local")


def _walk_to_mask(walk, cams: torch.Tensor, keys: np.ndarray, image_hw: tuple[int, int], *, bg_threshold: float,
                  cam_power: float, normalization: str, class_scale: str = "max", stride: int = 4
                  ) -> tuple[np.ndarray, torch.Tensor]:
    """Walk the CAMs with ``walk`` ((C, h, w) → (C, h, w)) and threshold them into a pseudo mask.

    normalization: what the walked scores are divided by before the background threshold: ``max`` their overall
    maximum (IRN), ``none`` nothing (the CAMs' scale), ``local`` the same walk of a map of ones, which makes each score
    the weighted mean CAM of the region the walk reached from that pixel (for IRN's walk this also undoes the dimming
    that its ``(1 - boundary)`` seed mask causes near edges).
    Returns the (H, W) uint8 mask and the walked maps (k, h, w), already divided by the local mass for ``local``.
    """
    if normalization not in RW_NORMALIZATIONS:
        raise ValueError(f"normalization {normalization!r}: choose one of {RW_NORMALIZATIONS}")
    seeds = cams.float().clamp_min(0).pow(cam_power)
    if normalization == "local":
        walked = walk(torch.cat([seeds, torch.ones_like(seeds[:1])]))  # (k + 1, h, w)
        walked = walked[:-1] / walked[-1:].clamp_min(1e-6)
    else:
        walked = walk(seeds)
    # background-free (bg_threshold -inf): the argmax compares the classes after --class_scale
    scored = scale_classes(walked, class_scale) if bg_threshold == float("-inf") else walked
    label = label_from_random_walk(scored, keys, image_hw, bg_threshold=bg_threshold, stride=stride,
                                   normalize=normalization == "max")
    return label, walked


def pseudo_mask(cams: torch.Tensor, keys: np.ndarray, boundary: torch.Tensor, image_hw: tuple[int, int], *,
                bg_threshold: float, beta: float, exp_times: int, cam_power: float = 1.0,
                radius: int = RW_RADIUS, normalization: str = "max", class_scale: str = "max", stride: int = 4
                ) -> tuple[np.ndarray, torch.Tensor]:
    """Pseudo mask of one image from its stride-``stride`` CAMs and boundary map (4; 2 for a stride-2 IRN).

    Args:
        cams: (k, ceil(H/4), ceil(W/4)) float max-normalised CAMs of the present classes ``keys``.
        boundary: (ceil(H/4), ceil(W/4)) boundary probability in [0, 1].
        normalization: ``max`` | ``none`` | ``local``, see :func:`_walk_to_mask`.
    Returns:
        (H, W) uint8: 0 background, 1..K classes; and the walked maps (k, ceil(H/4), ceil(W/4)).
    """
    def walk(seeds):
        return random_walk(seeds, boundary, beta=beta, exp_times=exp_times, radius=radius,
                           tile_size=RW_TILE_SIZE, tile_halo=RW_TILE_HALO)

    return _walk_to_mask(walk, cams, keys, image_hw, bg_threshold=bg_threshold, cam_power=cam_power,
                         normalization=normalization, class_scale=class_scale, stride=stride)


def cams_on_grid(cams: torch.Tensor, stride: int, size: tuple[int, int]) -> torch.Tensor:
    """Stride-4 CAMs (k, h4, w4) on the stride-``stride`` grid ``size`` (bilinear, cell centres aligned)."""
    if stride == 4:
        return cams
    up = F.interpolate(cams[None].float(), scale_factor=4 // stride, mode="bilinear", align_corners=False)[0]
    return up[:, : size[0], : size[1]]


def affinity_pseudo_mask(cams: torch.Tensor, keys: np.ndarray, features: torch.Tensor, image_hw: tuple[int, int], *,
                         bg_threshold: float, beta: float, exp_times: int, cam_power: float = 1.0,
                         radius: int = RW_RADIUS, normalization: str = "max", class_scale: str = "max"
                         ) -> tuple[np.ndarray, torch.Tensor]:
    """Pseudo mask of one image from its stride-4 CAMs and AffinityNet embedding.

    Args:
        cams: (k, ceil(H/4), ceil(W/4)) float max-normalised CAMs of the present classes ``keys``.
        features: (C, ceil(H/4), ceil(W/4)) AffinityNet embedding.
        normalization: ``max`` | ``none`` | ``local``, see :func:`_walk_to_mask`.
    Returns:
        (H, W) uint8: 0 background, 1..K classes; and the walked maps (k, ceil(H/4), ceil(W/4)).
    """
    def walk(seeds):
        return affinity_random_walk(seeds, features, beta=beta, exp_times=exp_times, radius=radius)

    return _walk_to_mask(walk, cams, keys, image_hw, bg_threshold=bg_threshold, cam_power=cam_power,
                         normalization=normalization, class_scale=class_scale)


def cam_label(cam: dict, keys: np.ndarray, image_hw: tuple[int, int], *, bg_threshold: float, class_scale: str,
              cam_file: str = "CAM") -> np.ndarray:
    """--rw_method none: the (H, W) uint8 label of the full-resolution CAMs, as eval_cam scores them.

    Background-free (bg_threshold -inf): the best present class after --class_scale; otherwise the strongest present
    class where it reaches ``bg_threshold``, background (0) elsewhere.
    """
    high = cam["high_res"]  # (k, H, W)
    if high.shape != (len(keys),) + tuple(image_hw):
        raise ValueError(f"{cam_file}: high_res CAM is {high.shape}, expected {(len(keys),) + tuple(image_hw)} "
                         "(stale --cam_out_dir?)")
    scored = scale_classes(high, class_scale) if bg_threshold == float("-inf") else high
    return cams_to_label(scored, keys, bg_threshold)


def write_sem_seg_overlay(out_dir: str, name: str, image: np.ndarray, boundary: np.ndarray | None,
                          label: np.ndarray, gt: np.ndarray | None, class_names: list[str] | None = None,
                          stride: int = 4) -> None:
    """Image | boundary map (white = boundary, on the grid of ``stride``) | pseudo mask | ground truth (when there is
    one), titled, with a legend of the classes (``class_names``: ["background", fg_1, ...])."""
    h, w = image.shape[:2]
    if boundary is None:
        boundary_panel = np.zeros((h, w), np.uint8)
    else:
        up = F.interpolate(torch.from_numpy(boundary)[None, None].float(), scale_factor=stride, mode="bilinear",
                           align_corners=False)[0, 0, :h, :w]
        boundary_panel = (up.clamp(0, 1) * 255).round().byte().numpy()
    panels = [image, boundary_panel, label_overlay(image, label)]
    titles = ["image", "boundary map", "pseudo mask"]
    if gt is not None:
        panels.append(label_overlay(image, gt))
        titles.append("ground truth")
    legend = legend_entries(class_names) if class_names else None
    save_png(artifacts.overlay_path(out_dir, name), side_by_side(panels, titles=titles, legend=legend))


def _load_boundary_model(weights_path: str, device: torch.device):
    from net.zoo import load_model

    return load_model(weights_path, "irn", device)[0]


def _load_affinity_model(weights_path: str, device: torch.device):
    from net.zoo import load_model

    return load_model(weights_path, "aff", device)[0]


def run(args) -> None:
    from data.raster_io import read_image

    if args.rw_method not in ("irn", "affinitynet", "none"):
        raise ValueError(f"--rw_method {args.rw_method!r}: choose 'irn', 'affinitynet' or 'none'")
    if args.rw_normalize not in RW_NORMALIZATIONS:
        raise ValueError(f"--rw_normalize {args.rw_normalize!r}: choose one of {RW_NORMALIZATIONS}")
    normalize = args.rw_normalize == "max"  # the saved walk scores, like the masks, are max-divided only for "max"
    device = torch.device(args.device)
    names = read_checked_list(args.infer_list, args.voc12_root, skip_bad=args.skip_bad)
    out_dir = args.sem_seg_out_dir
    todo = open_item_pass(args, PASS_NAME, out_dir, names, lambda n: artifacts.sem_seg_path(out_dir, n))
    mine = dist.shard(names)
    overlay_names = overlay_sample(names, artifacts.cls_labels_path(args.voc12_root, args.cls_labels_path),
                                   args.cam_num_overlays)
    log.info("%s: %d images to do (%d already done), %s walk, beta %s, exp_times %d, bg threshold %.2f, "
             "normalisation %s", PASS_NAME, len(todo), len(mine) - len(todo), args.rw_method, args.beta, args.exp_times,
             args.sem_seg_bg_thres, args.rw_normalize)
    # background-free: a background score of -inf never wins, so the argmax runs over the present classes only
    bg_threshold = float("-inf") if background_free(args.voc12_root, args.background) else args.sem_seg_bg_thres
    if bg_threshold == float("-inf"):
        log.info("%s: background-free data: each pixel takes its best walked present class", PASS_NAME)
    if args.sem_seg_save_rw and args.rw_method == "none":
        log.warning("%s: --sem_seg_save_rw is ignored with --rw_method none (there is no walk; run eval_cam on "
                    "--cam_out_dir to sweep the CAMs' threshold)", PASS_NAME)
    model = []  # the network, loaded on the first image with a present class

    def one(name: str) -> None:
        cam_file = artifacts.cam_path(args.cam_out_dir, name)
        cam = load_npz(cam_file)
        keys = cam["keys"]
        image = read_image(artifacts.image_path(args.voc12_root, name))
        h, w = image.shape[:2]
        if cam["cam"].shape != (len(keys),) + stride_size(h, w):
            raise ValueError(f"{cam_file}: stride-4 CAM is {cam['cam'].shape}, expected "
                             f"{(len(keys),) + stride_size(h, w)} for the {h}x{w} image (stale --cam_out_dir?)")
        boundary, stride = None, 4  # stride: the boundary map's grid (2 for a stride-2 IRN)
        walked = torch.zeros((0,) + stride_size(h, w))
        if len(keys) == 0:
            label = np.zeros((h, w), np.uint8)
        elif args.rw_method == "none":
            label = cam_label(cam, keys, (h, w), bg_threshold=bg_threshold, class_scale=args.class_scale,
                              cam_file=cam_file)
        else:
            if not model:
                with BadItems.whole_pass():  # a wrong/missing weights file stops the pass, whatever --skip_bad says
                    model.append(_load_affinity_model(args.aff_weights_name, device)
                                 if args.rw_method == "affinitynet"
                                 else _load_boundary_model(args.irn_weights_name, device))
            x = torch.from_numpy(image).to(device).permute(2, 0, 1).float().div(255)[None]  # (1, 3, H, W)
            if args.rw_method == "affinitynet":
                features = model[0](x)[0]  # (C, ceil(H/4), ceil(W/4))
                if features.shape[-2:] != stride_size(h, w):
                    raise ValueError(f"embedding {tuple(features.shape[-2:])} != stride-4 size "
                                     f"{stride_size(h, w)}")
                label, walked = affinity_pseudo_mask(
                    torch.from_numpy(cam["cam"]).to(features.device), keys, features, (h, w),
                    bg_threshold=bg_threshold, beta=args.beta, exp_times=args.exp_times,
                    cam_power=args.sem_seg_cam_power, normalization=args.rw_normalize,
                    class_scale=args.class_scale)
                boundary = affinity_edge_map(features).cpu().numpy()
            else:
                stride = getattr(model[0], "stride", 4)  # --irn_stride of the trained IRN
                boundary_t = model[0].boundary_map(x)[0, 0]  # (ceil(H/s), ceil(W/s))
                if boundary_t.shape != stride_size(h, w, stride):
                    raise ValueError(f"boundary map {tuple(boundary_t.shape)} != stride-{stride} size "
                                     f"{stride_size(h, w, stride)}")
                cams_t = cams_on_grid(torch.from_numpy(cam["cam"]).to(boundary_t.device), stride,
                                      stride_size(h, w, stride))
                label, walked = pseudo_mask(cams_t, keys, boundary_t,
                                    (h, w), bg_threshold=bg_threshold, beta=args.beta,
                                    exp_times=args.exp_times, cam_power=args.sem_seg_cam_power,
                                    normalization=args.rw_normalize, class_scale=args.class_scale, stride=stride)
                if stride != 4:  # the saved walk scores stay on the CAMs' stride-4 grid
                    walked = F.avg_pool2d(walked[None].float(), 4 // stride, ceil_mode=True)[0]
                boundary = boundary_t.float().cpu().numpy()
        if name in overlay_names:  # before the pseudo mask: the mask marks the item done
            gt_path = artifacts.mask_path(args.voc12_root, name)
            gt = load_png(gt_path) if os.path.isfile(gt_path) else None
            gt = gt if gt is not None and gt.shape == (h, w) else None  # a colour or misfit mask is not drawn
            write_sem_seg_overlay(out_dir, name, image, boundary, label, gt,
                                  class_names=load_class_names(args.voc12_root), stride=stride)
        if args.sem_seg_save_rw and args.rw_method != "none":
            # CAM-format scores of the walk, so eval_cam can sweep the background threshold on them
            scale = 1.0 / max(float(walked.max()), 1e-5) if walked.numel() and normalize else 1.0
            save_npz(artifacts.cam_path(artifacts.rw_scores_dir(out_dir), name), keys=keys.astype(np.int64),
                     cam=(walked.float() * scale).cpu().numpy(),
                     high_res=random_walk_scores(walked, (h, w), normalize=normalize).cpu().numpy()
                     if len(keys)
                     else np.zeros((0, h, w), np.float32))
        save_png(artifacts.sem_seg_path(out_dir, name), label)

    for_each_item(todo, one, pass_name=PASS_NAME, skip_bad=args.skip_bad)
    log.info("%s: pseudo masks in %s", PASS_NAME, out_dir)
