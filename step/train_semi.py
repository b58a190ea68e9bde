"""Pass train_semi: semi-supervised segmentation from a few labelled tiles and many unlabelled ones (ALS4GAN's S4GAN).

Reads:  --semi_labeled_list (ground truth <voc12_root>/SegmentationClassAug/<name>.png is used for these only),
        --semi_unlabeled_list (default: --train_list minus the labelled tiles; only their images are read),
        <voc12_root>/JPEGImages, classes.json, optionally --semi_init_weights (a segmentation checkpoint to start from).
Writes: --semi_weights_name, a train_seg-format checkpoint (kind "seg", num_classes, class_names, backbone,
        head_channels, label_source "semi_<method>") rewritten after every epoch, so eval_seg / predict load it with
        --seg_weights_name; it also holds "teacher_state_dict" (self_training), "discriminator" and
        "discriminator_optimizer" (s4gan) and "semi" (the method's settings) for --resume; args_train_semi.json.

Each step sees a labelled batch (supervised cross-entropy) and an unlabelled batch (pseudo-label cross-entropy,
weight --semi_unsup_weight, switched on after --semi_warmup_epochs); an epoch is one pass over the unlabelled tiles.

- ``self_training``: the pseudo labels come from an EMA teacher (mean teacher; ``--semi_ema_decay``, 0 = the
  current student) run in eval mode without gradient on the same crop; pixels whose top teacher probability is
  below ``--semi_conf_thres`` are ignored (with ``--semi_class_portion p`` > 0, each predicted class keeps at least
  its most confident fraction p: CBST's class-balanced selection, see misc/semi.py). An EMA teacher rather than the
  student itself: its predictions change slowly, so a pixel's pseudo label does not follow the student's own last
  mistake (confirmation bias). The teacher copies the student during the warm-up and then averages with mean
  teacher's ramp min(decay, 1 - 1/(k + 1)), so the first pseudo labels come from the warmed-up network, not from the
  random initial head.
- ``s4gan``: as in S4GAN/ALS4GAN, the student's own detached prediction is the pseudo label of a whole tile, used only
  when a discriminator on (image, softmax) pairs — trained to tell one-hot ground truth from predictions — gives the
  tile a confidence above ``--s4gan_disc_thres``; plus S4GAN's feature-matching loss (weight --s4gan_fm_weight)
  between the discriminator's pooled features of ground truth and of predictions. Simplifications: the
  discriminator's "real" pairs are the labelled batch of the same step (S4GAN draws a second labelled batch), and
  softmax maps are zeroed on crop padding, as the one-hot ground truth is on ignored pixels, so padding is no cue.

The saved "state_dict" is the student (the network trained by gradient), as train_seg saves its network.
"""
from __future__ import annotations

import copy
import logging
import os
from typing import Iterator

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from data.labels import load_class_names, read_checked_list
from data.seg_dataset import SegmentationDataset
from data.unlabeled_dataset import UnlabeledCropDataset
from misc import dist
from misc.semi import (confident_pseudo_labels, ema_decay_at, ema_update, feature_matching_loss, gated_pseudo_labels,
                       one_hot_labels, set_requires_grad)
from misc.losses import seg_loss
from misc.torchutils import PolyOptimizer, check_finite, load_checkpoint, load_weights, seed_epoch, seeded_generator
from misc.training import Step, open_training, train_epochs
from net.discriminator import S4GANDiscriminator
from net.registry import SEMI_METHODS
from net.seg_net import SegNet
from net.zoo import build_model, model_from_checkpoint, pretrained_weights, save_model, spec_from_args

log = logging.getLogger(__name__)

METHODS = SEMI_METHODS


def split_names(labeled: list[str], unlabeled: list[str] | None, train: list[str] | None) -> tuple[list[str], list[str]]:
    """(labelled, unlabelled) names: unlabelled defaults to ``train`` minus ``labeled``; overlaps are dropped."""
    labeled_set = set(labeled)
    pool = unlabeled if unlabeled is not None else (train or [])
    overlap = [n for n in pool if n in labeled_set]
    if overlap and unlabeled is not None:
        log.warning("%d tiles are in both the labelled and the unlabelled list; they are used as labelled only, "
                    "e.g. %s", len(overlap), overlap[:3])
    rest = [n for n in pool if n not in labeled_set]
    if not rest:
        raise ValueError("train_semi: no unlabelled tiles left (give --semi_unlabeled_list, or a --train_list with "
                         "tiles outside --semi_labeled_list)")
    return list(labeled), rest


