"""Pass make_cam: multi-scale, flip-augmented class activation maps for every image of --infer_list.

Reads:  --cam_weights_name, --infer_list, <voc12_root>/JPEGImages, cls_labels.npy (which classes are present)
Writes: <cam_out_dir>/<name>.npz (keys, cam at stride 4, high_res at full size; see misc/artifacts.py),
        <cam_out_dir>/overlays/<name>.png for the first --cam_num_overlays images, args_make_cam.json.
Items whose .npz already exists are skipped unless --overwrite (a killed run resumes where it stopped); under
--skip_bad an unreadable image or a name without an image-level label is logged, counted and skipped.
"""
from __future__ import annotations

import logging
import math

import numpy as np
import torch

from data.labels import load_class_names, load_cls_labels, overlay_sample, read_checked_list
from misc import artifacts, dist
from misc.cam import max_normalize
from misc.io import save_args, save_npz, save_png
from misc.logutils import progress
from misc.robust import BadItems, pending_items, prepare_out_dir
from misc.torchutils import load_checkpoint, load_weights
from misc.visualize import cam_overlay, side_by_side
from net.cam_net import CAMNet

log = logging.getLogger(__name__)


def load_cam_model(weights_path: str, device: torch.device) -> CAMNet:
    """Rebuild the CAM network from its self-describing checkpoint and load the weights (eval mode)."""
    ckpt = load_checkpoint(weights_path, map_location="cpu")
    if ckpt.get("kind") == "ctfa":  # a CTFA network (step/train_ctfa.py) has the same forward_with_cams
        from net.ctfa_net import ctfa_from_checkpoint

        model = ctfa_from_checkpoint(ckpt)
        load_weights(model, ckpt, path=weights_path)
        return model.to(device).eval()
    if ckpt.get("kind", "cam") != "cam" or not (ckpt.get("num_classes") or "classifier.weight" in ckpt["state_dict"]):
        raise ValueError(f"{weights_path} is not a CAM checkpoint (kind={ckpt.get('kind')!r}, model class "
                         f"{ckpt.get('model_class')!r}); pass the file written by --train_cam_pass as "
                         f"--cam_weights_name")
    built = ckpt.get("args", {})
    num_classes = ckpt.get("num_classes") or ckpt["state_dict"]["classifier.weight"].shape[0]
    # a network trained with SBNet's boundary loss carries its boundary head (unused here, loaded for strictness)
    boundary_head = any(k.startswith("boundary_head.") for k in ckpt["state_dict"])
    model = CAMNet(backbone=built.get("backbone", "efficientnet_lite0"), num_classes=int(num_classes), pretrained=None,
                   boundary_head=boundary_head, output_stride=int(built.get("cam_output_stride", 16)))
    load_weights(model, ckpt, path=weights_path)
    return model.to(device).eval()


def present_classes(cls_labels: dict[str, np.ndarray], name: str) -> np.ndarray:
    """0-based indices of the foreground classes the image-level label says are present."""
    if name not in cls_labels:
        raise KeyError(f"image {name!r} has no image-level label in cls_labels.npy (rerun write_numpy.py)")
    return np.nonzero(cls_labels[name] > 0.5)[0].astype(np.int64)


def stride4_size(height: int, width: int) -> tuple[int, int]:
    return math.ceil(height / 4), math.ceil(width / 4)


