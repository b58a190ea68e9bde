"""Pass relabel_seg: one self-training round. The trained segmenter relabels the training images, within their tags.

A segmenter trained on noisy pseudo masks generalises over many images and is usually cleaner than the masks it was
trained on (measured on Dubai in BENCHMARKS.md). This pass predicts every image of --infer_list with
--seg_weights_name (sliding windows, flips with --seg_tta) and keeps, per pixel, the most probable class among those
the image-level tags allow: the tagged classes, plus background on data that has one. Pixels whose winning
probability (renormalised over the allowed classes) is below --relabel_conf_thres become 255 (ignored). Train the
next round with ``--train_seg_pass True --sem_seg_out_dir <relabel_out_dir>``.

Reads:  --seg_weights_name, --infer_list, <voc12_root>/JPEGImages, cls_labels.npy, classes.json
Writes: <relabel_out_dir>/<name>.png uint8 (0 background, 1..K classes, 255 ignored: the pseudo-mask format that
        train_seg and eval_sem_seg read); <relabel_out_dir>/overlays/<name>.png (image | new label | ground truth,
        when present) for the first --cam_num_overlays tagged images; args_relabel_seg.json.
A label is reused only when it is newer than the weights (as eval_seg does), so a killed run resumes and new weights
never keep the old labels; --overwrite recomputes every one.
"""
from __future__ import annotations

import logging
import os

import numpy as np
import torch

from data.labels import background_free, load_class_names, load_cls_labels, overlay_sample, read_checked_list
from data.raster_io import read_image
from misc import artifacts, dist
from misc.io import load_png, save_png
from misc.item_pass import for_each_item, made_after, open_item_pass, segmenter_window_fn
from misc.relabel import tag_restricted_label
from misc.sliding_window import predict_sliding
from misc.visualize import label_overlay, legend_entries, side_by_side

log = logging.getLogger(__name__)
PASS_NAME = "relabel_seg"


def run(args) -> None:
    labels_file = artifacts.cls_labels_path(args.voc12_root, args.cls_labels_path)
    cls_labels = load_cls_labels(labels_file)
    names = read_checked_list(args.infer_list, args.voc12_root, cls_labels=cls_labels, skip_bad=args.skip_bad)
    class_names = load_class_names(args.voc12_root)
    model_fn, _ = segmenter_window_fn(args, class_names)
    has_background = not background_free(args.voc12_root, args.background)
    out_dir = args.relabel_out_dir
    overlay_names = overlay_sample(names, labels_file, args.cam_num_overlays)
    # masks written with other (older) weights are redone, so a new round never keeps the last round's labels
    todo = open_item_pass(args, PASS_NAME, out_dir, names,
                          done=made_after(lambda n: artifacts.sem_seg_path(out_dir, n), args.seg_weights_name))
    log.info("%s: %d images to relabel with %s (%d already done), %s, confidence threshold %.2f", PASS_NAME,
             len(todo), args.seg_weights_name, len(dist.shard(names)) - len(todo),
             "tagged classes + background" if has_background else "tagged classes only (background-free)",
             args.relabel_conf_thres)

    def one(name: str) -> None:
        rgb = read_image(artifacts.image_path(args.voc12_root, name))  # (H, W, 3) uint8
        probs = predict_sliding(model_fn, torch.from_numpy(rgb).permute(2, 0, 1), window=args.predict_window,
                                overlap=args.predict_overlap, num_classes=len(class_names),
                                batch_size=args.predict_batch_size)  # (K+1, H, W)
        keys = np.nonzero(cls_labels[name] > 0.5)[0]  # the image's tags, 0-based
        label = tag_restricted_label(probs, keys, has_background=has_background, conf_thres=args.relabel_conf_thres)
        if name in overlay_names:  # before the label: the label marks the item done
            gt_path = artifacts.mask_path(args.voc12_root, name)
            panels, titles = [rgb, label_overlay(rgb, label)], ["image", "relabelled (tags applied)"]
            gt = load_png(gt_path) if os.path.isfile(gt_path) else None
            if gt is not None and gt.shape == label.shape:  # a colour or misfit mask is not drawn
                panels.append(label_overlay(rgb, gt))
                titles.append("ground truth")
            save_png(artifacts.overlay_path(out_dir, name),
                     side_by_side(panels, titles=titles, legend=legend_entries(class_names)))
        save_png(artifacts.sem_seg_path(out_dir, name), label)

    for_each_item(todo, one, pass_name=PASS_NAME, skip_bad=args.skip_bad)
    dist.barrier()
    log.info("%s: pseudo masks in %s (train the next round with --sem_seg_out_dir %s)", PASS_NAME, out_dir, out_dir)
