"""Pass eval_sem_seg: score the pseudo masks of make_sem_seg against the ground truth.

Reads:  <sem_seg_out_dir>/<name>.png for --eval_list (default --infer_list), <voc12_root>/SegmentationClassAug,
        classes.json
Writes: <sem_seg_out_dir>/eval_sem_seg.json = {"miou", "iou": {class: IoU}, "precision", "recall", "f1" (per class),
        "pixel_accuracy", "confusion" (rows = ground truth), "num_images"}; args_eval_sem_seg.json.
Under torchrun only rank 0 scores, after a barrier.
"""
from __future__ import annotations

import logging

from data.labels import ground_truth_available, load_class_names, read_checked_list
from misc import artifacts, dist
from misc.evaluate import evaluate_label_dir
from misc.io import save_args, save_json

log = logging.getLogger(__name__)
PASS_NAME = "eval_sem_seg"


def run(args) -> None:
    dist.barrier()  # under torchrun: every rank's shard of the predictions is on disk
    if not dist.is_main():
        return  # scoring is cheap and writes one JSON: rank 0 alone
    names = read_checked_list(args.eval_list or args.infer_list, args.voc12_root, skip_bad=args.skip_bad)
    if not ground_truth_available(args.voc12_root, names, PASS_NAME):
        return
    class_names = load_class_names(args.voc12_root)
    result = evaluate_label_dir(args.sem_seg_out_dir, args.voc12_root, names, class_names)
    save_json(artifacts.eval_json_path(args.sem_seg_out_dir, PASS_NAME), result)
    save_args(args, args.sem_seg_out_dir, PASS_NAME)
    rows = ", ".join(f"{k} {v:.3f}" for k, v in result["iou"].items() if v is not None)
    miou = float("nan") if result["miou"] is None else result["miou"]
    log.info("%s %s: mIoU %.4f over %d images | IoU %s", PASS_NAME, args.sem_seg_out_dir, miou, len(names), rows)