def multiscale_cams(model: CAMNet, image: np.ndarray, scales: tuple[float, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of CAMs over scales and a horizontal flip, before normalisation.

    image: uint8 (H, W, 3). Returns (K, ceil(H/4), ceil(W/4)) and (K, H, W) float32 tensors on the model's device.
    The flipped copy rides in the same batch as the original, so each scale costs one forward pass.
    """
    device = next(model.parameters()).device
    h, w = image.shape[:2]
    x = torch.from_numpy(image).to(device).permute(2, 0, 1).float().div(255)[None]  # (1, 3, H, W)
    strided_total = torch.zeros(0)
    high_total = torch.zeros(0)
    for scale in scales:
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        xs = torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False) if scale != 1 else x
        batch = torch.cat([xs, xs.flip(-1)], dim=0)  # (2, 3, h', w')
        _, cams = model.forward_with_cams(batch)  # (2, K, h'/16, w'/16)
        cams = cams[0:1] + cams[1:2].flip(-1)  # (1, K, h'/16, w'/16)
        strided = torch.nn.functional.interpolate(cams, size=stride4_size(h, w), mode="bilinear", align_corners=False)
        high = torch.nn.functional.interpolate(cams, size=(h, w), mode="bilinear", align_corners=False)
        strided_total = strided[0] if strided_total.numel() == 0 else strided_total + strided[0]
        high_total = high[0] if high_total.numel() == 0 else high_total + high[0]
    return strided_total, high_total


def save_cam_artifact(out_dir: str, name: str, keys: np.ndarray, strided: torch.Tensor,
                      high_res: torch.Tensor, overlay_image: np.ndarray | None = None,
                      class_names: list[str] | None = None) -> np.ndarray:
    """Keep the present classes' maps, max-normalise each to [0, 1] and write the .npz atomically.

    With ``overlay_image`` (uint8 (H, W, 3)) the overlay is written first: the .npz marks the item done (a rerun skips
    it), so it must be the last file of the item. Returns the normalised full-size maps (k, H, W) float32."""
    keys_t = torch.as_tensor(keys, dtype=torch.long, device=strided.device)
    strided = max_normalize(strided[keys_t]) if len(keys) else strided[:0]
    high_res = max_normalize(high_res[keys_t]) if len(keys) else high_res[:0]
    high_np = high_res.float().cpu().numpy()
    if overlay_image is not None:
        write_cam_overlay(out_dir, name, overlay_image, keys, high_np, class_names=class_names)
    save_npz(artifacts.cam_path(out_dir, name), keys=keys.astype(np.int64),
             cam=strided.float().cpu().numpy(), high_res=high_np)
    return high_np


def write_cam_overlay(out_dir: str, name: str, image: np.ndarray, keys: np.ndarray, high_res: np.ndarray,
                      class_names: list[str] | None = None) -> None:
    """Image | CAM of each present class, side by side, titled (``class_names``: ["background", fg_1, ...])."""
    panels = [image] + [cam_overlay(image, high_res[i]) for i in range(len(keys))]
    titles = ["image"] + [f"CAM {class_names[k + 1] if class_names else f'class {k + 1}'}" for k in keys]
    save_png(artifacts.overlay_path(out_dir, name), side_by_side(panels, titles=titles))


def pending_names(names: list[str], out_dir: str, overwrite: bool) -> list[str]:
    """This rank's names whose artifact is not there yet (all of them under --overwrite)."""
    return pending_items(dist.shard(names), lambda n: artifacts.cam_path(out_dir, n), overwrite=overwrite,
                         pass_name="cam")


def start_cam_pass(args, pass_name: str):
    """What make_cam and make_adv_cam share before their loop: the list, the image-level labels, the network, the
    output folder (args json, stale temp files removed), the overlay sample and this rank's pending names.

    Returns (names, cls_labels, model, overlay_names, todo)."""
    labels_file = artifacts.cls_labels_path(args.voc12_root, args.cls_labels_path)
    cls_labels = load_cls_labels(labels_file)
    names = read_checked_list(args.infer_list, args.voc12_root, cls_labels=cls_labels, skip_bad=args.skip_bad)
    model = load_cam_model(args.cam_weights_name, torch.device(args.device))
    prepare_out_dir(args.cam_out_dir)
    if dist.is_main():
        save_args(args, args.cam_out_dir, pass_name)
    overlay_names = overlay_sample(names, labels_file, args.cam_num_overlays)
    return names, cls_labels, model, overlay_names, pending_names(names, args.cam_out_dir, args.overwrite)


def run(args) -> None:
    from data.raster_io import read_image

    names, cls_labels, model, overlay_names, todo = start_cam_pass(args, "make_cam")
    log.info("make_cam: %d images to do (%d already done), scales %s", len(todo),
             len(dist.shard(names)) - len(todo), args.cam_scales)
    bad = BadItems("make_cam", skip_bad=args.skip_bad)
    class_names = load_class_names(args.voc12_root) if overlay_names else None
    with torch.inference_mode():
        for name in progress(todo, desc="make_cam"):
            with bad.guard(name):
                keys = present_classes(cls_labels, name)
                image = read_image(artifacts.image_path(args.voc12_root, name))
                strided, high = multiscale_cams(model, image, args.cam_scales)
                save_cam_artifact(args.cam_out_dir, name, keys, strided, high,
                                  overlay_image=image if name in overlay_names else None, class_names=class_names)
    bad.log_summary()
    log.info("make_cam: CAMs in %s", args.cam_out_dir)
