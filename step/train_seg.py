"""Pass train_seg: train the DeepLabV3+-style segmentation network on pseudo, ground-truth or mixed pixel labels.

Reads:  --train_list, <voc12_root>/JPEGImages, classes.json, and per image (``--seg_label_source``)
        pseudo: <sem_seg_out_dir>/<name>.png | gt: <voc12_root>/SegmentationClassAug/<name>.png |
        mixed: ground truth for the names in --seg_pixel_list, pseudo masks for the others
Writes: --seg_weights_name, a self-describing checkpoint rewritten after every epoch (so --resume continues):
        weights, args, step, epoch, metrics {"loss", "pixel_accuracy", "loss_per_epoch"}, optimizer state and
        kind="seg", num_classes, class_names, backbone, head_channels, label_source; args_train_seg.json next to it.
"""
from __future__ import annotations

import logging
from collections import Counter

import torch

from data.labels import load_class_names, read_checked_list
from data.seg_dataset import SegmentationDataset
from misc import artifacts
from misc.losses import seg_loss
from misc.torchutils import PolyOptimizer, make_train_loader, resume_checkpoint, wrap_distributed
from misc.training import Step, open_training, seeded_epochs, train_epochs
from net.zoo import build_model, pretrained_weights, save_model, spec_from_args

log = logging.getLogger(__name__)


def run(args) -> None:
    device = torch.device(args.device)
    names = read_checked_list(args.train_list, args.voc12_root, skip_bad=args.skip_bad)
    class_names = load_class_names(args.voc12_root)
    num_classes = len(class_names)
    pixel_names = (read_checked_list(args.seg_pixel_list, args.voc12_root, skip_bad=args.skip_bad)
                   if args.seg_label_source == "mixed" and args.seg_pixel_list else None)
    dataset = SegmentationDataset(args.voc12_root, names, num_classes=num_classes, crop_size=args.seg_crop_size,
                                  label_source=args.seg_label_source, pseudo_dir=args.sem_seg_out_dir,
                                  pixel_names=pixel_names, augment=args.seg_augment, seed=args.seed)
    counts = Counter(dataset.sources.values())
    log.info("train_seg: %d images (%d ground truth, %d pseudo masks from %s), %d classes %s, backbone %s",
             len(names), counts["gt"], counts["pseudo"], args.sem_seg_out_dir, num_classes, class_names,
             args.seg_backbone or args.backbone)

    model = build_model("seg", *spec_from_args("seg", args, num_classes=num_classes),
                        pretrained=pretrained_weights(args.pretrained)).to(device)
    loader, sampler, generator = make_train_loader(dataset, args.seg_batch_size, num_workers=args.num_workers,
                                                   seed=args.seed)
    max_step = len(loader) * args.seg_num_epochs
    optimizer = PolyOptimizer(model.param_groups(args.seg_learning_rate), lr=args.seg_learning_rate,
                              weight_decay=args.seg_weight_decay, max_step=max_step)
    expect = {"kind": "seg", "num_classes": num_classes}
    start_epoch, ckpt = open_training(args, "train_seg", args.seg_weights_name, resume=lambda: resume_checkpoint(
        args.seg_weights_name, model, optimizer, expect=expect, map_location=device))
    loss_per_epoch = list(ckpt.get("metrics", {}).get("loss_per_epoch", [])) if ckpt else []
    train_model = wrap_distributed(model, device)

    def one_step(batch) -> Step:
        images = batch["img"].to(device, non_blocking=True)  # (B, 3, S, S)
        labels = batch["label"].to(device, non_blocking=True)  # (B, S, S)
        logits = train_model(images)  # (B, K, S, S)
        loss, valid = seg_loss(logits, labels)
        correct = int(((logits.detach().argmax(1) == labels) & (labels != artifacts.IGNORE_INDEX)).sum())
        return Step(loss, {"loss": loss.item() * valid, "valid": valid, "correct": correct, "images": len(images)})

    def summarize(sums: dict) -> dict:
        loss_per_epoch.append(sums["loss"] / max(sums["valid"], 1))
        return {"loss": loss_per_epoch[-1], "pixel_accuracy": sums["correct"] / max(sums["valid"], 1),
                "loss_per_epoch": loss_per_epoch}

    def log_epoch(epoch: int, metrics: dict, sums: dict) -> None:
        log.info("train_seg epoch %d/%d: loss %.4f, pixel accuracy %.3f, %.1f s (%.2f s/image)",
                 epoch + 1, args.seg_num_epochs, metrics["loss"], metrics["pixel_accuracy"], metrics["epoch_seconds"],
                 metrics["epoch_seconds"] / max(sums["images"], 1))

    def save(epoch_done: int, metrics: dict) -> None:
        save_model(args.seg_weights_name, model, args=args, step=optimizer.global_step, metrics=metrics,
                   optimizer=optimizer, extra={"epoch": epoch_done, "class_names": class_names,
                                               "label_source": args.seg_label_source})

    # dropout and order depend on (seed, epoch): --resume is exact
    train_epochs("train_seg", model=train_model, optimizer=optimizer, loader=loader, num_epochs=args.seg_num_epochs,
                 start_epoch=start_epoch, begin_epoch=seeded_epochs(dataset, generator, sampler, args.seed),
                 step=one_step, summarize=summarize, log_epoch=log_epoch, save=save)
    log.info("train_seg: weights in %s", args.seg_weights_name)
