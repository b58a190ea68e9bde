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

import torch

from data.irn_dataset import IRNDataset
from data.labels import read_checked_list
from misc import artifacts, dist
from misc.io import save_png
from misc.pair_sampler import TRAIN_RADIUS, pair_losses
from misc.torchutils import PolyOptimizer, make_train_loader, resume_checkpoint, wrap_distributed
from misc.training import Step, open_training, per_image_means, per_image_sums, seeded_epochs, train_epochs
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
            full = torch.nn.functional.interpolate(boundary, scale_factor=model.stride, mode="bilinear",
                                                   align_corners=False)
            full = full[0, 0, : image.shape[0], : image.shape[1]].float().cpu().numpy()
            save_png(artifacts.irn_boundary_overlay_path(args.irn_weights_name, name),
                     side_by_side([image, cam_overlay(image, full)], titles=["image", "boundary map"]))


def run(args) -> None:
    device = torch.device(args.device)
    names = read_checked_list(args.train_list, args.voc12_root, skip_bad=args.skip_bad)
    _, config = spec_from_args("irn", args)
    dataset = IRNDataset(args.voc12_root, names, args.ir_label_out_dir, crop_size=args.irn_crop_size,
                         seed=args.seed, stride=config["stride"])
    model = build_on_cam_backbone("irn", config, cam_weights=args.cam_weights_name, backbone=args.backbone,
                                  pretrained=pretrained_weights(args.pretrained), who="train_irn").to(device)
    log.info("train_irn: %d images, crop %d, boundary branch %s, backbone %s, pair radius %d at stride 4",
             len(names), args.irn_crop_size, model.boundary_kind, model.backbone_name, TRAIN_RADIUS)

    loader, sampler, generator = make_train_loader(dataset, args.irn_batch_size, num_workers=args.num_workers,
                                                   seed=args.seed)
    max_step = len(loader) * args.irn_num_epochs
    optimizer = PolyOptimizer(model.param_groups(args.irn_learning_rate), lr=args.irn_learning_rate,
                              weight_decay=args.irn_weight_decay, max_step=max_step)
    expect = {"kind": "irn", "boundary": model.boundary_kind}
    if model.stride != 4:  # checkpoints from before --irn_stride record no stride: they are stride 4
        expect["stride"] = model.stride
    overlay_dir = os.path.dirname(artifacts.irn_boundary_overlay_path(args.irn_weights_name, "x"))
    start_epoch, _ = open_training(args, "train_irn", args.irn_weights_name, overlay_dir, resume=lambda: (
        resume_checkpoint(args.irn_weights_name, model, optimizer, expect=expect)))
    train_model = wrap_distributed(model, device)

    def one_step(batch) -> Step:
        images = batch["img"].to(device, non_blocking=True)  # (B, 3, crop, crop)
        labels = batch["label"].to(device, non_blocking=True)  # (B, crop/s, crop/s)
        boundary_logits, displacement = train_model(images)
        losses = pair_losses(boundary_logits, displacement, labels, radius=TRAIN_RADIUS)
        return Step(losses["total"], per_image_sums(losses, LOSS_KEYS, len(images)))

    def log_epoch(epoch: int, metrics: dict, sums: dict) -> None:
        log.info("train_irn epoch %d/%d: loss %.4f (affinity bg+ %.3f fg+ %.3f neg %.3f, displacement fg %.3f "
                 "bg %.3f), %.1f s", epoch + 1, args.irn_num_epochs, metrics["total"], metrics["pos_bg"],
                 metrics["pos_fg"], metrics["neg"], metrics["dp_fg"], metrics["dp_bg"], metrics["epoch_seconds"])

    def save(epoch_done: int, metrics: dict) -> None:
        save_model(args.irn_weights_name, model, args=args, step=optimizer.global_step, metrics=metrics,
                   optimizer=optimizer, extra={"epoch": epoch_done})

    train_epochs("train_irn", model=train_model, optimizer=optimizer, loader=loader, num_epochs=args.irn_num_epochs,
                 start_epoch=start_epoch, begin_epoch=seeded_epochs(dataset, generator, sampler, args.seed),
                 step=one_step, summarize=per_image_means(LOSS_KEYS), log_epoch=log_epoch, save=save)
    if dist.is_main() and args.cam_num_overlays > 0:
        write_boundary_overlays(model, args, names[: args.cam_num_overlays], device)
    log.info("train_irn: weights in %s", args.irn_weights_name)
