"""Pass make_adv_cam: AdvCAM — CAMs accumulated over adversarially climbed images, with a restricting mask.

The seed's step 3 (``obtain_CAM_masking.py --adv_iter 2 --AD_coeff 7 --AD_stepsize 0.08 --score_th 0.6``); the math
lives in misc/adv_climb.py. For every scale of --cam_scales and every present class, the image and its flip climb
--adv_iter steps; the CAMs of all iterates are summed over steps, scales and the flip, then max-normalised per class
exactly as make_cam does, so the artifact has make_cam's format (and with --adv_iter 0 make_cam's values).
--AD_stepsize is in the backbone's normalised input units, as in the seed (see misc/adv_climb.py).

Reads:  --cam_weights_name, --infer_list (obtain_CAM_masking.py: --train_list), <voc12_root>/JPEGImages,
        cls_labels.npy (which classes are present)
Writes: <cam_out_dir>/<name>.npz (keys, cam at stride 4, high_res at full size; see misc/artifacts.py),
        <cam_out_dir>/overlays/<name>.png for the first --cam_num_overlays images, args_make_adv_cam.json.
Items whose .npz already exists are skipped unless --overwrite. Under torchrun each rank takes its shard.
"""
from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F

from data.labels import load_class_names
from data.raster_io import read_image
from misc import artifacts, dist
from misc.adv_climb import ClimbStats, adversarial_climb, climb_network, input_gradients_only, minimum_passes
from misc.cam_maps import present_classes, save_cam_artifact, stride4_size
from misc.item_pass import for_each_item, start_cam_pass
from net.cam_net import CAMNet

log = logging.getLogger(__name__)


def multiscale_adv_cams(model: CAMNet, image: np.ndarray, keys: np.ndarray, scales: tuple[float, ...], *,
                        adv_iter: int, ad_coeff: float, ad_stepsize: float, score_th: float, grow_mask: bool = True,
                        stats: ClimbStats | None = None, engine: str = "exact") -> tuple[torch.Tensor, torch.Tensor]:
    """AdvCAM maps summed over scales (and the flip), before normalisation: make_cam.multiscale_cams' counterpart.

    image: uint8 (H, W, 3); keys: (k,) int64 present classes. Returns (K, ceil(H/4), ceil(W/4)) and (K, H, W) float32
    tensors on the model's device, zero for the classes not in ``keys``. No present class: zeros, no forward pass.
    engine: ``exact`` (autograd through ``model``) or ``fast`` (closed-form head gradient on
    :func:`misc.adv_climb.climb_network`'s copy; pass that copy as ``model`` to build it only once). Scales that
    round to the same size are climbed once.
    """
    device = next(model.parameters()).device
    h, w = image.shape[:2]
    num_classes = model.num_classes
    strided_total = torch.zeros((num_classes, *stride4_size(h, w)), device=device)
    high_total = torch.zeros((num_classes, h, w), device=device)
    if len(keys) == 0:
        return strided_total, high_total
    keys_t = torch.as_tensor(keys, dtype=torch.long, device=device)
    x = torch.from_numpy(image).to(device).permute(2, 0, 1).float().div(255)[None]  # (1, 3, H, W)
    climber = climb_network(model, engine)
    done: dict[tuple[int, int], torch.Tensor] = {}
    for scale in scales:
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        if size not in done:  # the climb is deterministic: a repeated size would give the same CAMs
            xs = F.interpolate(x, size=size, mode="bilinear", align_corners=False) if size != (h, w) else x
            done[size] = adversarial_climb(climber, xs, keys_t, adv_iter=adv_iter, ad_coeff=ad_coeff,
                                           ad_stepsize=ad_stepsize, score_th=score_th, grow_mask=grow_mask,
                                           stats=stats, closed_form=engine == "fast")[None]  # (1, k, h', w')
        cams = done[size]
        strided_total[keys_t] += F.interpolate(cams, size=stride4_size(h, w), mode="bilinear", align_corners=False)[0]
        high_total[keys_t] += F.interpolate(cams, size=(h, w), mode="bilinear", align_corners=False)[0]
    return strided_total, high_total


def run(args) -> None:
    names, cls_labels, model, overlay_names, todo = start_cam_pass(args, "make_adv_cam")
    log.info("make_adv_cam: %d images to do (%d already done), scales %s, adv_iter %d, AD_coeff %g, AD_stepsize %g "
             "(normalised units), score_th %g, engine %s", len(todo), len(dist.shard(names)) - len(todo),
             args.cam_scales, args.adv_iter, args.AD_coeff, args.AD_stepsize, args.score_th, args.adv_engine)
    stats = ClimbStats()
    least_forwards = least_backwards = 0
    climber = climb_network(model, args.adv_engine)  # built once; "fast" is a folded copy of the model
    del model  # the copy is all the pass needs: do not hold two sets of weights

    def one(name: str) -> None:
        nonlocal least_forwards, least_backwards
        keys = present_classes(cls_labels, name)
        image = read_image(artifacts.image_path(args.voc12_root, name))
        strided, high = multiscale_adv_cams(
            climber, image, keys, args.cam_scales, adv_iter=args.adv_iter, ad_coeff=args.AD_coeff,
            ad_stepsize=args.AD_stepsize, score_th=args.score_th, stats=stats, engine=args.adv_engine)
        stats.target_logits.clear()  # traces are for tests/bench; keep only the counts here
        fwd, bwd = minimum_passes(len(args.cam_scales), args.adv_iter, len(keys))
        least_forwards, least_backwards = least_forwards + fwd, least_backwards + bwd
        save_cam_artifact(args.cam_out_dir, name, keys, strided, high,
                          overlay_image=image if name in overlay_names else None,
                          class_names=load_class_names(args.voc12_root) if name in overlay_names else None)

    with input_gradients_only(climber):
        for_each_item(todo, one, pass_name="make_adv_cam", skip_bad=args.skip_bad, gradients=True)
    log.info("make_adv_cam: %d forward / %d backward passes (minimum %d / %d); CAMs in %s", stats.forwards,
             stats.backwards, least_forwards, least_backwards, args.cam_out_dir)
