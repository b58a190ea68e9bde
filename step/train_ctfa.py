"""Pass train_ctfa: CTFA (TGRS 2024), single-stage weakly supervised segmentation on a ViT (or CNN) backbone.

Reads:  --train_list, <voc12_root>/JPEGImages, cls_labels.npy, classes.json
Writes: --cam_weights_name: the whole network (kind "ctfa", self-describing, rewritten after every epoch so --resume
        continues); step/make_cam.py reads it like a CAM classifier and writes the standard CAM .npz files.
        --ctfa_seg_weights_name: its backbone + dual-branch decoder as a segmentation checkpoint (kind "seg",
        decoder "ctfa"), which eval_seg and predict load through --seg_weights_name.
        args_train_ctfa.json next to the weights.

One step on a batch of crops (B, 3, S, S) with image-level labels (B, K):
    cls     multi-label soft margin of the logits (global max pooling of the final tokens, 1×1 classifier)
    patch   CTLM patch-wise: |relu(R_final) − relu(R_intermediate)|, R = the cosine relation of the patch tokens
    class   CTLM class-wise: 1 − cos(projected class token of each local crop, that of the global view)
    seg, fg after --ctfa_warmup_epochs: pseudo labels from the network's own CAMs (upsampled to the crop, PAR-refined,
            two background thresholds) train the dual-branch decoder (combined cross-entropy + foreground BCE)
    loss = cls + w_patch·patch + w_class·class + w_seg·seg + w_fg·fg
"""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from data.cls_dataset import ClassificationDataset
from data.labels import background_free, load_class_names, load_cls_labels, read_checked_list
from misc import artifacts
from misc.ctfa import (cams_to_pseudo_labels, class_token_consistency_loss, dual_branch_losses, patch_relation_loss,
                       random_local_crops)
from misc.torchutils import make_train_loader, resume_checkpoint, save_checkpoint, seeded_generator, wrap_distributed
from misc.training import Step, open_training, seeded_epochs, train_epochs
from net.ctfa_net import CTFANet

log = logging.getLogger(__name__)


class PolyAdamW(torch.optim.AdamW):
    """AdamW whose learning rates decay as ``lr · (1 − step / max_step) ** power``; counts ``global_step`` like
    misc.torchutils.PolyOptimizer, so resume_checkpoint restores it the same way."""

    def __init__(self, param_groups, lr: float, weight_decay: float, max_step: int, power: float = 0.9):
        super().__init__(param_groups, lr=lr, weight_decay=weight_decay)
        self.global_step = 0
        self.max_step = max(1, int(max_step))
        self.power = power
        self._initial_lrs = [group["lr"] for group in self.param_groups]

    def step(self, closure=None):
        factor = max(0.0, 1 - self.global_step / self.max_step) ** self.power
        for group, lr0 in zip(self.param_groups, self._initial_lrs):
            group["lr"] = lr0 * factor
        result = super().step(closure)
        self.global_step += 1
        return result


def build_ctfa_net(args, num_classes: int) -> CTFANet:
    weights = None if str(args.pretrained).lower() == "none" else args.pretrained
    return CTFANet(backbone=args.ctfa_backbone, num_classes=num_classes, pretrained=weights,
                   aux_layer=args.ctfa_aux_layer, head_channels=args.ctfa_head_channels)


