"""Pass make_ins_seg: building (class) instances from IRN's displacement field.

Reads:  --irn_weights_name, --infer_list, <voc12_root>/JPEGImages, <cam_out_dir>/<name>.npz (scores; and the
        foreground when there is no pseudo mask), <sem_seg_out_dir>/<name>.png when present (the foreground).
Writes: <ins_seg_out_dir>/<name>.npz with
            masks   (N, H, W) uint8 0/1   one mask per instance
            scores  (N,) float32          CAM mass of the instance: sum of its class's max-normalised CAM over it
            classes (N,) int64            class value as in the label PNGs (1..K; 0 is background)
        <ins_seg_out_dir>/overlays/<name>.png (image | instances) for the first --cam_num_overlays images,
        args_make_ins_seg.json. Items whose .npz exists are skipped unless --overwrite.

Method. The displacement field D (stride 4) points every foreground pixel p to the centroid of its instance, so
the landing points p + D(p) of one building pile up on one spot. Per class: follow the field from every
foreground cell (a few steps, as IRN's centroid refinement), count the landing cells (3×3 smoothed votes), take the
8-connected groups of cells with at least ``min_votes`` votes as instance centres, and give every foreground cell
the centre its landing point falls in (or the nearest centre). The stride-4 instance map is taken to full size and
cut by the full-size foreground; spatially separate fragments become separate instances, fragments below
``min_pixels`` are dropped.
"""
from __future__ import annotations

import logging
import os

import numpy as np
import scipy.ndimage as ndi
import torch

from data.labels import overlay_sample, read_checked_list
from misc import artifacts, dist
from misc.cam import cams_to_label
from misc.io import load_npz, load_png, save_npz, save_png
from misc.item_pass import for_each_item, open_item_pass
from misc.visualize import side_by_side

log = logging.getLogger(__name__)

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
STRIDE = 4


def follow_displacement(displacement: np.ndarray, points: np.ndarray, steps: int = 10) -> np.ndarray:
    """Move ``points`` along the field: ``q ← q + D(q)`` (bilinear D), ``steps`` times, kept inside the map.

    displacement: (2, h, w) float (dy, dx). points: (n, 2) float (y, x). Returns (n, 2) float.
    Where the field is right, the first step lands on the centroid, where D ≈ 0, and later steps stay there; the
    extra steps pull slightly-off landings onto the centroid (IRN's refinement).
    """
    h, w = displacement.shape[1:]
    q = points.astype(np.float64).copy()
    for _ in range(steps):
        dy = ndi.map_coordinates(displacement[0], q.T, order=1, mode="nearest")
        dx = ndi.map_coordinates(displacement[1], q.T, order=1, mode="nearest")
        q[:, 0] = np.clip(q[:, 0] + dy, 0, h - 1)
        q[:, 1] = np.clip(q[:, 1] + dx, 0, w - 1)
    return q


def cluster_by_displacement(displacement: np.ndarray, fg: np.ndarray, *, steps: int = 10, min_votes: float = 3.0
                            ) -> np.ndarray:
    """Instance map (h, w) int32 (0 = not foreground, 1..N) of the foreground cells ``fg`` (h, w) bool.

    See the module docstring. Without any centre (too few votes) the 8-connected foreground components are the
    instances.
    """
    h, w = fg.shape
    instance = np.zeros((h, w), np.int32)
    cells = np.argwhere(fg)  # (n, 2)
    if len(cells) == 0:
        return instance
    landing = follow_displacement(displacement, cells.astype(np.float64), steps=steps)  # (n, 2)
    cell_of = np.rint(landing).astype(np.int64)
    votes = np.zeros((h, w), np.float64)
    np.add.at(votes, (cell_of[:, 0], cell_of[:, 1]), 1.0)
    votes = ndi.uniform_filter(votes, size=3, mode="constant") * 9  # 3×3 sums
    centres, count = ndi.label(votes >= min_votes, structure=EIGHT_CONNECTED)
    if count == 0:
        components, _ = ndi.label(fg, structure=EIGHT_CONNECTED)
        return components.astype(np.int32)
    owner = centres[cell_of[:, 0], cell_of[:, 1]]  # (n,) 0 where the landing point is off every centre
    off = owner == 0
    if off.any():
        # nearest centre (by its vote-weighted middle) for landings outside every centre
        middles = np.array(ndi.center_of_mass(votes, centres, index=np.arange(1, count + 1)))  # (count, 2)
        dist2 = ((landing[off, None, :] - middles[None]) ** 2).sum(-1)  # (n_off, count)
        owner[off] = dist2.argmin(axis=1) + 1
    instance[cells[:, 0], cells[:, 1]] = owner
    return instance


