"""Pass train_cam: train the multi-label CAM classifier from image-level labels.

Reads:  --train_list, <voc12_root>/JPEGImages, cls_labels.npy (write_numpy.py), classes.json
Writes: --cam_weights_name (a self-describing checkpoint, rewritten after every epoch so --resume can continue),
        args_train_cam.json next to it.

With --cam_smooth_loss / --cam_boundary_loss > 0, SBNet's edge-aware smoothness and semantic-boundary losses
(misc/structure_losses.py) are added to the multi-label loss; with both 0 (the default) training is exactly the plain
classifier's.
"""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from data.cls_dataset import ClassificationDataset
from data.labels import load_cls_labels, read_checked_list
from misc import artifacts
from misc.structure_losses import boundary_loss, image_edges, pseudo_boundary_target, smoothness_loss
from misc.torchutils import PolyOptimizer, make_train_loader, resume_checkpoint, wrap_distributed
from misc.training import Step, open_training, seeded_epochs, train_epochs
from net.cam_net import CAMNet
from net.zoo import build_model, pretrained_weights, save_model, spec_from_args

log = logging.getLogger(__name__)


def build_cam_net(args, num_classes: int, pretrained: bool = True) -> CAMNet:
    """The CAM network the arguments describe (ImageNet weights only when training from scratch)."""
    weights = pretrained_weights(args.pretrained) if pretrained else None
    if pretrained and weights is None:
        log.warning("train_cam: --pretrained none: the backbone starts from random weights")
    return build_model("cam", *spec_from_args("cam", args, num_classes=num_classes), pretrained=weights)


def cam_step_losses(model, images: torch.Tensor, labels: torch.Tensor, *, smooth_weight: float = 0.0,
                    boundary_weight: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """Loss of one training batch: multi-label soft margin (+ SBNet's structure terms when their weights are > 0).

    images: (B, 3, H, W) in [0, 1]; labels: (B, K) multi-hot. Returns (loss, logits (B, K), {term: value}).
    With both weights 0 this is exactly ``multilabel_soft_margin_loss(model(images), labels)``.
    """
    if smooth_weight <= 0 and boundary_weight <= 0:
        logits = model(images)
        return F.multilabel_soft_margin_loss(logits, labels), logits, {}
    logits, raw_cams, boundary_logits = model(images, with_structure=True)
    loss = F.multilabel_soft_margin_loss(logits, labels)
    parts = {"cls": loss.item()}
    edges = image_edges(images, stride=4)  # (B, 1, ceil(H/4), ceil(W/4)): the structure grid
    grid = edges.shape[-2:]
    if smooth_weight > 0:
        probs = F.interpolate(torch.sigmoid(raw_cams), size=grid, mode="bilinear", align_corners=False)
        smooth = smoothness_loss(probs, edges, labels)
        loss = loss + smooth_weight * smooth
        parts["smooth"] = smooth.item()
    if boundary_weight > 0:
        if boundary_logits is None:
            raise ValueError("--cam_boundary_loss > 0 needs a CAM network built with its boundary head")
        cams = F.interpolate(torch.relu(raw_cams), size=grid, mode="bilinear", align_corners=False)
        target = pseudo_boundary_target(cams, edges, labels)  # (B, K, h4, w4), no gradient
        bound = boundary_loss(boundary_logits[..., : grid[0], : grid[1]], target)
        loss = loss + boundary_weight * bound
        parts["boundary"] = bound.item()
    return loss, logits, parts


def _scale_range(scales) -> tuple[float, float]:
    """--cam_train_scales as a (min, max) pair; one value means a fixed rescale."""
    scales = tuple(float(s) for s in scales)
    if len(scales) not in (1, 2) or min(scales) <= 0:
        raise ValueError(f"--cam_train_scales: expected one or two positive numbers (min,max), got {scales}")
    return (min(scales), max(scales))


def run(args) -> None:
    device = torch.device(args.device)
    cls_labels = load_cls_labels(artifacts.cls_labels_path(args.voc12_root, args.cls_labels_path))
    names = read_checked_list(args.train_list, args.voc12_root, cls_labels=cls_labels, skip_bad=args.skip_bad)
    dataset = ClassificationDataset(args.voc12_root, names, cls_labels, crop_size=args.cam_crop_size,
                                    scale_range=_scale_range(args.cam_train_scales), seed=args.seed)
    num_classes = len(next(iter(cls_labels.values())))
    positives = sum(float(cls_labels[n].max()) > 0 for n in names)
    log.info("train_cam: %d images (%d with a foreground class), %d classes, backbone %s",
             len(names), positives, num_classes, args.backbone)
    if positives == 0:
        raise ValueError(f"{args.train_list}: no image has a positive label; the classifier cannot learn")

    model = build_cam_net(args, num_classes).to(device)
    loader, sampler, generator = make_train_loader(dataset, args.cam_batch_size, num_workers=args.num_workers,
                                                   seed=args.seed)
    max_step = len(loader) * args.cam_num_epochs
    optimizer = PolyOptimizer(model.param_groups(args.cam_learning_rate), lr=args.cam_learning_rate,
                              weight_decay=args.cam_weight_decay, max_step=max_step)
    expect = {"kind": "cam", "num_classes": num_classes}
    start_epoch, _ = open_training(args, "train_cam", args.cam_weights_name, resume=lambda: resume_checkpoint(
        args.cam_weights_name, model, optimizer, expect=expect))
    train_model = wrap_distributed(model, device)

    def one_step(batch) -> Step:
        images = batch["img"].to(device, non_blocking=True)  # (B, 3, S, S)
        labels = batch["label"].to(device, non_blocking=True)  # (B, K)
        loss, logits, parts = cam_step_losses(train_model, images, labels, smooth_weight=args.cam_smooth_loss,
                                              boundary_weight=args.cam_boundary_loss)
        n = len(images)
        correct = ((logits.detach() > 0).float() == labels).float().mean(dim=1).sum().item()
        return Step(loss, {"loss": loss.item() * n, "correct": correct, "seen": n,
                           **{f"loss_{k}": v * n for k, v in parts.items()}})

    def summarize(sums: dict) -> dict:
        seen = max(sums["seen"], 1)
        metrics = {"loss": sums["loss"] / seen, "accuracy": sums["correct"] / seen}
        metrics.update({k: v / seen for k, v in sums.items() if k.startswith("loss_")})
        return metrics

    def log_epoch(epoch: int, metrics: dict, sums: dict) -> None:
        terms = [f"{k} {v:.4f}" for k, v in metrics.items() if k.startswith("loss_")]
        if terms:
            log.info("train_cam epoch %d/%d: %s", epoch + 1, args.cam_num_epochs, ", ".join(terms))
        log.info("train_cam epoch %d/%d: loss %.4f, label accuracy %.3f, %.1f s (%.2f s/image)",
                 epoch + 1, args.cam_num_epochs, metrics["loss"], metrics["accuracy"], metrics["epoch_seconds"],
                 metrics["epoch_seconds"] / max(sums["seen"], 1))

    def save(epoch_done: int, metrics: dict) -> None:
        save_model(args.cam_weights_name, model, args=args, step=optimizer.global_step, metrics=metrics,
                   optimizer=optimizer, extra={"epoch": epoch_done})

    train_epochs("train_cam", model=train_model, optimizer=optimizer, loader=loader, num_epochs=args.cam_num_epochs,
                 start_epoch=start_epoch, begin_epoch=seeded_epochs(dataset, generator, sampler, args.seed),
                 step=one_step, summarize=summarize, log_epoch=log_epoch, save=save)
    log.info("train_cam: weights in %s", args.cam_weights_name)