def _labeled_batches(loader: DataLoader, dataset, generator: torch.Generator, seed: int, epoch: int
                     ) -> Iterator[dict]:
    """Endless batches of the (small) labelled loader during ``epoch``: each pass over it gets its own order and
    augmentation from (seed, epoch, pass) alone, so a resumed run sees the batches an uninterrupted one would."""
    passes = 0
    while True:
        key = epoch * 100_003 + passes
        generator.manual_seed((int(seed) * 1_000_003 + key) % 2**63)
        dataset.set_epoch(key)
        yield from loader
        passes += 1


def self_training_losses(student: torch.nn.Module, teacher: torch.nn.Module, images_l: torch.Tensor,
                         labels_l: torch.Tensor, images_u: torch.Tensor, valid_u: torch.Tensor, *,
                         conf_thres: float, class_portion: float = 0.0) -> dict:
    """Supervised CE on (images_l (Bl, 3, S, S), labels_l (Bl, S, S)) and CE on images_u against the teacher's
    confident pseudo labels (pixels below ``conf_thres`` or outside ``valid_u`` (Bu, S, S) ignored).

    Returns {"sup", "unsup": 0-d tensors with gradient, "pseudo_pixels": int, "valid_pixels": int}.
    """
    with torch.no_grad():
        teacher_probs = torch.softmax(teacher(images_u).float(), dim=1)  # (Bu, K, S, S)
    pseudo = confident_pseudo_labels(teacher_probs, conf_thres, valid_u, class_portion)  # (Bu, S, S)
    logits = student(torch.cat([images_l, images_u]))  # (Bl + Bu, K, S, S); GroupNorm is per sample
    loss_sup, _ = seg_loss(logits[:len(images_l)], labels_l)
    loss_unsup, pseudo_pixels = seg_loss(logits[len(images_l):], pseudo)
    return {"sup": loss_sup, "unsup": loss_unsup, "pseudo_pixels": pseudo_pixels, "valid_pixels": int(valid_u.sum())}


def s4gan_losses(student: torch.nn.Module, disc: S4GANDiscriminator, images_l: torch.Tensor, labels_l: torch.Tensor,
                 images_u: torch.Tensor, valid_u: torch.Tensor, *, disc_thres: float) -> dict:
    """The segmenter's S4GAN losses: supervised CE, CE on the discriminator-accepted tiles' own argmax, and
    feature matching. The discriminator is frozen here (gradients flow through it into the student only).

    Returns {"sup", "unsup", "fm": 0-d tensors, "probs_u": (Bu, K, S, S) detached masked softmax (the fakes for
    :func:`discriminator_loss`), "accepted": int tiles, "pseudo_pixels", "valid_pixels": int}.
    """
    num_classes = disc.num_classes
    logits = student(torch.cat([images_l, images_u]))  # (Bl + Bu, K, S, S)
    logits_l, logits_u = logits[:len(images_l)], logits[len(images_l):]
    loss_sup, _ = seg_loss(logits_l, labels_l)
    probs_u = torch.softmax(logits_u.float(), dim=1) * valid_u[:, None]  # (Bu, K, S, S), 0 on padding
    set_requires_grad(disc, False)
    try:
        fake_logits, fake_features = disc(images_u, probs_u)  # (Bu,), (Bu, C)
        with torch.no_grad():
            _, real_features = disc(images_l, one_hot_labels(labels_l, num_classes))  # (Bl, C)
    finally:
        set_requires_grad(disc, True)
    confidence = torch.sigmoid(fake_logits.detach())  # (Bu,) "this prediction looks like ground truth"
    pseudo = gated_pseudo_labels(probs_u.detach(), confidence, disc_thres, valid_u)  # (Bu, S, S)
    loss_unsup, pseudo_pixels = seg_loss(logits_u, pseudo)
    return {"sup": loss_sup, "unsup": loss_unsup, "fm": feature_matching_loss(real_features, fake_features),
            "probs_u": probs_u.detach(), "accepted": int((confidence > disc_thres).sum()),
            "pseudo_pixels": pseudo_pixels, "valid_pixels": int(valid_u.sum())}


