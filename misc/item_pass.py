"""The frame of a per-item inference pass: the output folder, this rank's pending items and the guarded item loop.

    todo = open_item_pass(args, "make_cam", out_dir, names, lambda n: artifacts.cam_path(out_dir, n))
    for_each_item(todo, do_one, pass_name="make_cam", skip_bad=args.skip_bad)

``open_item_pass`` removes the stale temp files of a killed run from ``out_dir``, writes ``args_<pass>.json`` there
(rank 0) and returns this rank's share of ``names`` whose artifact is not complete yet (all of them under
--overwrite), so a rerun resumes where a killed one stopped; a pass whose outputs depend on a weights file counts
only those written after it (``done=made_after(...)``). ``for_each_item`` runs ``do_one(name)`` over them with a
progress bar, without gradients, in ``workers`` processes when asked (CPU-only work such as the CRF), and under
--skip_bad logs, counts and skips an item that fails on its own.
"""
from __future__ import annotations

import functools
import multiprocessing
import os
from typing import Any, Callable

import torch

from misc import dist
from misc.io import is_complete, save_args
from misc.logutils import progress
from misc.robust import ITEM_ERRORS, BadItems, describe, pending_items, prepare_out_dir


def open_item_pass(args: Any, pass_name: str, out_dir: str, names: list[str],
                   artifact_of: Callable[[str], str] | None = None, *, done: Callable[[str], bool] | None = None,
                   pending_name: str | None = None) -> list[str]:
    """Prepare ``out_dir`` and return this rank's pending names (see the module docstring).

    ``artifact_of(name)``: the file whose completeness marks the item done (the last one the item writes); or
    ``done(name)``: whether the item is done, for passes with their own rule (e.g. :func:`made_after`).
    ``pending_name``: how the log names the pass when it redoes incomplete artifacts (default ``pass_name``).
    """
    prepare_out_dir(out_dir)
    if dist.is_main():
        save_args(args, out_dir, pass_name)
    mine = dist.shard(names)
    if done is not None:
        return [n for n in mine if args.overwrite or not done(n)]
    return pending_items(mine, artifact_of, overwrite=args.overwrite, pass_name=pending_name or pass_name)


def made_after(artifact_of: Callable[[str], str], source: str) -> Callable[[str], bool]:
    """``done`` for :func:`open_item_pass`: the item's artifact is complete and newer than ``source`` (the weights
    it was computed with), so new weights never keep the old outputs."""
    source_time = os.path.getmtime(source)

    def done(name: str) -> bool:
        path = artifact_of(name)
        return is_complete(path) and os.path.getmtime(path) > source_time

    return done


def for_each_item(todo: list[str], do_one: Callable[[str], Any], *, pass_name: str, skip_bad: bool,
                  gradients: bool = False, workers: int = 1) -> BadItems:
    """``do_one(name)`` for every name, in inference mode unless ``gradients`` (AdvCAM climbs on the input); returns
    the skipped items' record after logging its summary.

    ``workers`` > 1 (and more than one item): ``do_one`` runs in that many processes (it must pickle: a module-level
    function or a ``functools.partial`` of one); a worker's bad item travels back as a reason and is counted here.
    """
    bad = BadItems(pass_name, skip_bad=skip_bad)
    workers = min(int(workers), len(todo))
    if workers > 1:
        # one process per worker (e.g. the single-threaded C++ CRF); fork keeps start-up cheap where it exists
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        with multiprocessing.get_context(method).Pool(workers) as pool:
            for name, reason in progress(pool.imap_unordered(functools.partial(_run_or_skip, do_one, skip_bad), todo),
                                         desc=pass_name, total=len(todo)):
                if reason is not None:
                    bad.record(name, reason)
    else:
        with torch.inference_mode(not gradients):
            for name in progress(todo, desc=pass_name):
                with bad.guard(name):
                    do_one(name)
    bad.log_summary()
    return bad


def _run_or_skip(do_one: Callable[[str], Any], skip_bad: bool, name: str) -> tuple[str, str | None]:
    """``do_one(name)`` in a worker process: (name, None) when done, (name, reason) for a bad item under --skip_bad
    (the parent logs and counts it); other errors travel to the parent as they are."""
    try:
        do_one(name)
        return name, None
    except ITEM_ERRORS as err:
        if not skip_bad:
            raise
        return name, describe(err)


def start_cam_pass(args: Any, pass_name: str):
    """The frame of make_cam and make_adv_cam before their loop: the list, the image-level labels, the CAM network
    (--cam_weights_name), the output folder (args json, stale temp files removed), the overlay sample and this rank's
    pending names.

    Returns (names, cls_labels, model, overlay_names, todo)."""
    from data.labels import load_cls_labels, overlay_sample, read_checked_list
    from misc import artifacts
    from net.zoo import load_model

    labels_file = artifacts.cls_labels_path(args.voc12_root, args.cls_labels_path)
    cls_labels = load_cls_labels(labels_file)
    names = read_checked_list(args.infer_list, args.voc12_root, cls_labels=cls_labels, skip_bad=args.skip_bad)
    model, _ = load_model(args.cam_weights_name, "cam", torch.device(args.device))
    todo = open_item_pass(args, pass_name, args.cam_out_dir, names, lambda n: artifacts.cam_path(args.cam_out_dir, n),
                          pending_name="cam")
    overlay_names = overlay_sample(names, labels_file, args.cam_num_overlays)
    return names, cls_labels, model, overlay_names, todo


def segmenter_window_fn(args: Any, class_names: list[str]):
    """(window function, checkpoint) of the segmenter --seg_weights_name for eval_seg and relabel_seg: the exact
    engine, flips averaged with --seg_tta. A segmenter trained on other classes than classes.json's is an error."""
    import torch

    from misc import artifacts
    from misc.inference_engine import engine_model_fn
    from misc.tta import flip_tta
    from net.zoo import load_model

    model, ckpt = load_model(args.seg_weights_name, "seg", torch.device(args.device))
    if ckpt.get("class_names") and list(ckpt["class_names"]) != class_names:
        raise ValueError(f"{args.seg_weights_name} was trained on classes {ckpt['class_names']}, but "
                         f"{artifacts.classes_json_path(args.voc12_root)} lists {class_names}")
    model_fn = engine_model_fn(model, "exact")
    return (flip_tta(model_fn) if args.seg_tta else model_fn), ckpt