def to_stride4(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool → (ceil(H/4), ceil(W/4)) bool: a cell is set when any of its pixels is."""
    h, w = mask.shape
    padded = np.pad(mask, ((0, -h % STRIDE), (0, -w % STRIDE)))
    return padded.reshape(padded.shape[0] // STRIDE, STRIDE, padded.shape[1] // STRIDE, STRIDE).any(axis=(1, 3))


def split_fragments(instance_full: np.ndarray, min_pixels: int) -> list[np.ndarray]:
    """Masks (H, W) bool of the 8-connected fragments of each instance id, largest first per id, at least
    ``min_pixels`` pixels each."""
    masks = []
    for k in range(1, int(instance_full.max()) + 1):
        pieces, count = ndi.label(instance_full == k, structure=EIGHT_CONNECTED)
        if count == 0:
            continue
        sizes = np.bincount(pieces.ravel(), minlength=count + 1)[1:]
        for piece in np.argsort(-sizes, kind="stable"):
            if sizes[piece] >= min_pixels:
                masks.append(pieces == piece + 1)
    return masks


def instances_from_displacement(displacement: np.ndarray, class_map: np.ndarray, cams: np.ndarray,
                                keys: np.ndarray, *, steps: int = 10, min_votes: float = 3.0, min_pixels: int = 16
                                ) -> dict[str, np.ndarray]:
    """Instances of one image.

    displacement: (2, ceil(H/4), ceil(W/4)) float, (dy, dx) in stride-4 pixels.
    class_map: (H, W) uint8 foreground label (0 bg, 1..K, 255 ignored as background).
    cams: (k, H, W) float max-normalised CAMs of the present classes ``keys`` (k,) (0-based) — the scores.
    Returns {"masks": (N, H, W) uint8, "scores": (N,) float32, "classes": (N,) int64 (1..K)}, by score descending.
    """
    h, w = class_map.shape
    masks, scores, classes = [], [], []
    cam_of = {int(k) + 1: cams[i] for i, k in enumerate(keys)}
    for cls in sorted(int(c) for c in np.unique(class_map) if 0 < c < 255):
        fg = class_map == cls
        instance4 = cluster_by_displacement(displacement, to_stride4(fg), steps=steps, min_votes=min_votes)
        instance_full = np.repeat(np.repeat(instance4, STRIDE, axis=0), STRIDE, axis=1)[:h, :w] * fg
        cam = cam_of.get(cls)
        for mask in split_fragments(instance_full, min_pixels):
            masks.append(mask)
            scores.append(float(cam[mask].sum()) if cam is not None else 0.0)
            classes.append(cls)
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    return {"masks": np.asarray(masks, np.uint8).reshape(-1, h, w)[order],
            "scores": np.asarray(scores, np.float32).reshape(-1)[order],
            "classes": np.asarray(classes, np.int64).reshape(-1)[order]}


def instance_picture(image: np.ndarray, masks: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Each instance in its own colour over the image (RGB uint8)."""
    colours = np.random.default_rng(0).integers(64, 256, size=(max(len(masks), 1), 3)).astype(np.float32)
    out = image.astype(np.float32)
    for mask, colour in zip(masks.astype(bool), colours):
        out[mask] = (1 - alpha) * out[mask] + alpha * colour
    return out.clip(0, 255).astype(np.uint8)


def foreground_label(args, name: str, cam: dict) -> np.ndarray:
    """The pseudo mask of sem_seg when it exists, else the CAM thresholded at --ins_seg_bg_thres: (H, W) uint8."""
    sem_file = artifacts.sem_seg_path(args.sem_seg_out_dir, name)
    if os.path.isfile(sem_file):
        label = load_png(sem_file)
        if label.shape != cam["high_res"].shape[-2:]:
            raise ValueError(f"{sem_file} is {label.shape} but the CAM of {name} is {cam['high_res'].shape[-2:]}")
        return label
    return cams_to_label(cam["high_res"], cam["keys"], args.ins_seg_bg_thres)


def run(args) -> None:
    from data.raster_io import read_image
    from net.zoo import load_model

    device = torch.device(args.device)
    names = read_checked_list(args.infer_list, args.voc12_root, skip_bad=args.skip_bad)
    model, _ = load_model(args.irn_weights_name, "irn", device)
    todo = open_item_pass(args, "make_ins_seg", args.ins_seg_out_dir, names,
                          lambda n: artifacts.ins_seg_path(args.ins_seg_out_dir, n))
    overlay_names = overlay_sample(names, artifacts.cls_labels_path(args.voc12_root, args.cls_labels_path),
                                   args.cam_num_overlays)
    mine = dist.shard(names)
    log.info("make_ins_seg: %d images to do (%d already done)", len(todo), len(mine) - len(todo))
    instances = []  # per image done

    def one(name: str) -> None:
        image = read_image(artifacts.image_path(args.voc12_root, name))  # (H, W, 3)
        cam = load_npz(artifacts.cam_path(args.cam_out_dir, name))
        if cam["high_res"].shape[-2:] != image.shape[:2]:
            raise ValueError(f"CAM of {name} is {cam['high_res'].shape[-2:]}, the image {image.shape[:2]}")
        x = torch.from_numpy(image).to(device).permute(2, 0, 1).float().div(255)[None]
        displacement = model.displacement(x)[0].float().cpu().numpy()  # (2, h4, w4)
        result = instances_from_displacement(displacement, foreground_label(args, name, cam), cam["high_res"],
                                             cam["keys"])
        if name in overlay_names:  # before the .npz: the .npz marks the item done
            save_png(artifacts.overlay_path(args.ins_seg_out_dir, name),
                     side_by_side([image, instance_picture(image, result["masks"])], titles=["image", "instances"]))
        save_npz(artifacts.ins_seg_path(args.ins_seg_out_dir, name), **result)
        instances.append(len(result["masks"]))

    for_each_item(todo, one, pass_name="make_ins_seg", skip_bad=args.skip_bad)
    log.info("make_ins_seg: %d instances in %d images, in %s", sum(instances), len(todo), args.ins_seg_out_dir)