def ctfa_step_losses(model, images: torch.Tensor, labels: torch.Tensor, *, weights: dict[str, float],
                     with_pseudo_labels: bool, high: float, low: float, no_background: bool, par_num_iter: int,
                     par_dilations: tuple[int, ...], num_local: int, local_size: int,
                     generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """Loss of one batch (see the module docstring). images (B, 3, S, S) in [0, 1]; labels (B, K) multi-hot.

    ``weights``: {"patch", "class", "seg", "fg"}. Returns (loss, logits (B, K), {term: value}), the terms being
    the unweighted losses plus "labelled_fraction", the share of crop pixels the pseudo labels do not ignore.
    """
    out = model(images, with_ctfa=True)
    loss = F.multilabel_soft_margin_loss(out.logits, labels)
    parts = {"cls": loss.item()}
    if weights["patch"] > 0:
        patch = patch_relation_loss(out.final, out.intermediate)
        loss = loss + weights["patch"] * patch
        parts["patch"] = patch.item()
    if weights["class"] > 0 and num_local > 0:
        local = torch.stack([model(crop, embed_only=True)
                             for crop in random_local_crops(images, num_local, local_size, generator)], dim=1)
        cls_term = class_token_consistency_loss(out.embedding, local)  # local (B, V, D) vs global (B, D)
        loss = loss + weights["class"] * cls_term
        parts["class"] = cls_term.item()
    if with_pseudo_labels and (weights["seg"] > 0 or weights["fg"] > 0):
        size = images.shape[-2:]
        cams = F.interpolate(out.cams.detach(), size=size, mode="bilinear", align_corners=False)  # (B, K, S, S)
        target = cams_to_pseudo_labels(cams, labels, high=high, low=low, background_free=no_background,
                                       images=images, par_num_iter=par_num_iter, par_dilations=par_dilations)
        semantic = F.interpolate(out.semantic, size=size, mode="bilinear", align_corners=False)
        foreground = F.interpolate(out.foreground, size=size, mode="bilinear", align_corners=False)
        seg, fg = dual_branch_losses(semantic, foreground, target)
        loss = loss + weights["seg"] * seg + weights["fg"] * fg
        parts.update(seg=seg.item(), fg=fg.item())
        parts["labelled_fraction"] = float((target != artifacts.IGNORE_INDEX).float().mean())
    return loss, out.logits, parts


def save_segmenter(path: str, model: CTFANet, *, args, step: int, epoch: int, class_names: list[str],
                   metrics: dict) -> None:
    """The backbone + decoder half as a train_seg-format checkpoint (kind "seg", decoder "ctfa")."""
    from net.ctfa_net import CTFASegmenter

    model = getattr(model, "module", model)
    config = {k: model.config[k] for k in ("backbone", "num_classes", "head_channels", "decoder")}
    segmenter = CTFASegmenter(config["backbone"], config["num_classes"], pretrained=None,
                              head_channels=config["head_channels"])
    segmenter.load_state_dict(model.segmenter_state_dict(), strict=True)
    save_checkpoint(path, model=segmenter, args=args, step=step, metrics=metrics,
                    extra={"kind": "seg", "epoch": epoch, "class_names": class_names, "label_source": "ctfa",
                           **config})


def run(args) -> None:
    device = torch.device(args.device)
    cls_labels = load_cls_labels(artifacts.cls_labels_path(args.voc12_root, args.cls_labels_path))
    names = read_checked_list(args.train_list, args.voc12_root, cls_labels=cls_labels, skip_bad=args.skip_bad)
    class_names = load_class_names(args.voc12_root)
    no_background = background_free(args.voc12_root, args.background)
    scales = tuple(float(s) for s in args.cam_train_scales)
    dataset = ClassificationDataset(args.voc12_root, names, cls_labels, crop_size=args.ctfa_crop_size,
                                    scale_range=(min(scales), max(scales)), seed=args.seed)
    num_classes = len(next(iter(cls_labels.values())))
    if args.ctfa_bg_low > args.ctfa_bg_high:
        raise ValueError(f"--ctfa_bg_low {args.ctfa_bg_low} must not exceed --ctfa_bg_high {args.ctfa_bg_high}")
    if not any(float(cls_labels[n].max()) > 0 for n in names):
        raise ValueError(f"{args.train_list}: no image has a positive label; the classifier cannot learn")
    log.info("train_ctfa: %d images, %d classes, backbone %s, %s", len(names), num_classes, args.ctfa_backbone,
             "background-free" if no_background else "with background")

    model = build_ctfa_net(args, num_classes).to(device)
    loader, sampler, generator = make_train_loader(dataset, args.ctfa_batch_size, num_workers=args.num_workers,
                                                   seed=args.seed)
    max_step = len(loader) * args.ctfa_num_epochs
    optimizer = PolyAdamW(model.param_groups(args.ctfa_learning_rate), lr=args.ctfa_learning_rate,
                          weight_decay=args.ctfa_weight_decay, max_step=max_step)
    expect = {"kind": "ctfa", "num_classes": num_classes}
    start_epoch, _ = open_training(args, "train_ctfa", args.cam_weights_name, also_weights=[args.ctfa_seg_weights_name],
                                   resume=lambda: resume_checkpoint(args.cam_weights_name, model, optimizer,
                                                                    expect=expect, map_location=device))
    train_model = wrap_distributed(model, device)
    weights = {"patch": args.ctfa_patch_weight, "class": args.ctfa_class_weight, "seg": args.ctfa_seg_weight,
               "fg": args.ctfa_fg_weight}
    par_iter = args.par_num_iter if args.ctfa_par else 0
    par_dilations = tuple(int(d) for d in args.par_dilations)
    seed_loader = seeded_epochs(dataset, generator, sampler, args.seed)
    epoch_state: dict = {}

    def begin_epoch(epoch: int) -> None:
        seed_loader(epoch)
        # local-crop boxes: a function of (seed, epoch)
        epoch_state.update(crops=seeded_generator(args.seed * 1_000_003 + epoch + 1),
                           pseudo=epoch >= args.ctfa_warmup_epochs)

    def one_step(batch) -> Step:
        images = batch["img"].to(device, non_blocking=True)
        labels = batch["label"].to(device, non_blocking=True)
        loss, logits, parts = ctfa_step_losses(
            train_model, images, labels, weights=weights, with_pseudo_labels=epoch_state["pseudo"],
            high=args.ctfa_bg_high, low=args.ctfa_bg_low, no_background=no_background, par_num_iter=par_iter,
            par_dilations=par_dilations, num_local=args.ctfa_num_local, local_size=args.ctfa_local_size,
            generator=epoch_state["crops"])
        n = len(images)
        sums = {key: value * n for key, value in {"total": loss.item(), **parts}.items()}
        sums.update(correct=((logits.detach() > 0).float() == labels).float().mean(dim=1).sum().item(), seen=n)
        return Step(loss, sums)

    def summarize(sums: dict) -> dict:
        seen = max(sums["seen"], 1)
        metrics = {("loss" if k == "total" else k if k.endswith("_fraction") else f"loss_{k}"): sums[k] / seen
                   for k in sorted(sums) if k not in ("correct", "seen")}
        metrics["accuracy"] = sums["correct"] / seen
        return metrics

    def log_epoch(epoch: int, metrics: dict, sums: dict) -> None:
        log.info("train_ctfa epoch %d/%d: %s, label accuracy %.3f, %.1f s", epoch + 1, args.ctfa_num_epochs,
                 ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k.startswith("loss")),
                 metrics["accuracy"], metrics["epoch_seconds"])

    def save(epoch_done: int, metrics: dict) -> None:
        save_checkpoint(args.cam_weights_name, model=model, args=args, step=optimizer.global_step,
                        metrics=metrics, optimizer=optimizer,
                        extra={"epoch": epoch_done, "num_classes": num_classes, "kind": "ctfa",
                               "class_names": class_names, "model_config": dict(model.config)})
        save_segmenter(args.ctfa_seg_weights_name, model, args=args, step=optimizer.global_step,
                       epoch=epoch_done, class_names=class_names,
                       metrics={k: v for k, v in metrics.items() if not k.endswith("_seconds")})

    train_epochs("train_ctfa", model=train_model, optimizer=optimizer, loader=loader, num_epochs=args.ctfa_num_epochs,
                 start_epoch=start_epoch, begin_epoch=begin_epoch, step=one_step, summarize=summarize,
                 log_epoch=log_epoch, save=save)
    log.info("train_ctfa: network in %s, segmenter in %s", args.cam_weights_name, args.ctfa_seg_weights_name)
