"""Pass train_aff: train AffinityNet's embedding (Ahn & Kwak 2018; SBNet's random-walk step) from IR labels.

The IR labels (CRF-refined confident foreground / background of the CAMs, 255 unsure: AffinityNet's low/high
threshold labels in one PNG) give pair labels within radius 5 at stride 4; the embedding head over the CAM network's
frozen backbone learns ``a_ij = exp(-mean_c |f_i - f_j|)`` with the balanced cross-entropy of misc/affinity.py.
make_sem_seg with --rw_method affinitynet then walks the CAMs over ``a_ij ** --beta``.

Reads:  --train_list, <voc12_root>/JPEGImages, <ir_label_out_dir>/<name>.png (cam_to_ir_label),
        --cam_weights_name (its backbone; ImageNet weights with a warning when the file is missing)
Writes: --aff_weights_name (a self-describing checkpoint, rewritten after every epoch so --resume can continue),
        args_train_aff.json next to it, and <dirname(aff_weights_name)>/aff_overlays/<name>.png (image | affinity edge
        map) for the first --cam_num_overlays training images.
"""
from __future__ import annotations

import logging
import os

import torch
import torch.nn.functional as F

from data.irn_dataset import IRNDataset
from data.labels import read_checked_list
from misc import artifacts, dist
from misc.affinity import AFF_RADIUS, affinity_edge_map, affinity_loss, feature_affinities
from misc.io import save_png
from misc.torchutils import PolyOptimizer, make_train_loader, resume_checkpoint, wrap_distributed
from misc.training import Step, open_training, per_image_means, per_image_sums, seeded_epochs, train_epochs
from misc.visualize import cam_overlay, side_by_side
from net.affinity_net import AffinityNet
from net.zoo import build_on_cam_backbone, pretrained_weights, save_model, spec_from_args

log = logging.getLogger(__name__)

LOSS_KEYS = ("total", "pos_bg", "pos_fg", "neg")


def write_affinity_overlays(model: AffinityNet, args, names: list[str], device: torch.device) -> None:
    """image | affinity edge map (jet) for each of ``names``."""
    from data.raster_io import read_image

    model.eval()
    with torch.inference_mode():
        for name in names:
            image = read_image(artifacts.image_path(args.voc12_root, name))  # (H, W, 3) uint8
            x = torch.from_numpy(image).to(device).permute(2, 0, 1).float().div(255)[None]
            edges = affinity_edge_map(model(x)[0])  # (h4, w4)
            full = F.interpolate(edges[None, None], scale_factor=4, mode="bilinear", align_corners=False)
            full = full[0, 0, : image.shape[0], : image.shape[1]].float().cpu().numpy()
            save_png(artifacts.aff_overlay_path(args.aff_weights_name, name),
                     side_by_side([image, cam_overlay(image, full)], titles=["image", "affinity edges"]))


def run(args) -> None:
    device = torch.device(args.device)
    names = read_checked_list(args.train_list, args.voc12_root, skip_bad=args.skip_bad)
    dataset = IRNDataset(args.voc12_root, names, args.ir_label_out_dir, crop_size=args.aff_crop_size,
                         seed=args.seed)
    _, config = spec_from_args("aff", args)
    model = build_on_cam_backbone("aff", config, cam_weights=args.cam_weights_name, backbone=args.backbone,
                                  pretrained=pretrained_weights(args.pretrained), who="train_aff").to(device)
    log.info("train_aff: %d images, crop %d, backbone %s, embedding %d, pair radius %d at stride 4",
             len(names), args.aff_crop_size, model.backbone_name, model.embed_dim, AFF_RADIUS)

    loader, sampler, generator = make_train_loader(dataset, args.aff_batch_size, num_workers=args.num_workers,
                                                   seed=args.seed)
    max_step = len(loader) * args.aff_num_epochs
    optimizer = PolyOptimizer(model.param_groups(args.aff_learning_rate), lr=args.aff_learning_rate,
                              weight_decay=args.aff_weight_decay, max_step=max_step)
    overlay_dir = os.path.dirname(artifacts.aff_overlay_path(args.aff_weights_name, "x"))
    start_epoch, _ = open_training(args, "train_aff", args.aff_weights_name, overlay_dir, resume=lambda: (
        resume_checkpoint(args.aff_weights_name, model, optimizer, expect={"kind": "aff"})))
    train_model = wrap_distributed(model, device)

    def one_step(batch) -> Step:
        images = batch["img"].to(device, non_blocking=True)  # (B, 3, crop, crop)
        labels = batch["label"].to(device, non_blocking=True)  # (B, crop/4, crop/4)
        features = train_model(images)  # (B, C, crop/4, crop/4)
        losses = affinity_loss(feature_affinities(features, radius=AFF_RADIUS), labels, radius=AFF_RADIUS)
        return Step(losses["total"], per_image_sums(losses, LOSS_KEYS, len(images)))

    def log_epoch(epoch: int, metrics: dict, sums: dict) -> None:
        log.info("train_aff epoch %d/%d: loss %.4f (bg+ %.3f fg+ %.3f neg %.3f), %.1f s", epoch + 1,
                 args.aff_num_epochs, metrics["total"], metrics["pos_bg"], metrics["pos_fg"], metrics["neg"],
                 metrics["epoch_seconds"])

    def save(epoch_done: int, metrics: dict) -> None:
        save_model(args.aff_weights_name, model, args=args, step=optimizer.global_step, metrics=metrics,
                   optimizer=optimizer, extra={"epoch": epoch_done, "radius": AFF_RADIUS})

    train_epochs("train_aff", model=train_model, optimizer=optimizer, loader=loader, num_epochs=args.aff_num_epochs,
                 start_epoch=start_epoch, begin_epoch=seeded_epochs(dataset, generator, sampler, args.seed),
                 step=one_step, summarize=per_image_means(LOSS_KEYS), log_epoch=log_epoch, save=save)
    if dist.is_main() and args.cam_num_overlays > 0:
        write_affinity_overlays(model, args, names[: args.cam_num_overlays], device)
    log.info("train_aff: weights in %s", args.aff_weights_name)
