"""Pass train_irn: train IRN's boundary and displacement branches from IR labels over the frozen CAM backbone.

Reads:  --train_list, <voc12_root>/JPEGImages, <ir_label_out_dir>/<name>.png (cam_to_ir_label),
        --cam_weights_name (its backbone; ImageNet weights with a warning when the file is missing)
Writes: --irn_weights_name (a self-describing checkpoint, rewritten after every epoch so --resume can continue),
        args_train_irn.json next to it, and <dirname(irn_weights_name)>/irn_boundary_overlays/<name>.png
        (image | boundary map) for the first --cam_num_overlays training images.
"""
from __future__ import annotations

import logging
import os
import time

import torch

from data.irn_dataset import IRNDataset
from data.labels import read_checked_list
from misc import artifacts, dist
from misc.io import save_args, save_png
from misc.logutils import progress
from misc.robust import clean_training_outputs
from misc.pair_sampler import TRAIN_RADIUS, pair_losses
from misc.torchutils import (PolyOptimizer, check_finite, make_train_loader, resume_checkpoint, seed_epoch,
                             wrap_distributed)
from misc.visualize import cam_overlay, side_by_side
from net.irn import IRNet
from net.zoo import build_on_cam_backbone, pretrained_weights, save_model, spec_from_args

log = logging.getLogger(__name__)

LOSS_KEYS = ("total", "pos_bg", "pos_fg", "neg", "dp_fg", "dp_bg")


def write_boundary_overlays(model: IRNet, args, names: list[str], device: torch.device) -> None:
    """image | boundary probability (jet) for each of ``names``."""
    from data.raster_io import read_image

    model.eval()
    with torch.inference_mode():
        for name in names:
            image = read_image(artifacts.image_path(args.voc12_root, name))  # (H, W, 3) uint8
            x = torch.from_numpy(image).to(device).permute(2, 0, 1).float().div(255)[None]
            boundary = model.boundary_map(x)  # (1, 1, h4, w4)
            full = torch.nn.functional.interpolate(boundary, scale_factor=4, mode="bilinear", align_corners=False)
            full = full[0, 0, : image.shape[0], : image.shape[1]].float().cpu().numpy()
            save_png(artifacts.irn_boundary_overlay_path(args.irn_weights_name, name),
                     side_by_side([image, cam_overlay(image, full)], titles=["image", "boundary map"]))


def run(args) -> None:
    device = torch.device(args.device)
    names = read_checked_list(args.train_list, args.voc12_root, skip_bad=args.skip_bad)
    dataset = IRNDataset(args.voc12_root, names, args.ir_label_out_dir, crop_size=args.irn_crop_size,
                         seed=args.seed)
    _, config = spec_from_args("irn", args)
    model = build_on_cam_backbone("irn", config, cam_weights=args.cam_weights_name, backbone=args.backbone,
                                  pretrained=pretrained_weights(args.pretrained), who="train_irn").to(device)
    log.info("train_irn: %d images, crop %d, boundary branch %s, backbone %s, pair radius %d at stride 4",
             len(names), args.irn_crop_size, model.boundary_kind, model.backbone_name, TRAIN_RADIUS)

    loader, sampler, generator = make_train_loader(dataset, args.irn_batch_size, num_workers=args.num_workers,
                                                   seed=args.seed)
    max_step = len(loader) * args.irn_num_epochs
    optimizer = PolyOptimizer(model.param_groups(args.irn_learning_rate), lr=args.irn_learning_rate,
                              weight_decay=args.irn_weight_decay, max_step=max_step)
    ckpt = (resume_checkpoint(args.irn_weights_name, model, optimizer,
                              expect={"kind": "irn", "boundary": model.boundary_kind}) if args.resume else None)
    start_epoch = int(ckpt.get("epoch", 0)) if ckpt else 0
    train_model = wrap_distributed(model, device)

    if dist.is_main():
        # temp files of a run killed while saving the weights or writing the boundary overlays
        clean_training_outputs(args.irn_weights_name,
                               os.path.dirname(artifacts.irn_boundary_overlay_path(args.irn_weights_name, "x")))
        save_args(args, os.path.dirname(os.path.abspath(args.irn_weights_name)), "train_irn")
    for epoch in range(start_epoch, args.irn_num_epochs):
        dataset.set_epoch(epoch)
        seed_epoch(generator, args.seed, epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        train_model.train()
        tic = time.time()
        sums = dict.fromkeys(LOSS_KEYS, 0.0)
        seen = 0
        for batch in progress(loader, desc=f"train_irn epoch {epoch + 1}/{args.irn_num_epochs}"):
            images = batch["img"].to(device, non_blocking=True)  # (B, 3, crop, crop)
            labels = batch["label"].to(device, non_blocking=True)  # (B, crop/4, crop/4)
            boundary_logits, displacement = train_model(images)
            losses = pair_losses(boundary_logits, displacement, labels, radius=TRAIN_RADIUS)
            check_finite(losses["total"], where=f"train_irn epoch {epoch + 1} step {optimizer.global_step}")
            optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            optimizer.step()
            for k in LOSS_KEYS:
                sums[k] += losses[k].item() * len(images)
            seen += len(images)
        metrics = {k: v / max(seen, 1) for k, v in sums.items()}
        metrics["epoch_seconds"] = time.time() - tic
        log.info("train_irn epoch %d/%d: loss %.4f (affinity bg+ %.3f fg+ %.3f neg %.3f, displacement fg %.3f "
                 "bg %.3f), %.1f s", epoch + 1, args.irn_num_epochs, metrics["total"], metrics["pos_bg"],
                 metrics["pos_fg"], metrics["neg"], metrics["dp_fg"], metrics["dp_bg"], metrics["epoch_seconds"])
        if dist.is_main():
            save_model(args.irn_weights_name, model, args=args, step=optimizer.global_step, metrics=metrics,
                       optimizer=optimizer, extra={"epoch": epoch + 1})
        dist.barrier()
    if dist.is_main() and args.cam_num_overlays > 0:
        write_boundary_overlays(model, args, names[: args.cam_num_overlays], device)
    log.info("train_irn: weights in %s", args.irn_weights_name)

