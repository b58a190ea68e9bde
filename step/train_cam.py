"""Pass train_cam: train the multi-label CAM classifier from image-level labels.

Reads:  --train_list, <voc12_root>/JPEGImages, cls_labels.npy (write_numpy.py), classes.json
Writes: --cam_weights_name (a self-describing checkpoint, rewritten after every epoch so --resume can continue),
        args_train_cam.json next to it.
"""
from __future__ import annotations

import logging
import os
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, DistributedSampler

from data.cls_dataset import ClassificationDataset
from data.labels import load_cls_labels, read_name_list
from misc import artifacts, dist
from misc.io import save_args
from misc.logutils import progress
from misc.torchutils import PolyOptimizer, check_finite, load_checkpoint, save_checkpoint, seeded_generator
from net.cam_net import CAMNet

log = logging.getLogger(__name__)


def build_cam_net(args, num_classes: int, pretrained: bool = True) -> CAMNet:
    """The CAM network the arguments describe (ImageNet weights only when training from scratch)."""
    weights = None if (not pretrained or str(args.pretrained).lower() == "none") else args.pretrained
    return CAMNet(backbone=args.backbone, num_classes=num_classes, pretrained=weights)


def run(args) -> None:
    device = torch.device(args.device)
    names = read_name_list(args.train_list)
    cls_labels = load_cls_labels(artifacts.cls_labels_path(args.voc12_root, args.cls_labels_path))
    dataset = ClassificationDataset(args.voc12_root, names, cls_labels, crop_size=args.cam_crop_size, seed=args.seed)
    num_classes = len(next(iter(cls_labels.values())))
    positives = sum(float(cls_labels[n].max()) > 0 for n in names)
    log.info("train_cam: %d images (%d with a foreground class), %d classes, backbone %s",
             len(names), positives, num_classes, args.backbone)
    if positives == 0:
        raise ValueError(f"{args.train_list}: no image has a positive label; the classifier cannot learn")

    model = build_cam_net(args, num_classes).to(device)
    sampler = DistributedSampler(dataset, seed=args.seed) if dist.is_distributed() else None
    batch_size = min(args.cam_batch_size, len(dataset))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=sampler is None, sampler=sampler,
                        num_workers=args.num_workers, drop_last=True, generator=seeded_generator(args.seed))
    max_step = len(loader) * args.cam_num_epochs
    optimizer = PolyOptimizer(model.param_groups(args.cam_learning_rate), lr=args.cam_learning_rate,
                              weight_decay=args.cam_weight_decay, max_step=max_step)

    start_epoch = 0
    if args.resume and os.path.isfile(args.cam_weights_name):
        ckpt = load_checkpoint(args.cam_weights_name)
        model.load_state_dict(ckpt["state_dict"])
        if "optimizer" in ckpt:
            optimizer.load_state_dict(ckpt["optimizer"])
        start_epoch = int(ckpt.get("epoch", 0))
        optimizer.global_step = int(ckpt["step"])
        log.info("resuming %s from epoch %d (step %d)", args.cam_weights_name, start_epoch, optimizer.global_step)

    train_model = model
    if dist.is_distributed():
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    if dist.is_main():
        save_args(args, os.path.dirname(os.path.abspath(args.cam_weights_name)), "train_cam")
    metrics = {}
    for epoch in range(start_epoch, args.cam_num_epochs):
        dataset.set_epoch(epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        train_model.train()
        tic = time.time()
        total_loss, total_correct, total_seen = 0.0, 0.0, 0
        for batch in progress(loader, desc=f"train_cam epoch {epoch + 1}/{args.cam_num_epochs}"):
            images = batch["img"].to(device, non_blocking=True)
            labels = batch["label"].to(device, non_blocking=True)
            logits = train_model(images)
            loss = F.multilabel_soft_margin_loss(logits, labels)
            check_finite(loss, where=f"train_cam epoch {epoch + 1} step {optimizer.global_step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(images)
            total_correct += ((logits.detach() > 0).float() == labels).float().mean(dim=1).sum().item()
            total_seen += len(images)
        metrics = {"loss": total_loss / max(total_seen, 1), "accuracy": total_correct / max(total_seen, 1),
                   "epoch_seconds": time.time() - tic}
        log.info("train_cam epoch %d/%d: loss %.4f, label accuracy %.3f, %.1f s (%.2f s/image)",
                 epoch + 1, args.cam_num_epochs, metrics["loss"], metrics["accuracy"], metrics["epoch_seconds"],
                 metrics["epoch_seconds"] / max(total_seen, 1))
        if dist.is_main():
            save_checkpoint(args.cam_weights_name, model=model, args=args, step=optimizer.global_step,
                            metrics=metrics, optimizer=optimizer,
                            extra={"epoch": epoch + 1, "num_classes": num_classes, "kind": "cam"})
        dist.barrier()
    log.info("train_cam: weights in %s", args.cam_weights_name)