def discriminator_loss(disc: S4GANDiscriminator, images_l: torch.Tensor, labels_l: torch.Tensor,
                       images_u: torch.Tensor, probs_u: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy: one-hot ground truth of the labelled tiles is real (1), predictions are fake (0)."""
    real_logits, _ = disc(images_l, one_hot_labels(labels_l, disc.num_classes))
    fake_logits, _ = disc(images_u, probs_u)
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return 0.5 * (real + fake)


def build_student(args, num_classes: int, device: torch.device) -> SegNet:
    """From --semi_init_weights (its own architecture) or fresh (ImageNet backbone, --seg_head_channels)."""
    if not args.semi_init_weights:
        return build_model("seg", *spec_from_args("seg", args, num_classes=num_classes),
                           pretrained=pretrained_weights(args.pretrained)).to(device)
    ckpt = load_checkpoint(args.semi_init_weights, map_location="cpu")
    if ckpt.get("kind") != "seg" or int(ckpt.get("num_classes", -1)) != num_classes:
        raise ValueError(f"--semi_init_weights {args.semi_init_weights} is not a segmentation checkpoint for "
                         f"{num_classes} classes (kind {ckpt.get('kind')!r}, num_classes {ckpt.get('num_classes')})")
    model = model_from_checkpoint(ckpt, "seg", path=args.semi_init_weights)
    log.info("train_semi: starting from %s", args.semi_init_weights)
    return model.to(device)


def run(args) -> None:
    if args.semi_method not in METHODS:
        raise ValueError(f"--semi_method must be one of {METHODS}, got {args.semi_method!r}")
    if dist.is_distributed():
        raise RuntimeError("train_semi runs in a single process (its teacher/discriminator are not synchronised "
                           "across ranks); start it without torchrun")
    if not 0.0 <= args.semi_class_portion <= 1.0:
        raise ValueError(f"--semi_class_portion must lie in [0, 1], got {args.semi_class_portion}")
    if not args.semi_labeled_list:
        raise ValueError("train_semi needs --semi_labeled_list (e.g. the list written by select_tiles)")
    device = torch.device(args.device)
    class_names = load_class_names(args.voc12_root)
    num_classes = len(class_names)
    labeled, unlabeled = split_names(
        read_checked_list(args.semi_labeled_list, args.voc12_root, skip_bad=args.skip_bad),
        read_checked_list(args.semi_unlabeled_list, args.voc12_root, skip_bad=args.skip_bad) if args.semi_unlabeled_list else None,
        None if args.semi_unlabeled_list else read_checked_list(args.train_list, args.voc12_root, skip_bad=args.skip_bad))
    method = args.semi_method
    log.info("train_semi (%s): %d labelled tiles (%s), %d unlabelled, %d classes %s", method, len(labeled),
             args.semi_labeled_list, len(unlabeled), num_classes, class_names)

    labeled_set = SegmentationDataset(args.voc12_root, labeled, num_classes=num_classes, crop_size=args.seg_crop_size,
                                      label_source="gt", seed=args.seed)
    unlabeled_set = UnlabeledCropDataset(args.voc12_root, unlabeled, crop_size=args.seg_crop_size, seed=args.seed + 1)
    batch_size = args.seg_batch_size
    labeled_generator, unlabeled_generator = seeded_generator(args.seed), seeded_generator(args.seed + 1)
    labeled_loader = DataLoader(labeled_set, batch_size=min(batch_size, len(labeled_set)), shuffle=True,
                                drop_last=True, num_workers=args.num_workers, generator=labeled_generator)
    unlabeled_loader = DataLoader(unlabeled_set, batch_size=min(batch_size, len(unlabeled_set)), shuffle=True,
                                  drop_last=True, num_workers=args.num_workers, generator=unlabeled_generator)
    steps_per_epoch = len(unlabeled_loader)
    warmup_steps = steps_per_epoch * args.semi_warmup_epochs

    model = build_student(args, num_classes, device)
    optimizer = PolyOptimizer(model.param_groups(args.seg_learning_rate), lr=args.seg_learning_rate,
                              weight_decay=args.seg_weight_decay, max_step=steps_per_epoch * args.semi_num_epochs)
    teacher, disc, disc_optimizer = None, None, None
    if method == "self_training":
        teacher = copy.deepcopy(model).eval()  # eval: no dropout in the pseudo labels
        set_requires_grad(teacher, False)
    else:
        disc = build_model("disc", *spec_from_args("disc", args, num_classes=num_classes)).to(device).train()
        disc_optimizer = torch.optim.Adam(disc.parameters(), lr=args.s4gan_disc_lr, betas=(0.9, 0.99))

    def restore() -> dict | None:
        """--resume: the student, its optimiser and the method's own state (teacher, discriminator)."""
        if not os.path.isfile(args.semi_weights_name):
            log.info("--resume: no checkpoint at %s yet, training from the start", args.semi_weights_name)
            return None
        ckpt = load_checkpoint(args.semi_weights_name, map_location=device)
        if ckpt.get("kind") != "seg" or ckpt.get("semi", {}).get("method") != method:
            raise ValueError(f"--resume: {args.semi_weights_name} is not a train_semi {method} checkpoint "
                             f"(kind {ckpt.get('kind')!r}, semi {ckpt.get('semi')})")
        load_weights(model, ckpt, path=args.semi_weights_name)
        optimizer.load_state_dict(ckpt["optimizer"])
        if teacher is not None:
            teacher.load_state_dict(ckpt["teacher_state_dict"])
        if disc is not None:
            disc.load_state_dict(ckpt["discriminator"])
            disc_optimizer.load_state_dict(ckpt["discriminator_optimizer"])
        optimizer.global_step = int(ckpt["step"])
        log.info("resuming %s from epoch %d (step %d)", args.semi_weights_name, int(ckpt["epoch"]),
                 optimizer.global_step)
        return ckpt

    start_epoch, ckpt = open_training(args, "train_semi", args.semi_weights_name, resume=restore)
    loss_per_epoch = list(ckpt.get("metrics", {}).get("loss_per_epoch", [])) if ckpt else []
    sup_per_epoch = list(ckpt.get("metrics", {}).get("loss_sup_per_epoch", [])) if ckpt else []
    epoch_state: dict = {}  # the current epoch's labelled batches and pseudo-label weight

    def begin_epoch(epoch: int) -> None:
        seed_epoch(unlabeled_generator, args.seed + 1, epoch)  # order and dropout from (seed, epoch): exact --resume
        unlabeled_set.set_epoch(epoch)
        epoch_state.update(
            epoch=epoch, labeled=_labeled_batches(labeled_loader, labeled_set, labeled_generator, args.seed, epoch),
            unsup_weight=args.semi_unsup_weight if epoch >= args.semi_warmup_epochs else 0.0)

    def one_step(batch_u) -> Step:
        batch_l = next(epoch_state["labeled"])
        images_l = batch_l["img"].to(device, non_blocking=True)  # (Bl, 3, S, S)
        labels_l = batch_l["label"].to(device, non_blocking=True)  # (Bl, S, S)
        images_u = batch_u["img"].to(device, non_blocking=True)  # (Bu, 3, S, S)
        valid_u = batch_u["valid"].to(device, non_blocking=True)  # (Bu, S, S)
        unsup_weight = epoch_state["unsup_weight"]
        where = f"train_semi epoch {epoch_state['epoch'] + 1} step {optimizer.global_step}"
        if method == "self_training":
            if unsup_weight > 0:
                out = self_training_losses(model, teacher, images_l, labels_l, images_u, valid_u,
                                           conf_thres=args.semi_conf_thres, class_portion=args.semi_class_portion)
            else:  # warm-up: the teacher's guesses are not used yet, so do not pay for them
                out = {"sup": seg_loss(model(images_l), labels_l)[0], "unsup": torch.zeros((), device=device),
                       "pseudo_pixels": 0, "valid_pixels": int(valid_u.sum())}
            loss = out["sup"] + unsup_weight * out["unsup"]
        else:
            out = s4gan_losses(model, disc, images_l, labels_l, images_u, valid_u, disc_thres=args.s4gan_disc_thres)
            loss = out["sup"] + unsup_weight * out["unsup"] + args.s4gan_fm_weight * out["fm"]

        def after() -> dict:
            """Once the student stepped: the teacher follows it, the discriminator takes its own step."""
            if teacher is not None:  # a copy during the warm-up, then the ramped average (see the docstring)
                ema_update(teacher, model, ema_decay_at(optimizer.global_step - 1 - warmup_steps, args.semi_ema_decay)
                           if unsup_weight > 0 else 0.0)
            if disc is None:
                return {}
            loss_disc = discriminator_loss(disc, images_l, labels_l, images_u, out["probs_u"])
            check_finite(loss_disc, where=f"{where} (discriminator)")
            disc_optimizer.zero_grad(set_to_none=True)
            loss_disc.backward()
            disc_optimizer.step()
            return {"disc": loss_disc.item(), "fm": out["fm"].item(), "accepted": out["accepted"]}

        return Step(loss, {"loss": loss.item(), "sup": out["sup"].item(), "unsup": out["unsup"].item(),
                           "pseudo_pixels": out["pseudo_pixels"], "valid_pixels": out["valid_pixels"],
                           "tiles": len(images_u)}, after)

    def summarize(sums: dict) -> dict:
        means = {k: sums.get(k, 0.0) / max(steps_per_epoch, 1) for k in ("loss", "sup", "unsup", "fm", "disc")}
        loss_per_epoch.append(means["loss"])
        sup_per_epoch.append(means["sup"])
        metrics = {"loss": means["loss"], "loss_sup": means["sup"], "loss_unsup": means["unsup"],
                   "pseudo_pixel_fraction": sums.get("pseudo_pixels", 0) / max(sums.get("valid_pixels", 0), 1),
                   "unsup_weight": epoch_state["unsup_weight"], "loss_per_epoch": loss_per_epoch,
                   "loss_sup_per_epoch": sup_per_epoch}
        if disc is not None:
            metrics.update(loss_fm=means["fm"], loss_disc=means["disc"],
                           accepted_tile_fraction=sums.get("accepted", 0) / max(sums.get("tiles", 0), 1))
        return metrics

    def log_epoch(epoch: int, metrics: dict, sums: dict) -> None:
        log.info("train_semi epoch %d/%d: loss %.4f (sup %.4f, unsup %.4f x %.2f), pseudo-labelled pixels %.1f %%%s, "
                 "%.1f s", epoch + 1, args.semi_num_epochs, metrics["loss"], metrics["loss_sup"], metrics["loss_unsup"],
                 metrics["unsup_weight"], 100 * metrics["pseudo_pixel_fraction"],
                 "" if disc is None else f", accepted tiles {100 * metrics['accepted_tile_fraction']:.1f} %, "
                                         f"D loss {metrics['loss_disc']:.3f}, FM {metrics['loss_fm']:.4f}",
                 metrics["epoch_seconds"])

    def save(epoch_done: int, metrics: dict) -> None:
        extra = {"epoch": epoch_done, "class_names": class_names, "label_source": f"semi_{method}",
                 "semi": {"method": method, "labeled_list": args.semi_labeled_list, "num_labeled": len(labeled),
                          "num_unlabeled": len(unlabeled), "conf_thres": args.semi_conf_thres,
                          "class_portion": args.semi_class_portion, "ema_decay": args.semi_ema_decay,
                          "disc_thres": args.s4gan_disc_thres}}
        if teacher is not None:
            extra["teacher_state_dict"] = {k: v.detach().cpu() for k, v in teacher.state_dict().items()}
        if disc is not None:
            extra["discriminator"] = {k: v.detach().cpu() for k, v in disc.state_dict().items()}
            extra["discriminator_optimizer"] = disc_optimizer.state_dict()
            extra["discriminator_config"] = disc.config
        save_model(args.semi_weights_name, model, args=args, step=optimizer.global_step, metrics=metrics,
                   optimizer=optimizer, extra=extra)

    train_epochs("train_semi", model=model, optimizer=optimizer, loader=unlabeled_loader,
                 num_epochs=args.semi_num_epochs, start_epoch=start_epoch, begin_epoch=begin_epoch, step=one_step,
                 summarize=summarize, log_epoch=log_epoch, save=save)
    log.info("train_semi: weights in %s (evaluate with --eval_seg_pass True --seg_weights_name %s)",
             args.semi_weights_name, args.semi_weights_name)
