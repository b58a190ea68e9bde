"""The CAMs of one image and the CAM artifact every CAM pass writes (make_cam, make_adv_cam, refine_cam).

multiscale_cams sums a network's CAMs over input scales and a horizontal flip; save_cam_artifact keeps the present
classes' maps, max-normalises each and writes ``<cam_out_dir>/<name>.npz`` (format in misc/artifacts.py) after its
overlay.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from misc import artifacts
from misc.cam import max_normalize
from misc.io import save_npz, save_png
from misc.visualize import cam_overlay, side_by_side


def present_classes(cls_labels: dict[str, np.ndarray], name: str) -> np.ndarray:
    """0-based indices of the foreground classes the image-level label says are present."""
    if name not in cls_labels:
        raise KeyError(f"image {name!r} has no image-level label in cls_labels.npy (rerun write_numpy.py)")
    return np.nonzero(cls_labels[name] > 0.5)[0].astype(np.int64)


def stride4_size(height: int, width: int) -> tuple[int, int]:
    return math.ceil(height / 4), math.ceil(width / 4)


def multiscale_cams(model: torch.nn.Module, image: np.ndarray, scales: tuple[float, ...]) -> tuple[torch.Tensor, torch.Tensor]:
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
