"""The frame and the epoch loop of every training pass: one place for what train_cam, train_irn, train_aff,
train_seg, train_semi and train_ctfa do around their own loss.

    start_epoch, ckpt = open_training(args, "train_irn", args.irn_weights_name, overlay_dir,
                                      resume=lambda: resume_checkpoint(args.irn_weights_name, model, optimizer, ...))
    train_epochs("train_irn", model=train_model, optimizer=optimizer, loader=loader, num_epochs=N,
                 start_epoch=start_epoch, begin_epoch=seeded_epochs(dataset, generator, sampler, args.seed),
                 step=one_step, summarize=metrics_of, log_epoch=log_line, save=save)

``open_training`` restores the checkpoint under --resume (the trainer says how: its model, optimiser and what the
file must be), removes the temporary files a killed run left of the weights (and inside the pass's overlay
folders), and writes ``args_<pass>.json`` next to the weights (rank 0). ``train_epochs`` owns the epochs: per epoch
it calls ``begin_epoch(epoch)`` (seeding, so that a resumed run trains exactly as an uninterrupted one), puts the
model in train mode, runs ``step(batch)`` over the loader with a progress bar (or logged lines off a terminal),
stops on a NaN/inf loss with a message naming the epoch and step, back-propagates and steps the optimiser (its lr
schedule: PolyOptimizer / PolyAdamW decay in ``step()``), sums the step's numbers, sums them over the torchrun
processes (misc.dist), turns them into the epoch's metrics (+ ``epoch_seconds``, which the checkpoint writer keeps
in ``<weights>.timings.json``), logs them and saves the checkpoint (rank 0; atomic, see
misc.torchutils.save_checkpoint) after every epoch, so that --resume continues from the last finished one.
"""
from __future__ import annotations

import os
import time
from typing import Any, Callable, Iterable, NamedTuple

import torch

from misc import dist
from misc.io import save_args
from misc.logutils import progress
from misc.robust import clean_training_outputs
from misc.torchutils import check_finite, seed_epoch


class Step(NamedTuple):
    """What one training step gives the loop.

    loss: the 0-d tensor to back-propagate; sums: numbers to add up over the epoch (e.g. ``loss * batch``, the
    batch size); after: run once the optimiser has stepped (an EMA teacher, a discriminator's own update), returning
    more numbers to add up (or None).
    """
    loss: torch.Tensor
    sums: dict[str, float]
    after: Callable[[], dict[str, float]] | None = None


def open_training(args: Any, pass_name: str, weights_path: str, *folders: str,
                  resume: Callable[[], dict | None], also_weights: Iterable[str] = ()) -> tuple[int, dict | None]:
    """Resume (under --resume), clean a killed run's temp files and write ``args_<pass>.json`` next to the weights.

    ``resume()``: restore the model and optimiser from ``weights_path`` and return the checkpoint (None when there
    is none yet); called only under --resume. ``folders``: overlay folders whose temp files are removed too;
    ``also_weights``: further checkpoints the pass writes (their temp files are removed as well).
    Returns (the epoch to start at, the restored checkpoint or None).
    """
    ckpt = resume() if args.resume else None
    start_epoch = int(ckpt.get("epoch", 0)) if ckpt else 0
    if dist.is_main():
        # temp files left by a run killed while saving the weights (or writing its overlays)
        clean_training_outputs(weights_path, *folders)
        for path in also_weights:
            clean_training_outputs(path)
        save_args(args, os.path.dirname(os.path.abspath(weights_path)), pass_name)
    return start_epoch, ckpt


def seeded_epochs(dataset, generator: torch.Generator, sampler, seed: int) -> Callable[[int], None]:
    """``begin_epoch`` of a pass on one loader from misc.torchutils.make_train_loader: the dataset's augmentation,
    the sample order, dropout and the DistributedSampler's shard all follow (seed, epoch), so --resume is exact."""
    def begin(epoch: int) -> None:
        dataset.set_epoch(epoch)
        seed_epoch(generator, seed, epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)

    return begin


def train_epochs(pass_name: str, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer, loader: Iterable,
                 num_epochs: int, start_epoch: int, begin_epoch: Callable[[int], Any],
                 step: Callable[[Any], Step], summarize: Callable[[dict[str, float]], dict],
                 log_epoch: Callable[[int, dict, dict[str, float]], None],
                 save: Callable[[int, dict], None]) -> dict:
    """Train epochs ``start_epoch .. num_epochs - 1`` (see the module docstring); returns the last epoch's metrics.

    begin_epoch(epoch): before the epoch's first batch (seeding, per-epoch settings).
    step(batch) -> Step: the forward pass and loss of one batch (``optimizer.global_step`` is the step's index).
    summarize(sums) -> metrics: the epoch's metrics from the sums over all steps and processes;
        ``epoch_seconds`` is added to them.
    log_epoch(epoch, metrics, sums): the epoch's log line(s); ``epoch`` counts from 0.
    save(epoch_done, metrics): write the checkpoint (rank 0 only; ``epoch_done`` = epoch + 1, what --resume reads).
    """
    metrics: dict = {}
    for epoch in range(start_epoch, num_epochs):
        begin_epoch(epoch)
        model.train()
        tic = time.time()
        sums: dict[str, float] = {}
        for batch in progress(loader, desc=f"{pass_name} epoch {epoch + 1}/{num_epochs}"):
            out = step(batch)
            check_finite(out.loss, where=f"{pass_name} epoch {epoch + 1} step {optimizer.global_step}")
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            optimizer.step()
            more = out.after() if out.after is not None else None
            for part in (out.sums, more or {}):
                for key, value in part.items():
                    sums[key] = sums.get(key, 0.0) + value
        # every rank adds the same keys in the same order (the first step's), so the sums line up
        sums = dict(zip(sums, dist.all_reduce_sum(list(sums.values()))))
        metrics = summarize(sums)
        metrics["epoch_seconds"] = time.time() - tic
        log_epoch(epoch, metrics, sums)
        if dist.is_main():
            save(epoch + 1, metrics)
        dist.barrier()
    return metrics


def per_image_sums(losses: dict[str, torch.Tensor], keys: Iterable[str], batch_size: int) -> dict[str, float]:
    """A step's sums for per-image epoch means: {key: loss × batch size for each of ``keys``, "seen": batch size}."""
    return {**{k: losses[k].item() * batch_size for k in keys}, "seen": batch_size}


def per_image_means(keys: Iterable[str]) -> Callable[[dict[str, float]], dict]:
    """``summarize`` for :func:`per_image_sums`: {key: sum / images seen} for each of ``keys``."""
    keys = tuple(keys)

    def summarize(sums: dict[str, float]) -> dict:
        seen = max(sums["seen"], 1)
        return {k: sums[k] / seen for k in keys}

    return summarize
