"""Pass eval_cam: score CAMs against the ground-truth masks over a sweep of background thresholds.

Background-free data (``--background none``, or ``auto`` with ``background_free`` in classes.json) has no threshold
to sweep: each pixel takes its best-scoring present class, and the JSON's "threshold" is null.

Reads:  <cam_out_dir>/<name>.npz for --eval_list (default --infer_list), <voc12_root>/SegmentationClassAug,
        classes.json
Writes: <cam_out_dir>/eval_cam.json = {"miou", "iou": {class: IoU}, "threshold", "sweep": [{threshold, miou,
        iou}], ...} at the best threshold (or at --cam_eval_thres when given); args_eval_cam.json.
Under torchrun only rank 0 scores, after a barrier.
"""
from __future__ import annotations

import logging

from data.labels import background_free, ground_truth_available, load_class_names, read_checked_list
from misc import artifacts, dist
from misc.evaluate import DEFAULT_SWEEP, best_of_sweep, sweep_cams
from misc.io import save_args, save_json

log = logging.getLogger(__name__)

def log_table(result: dict, title: str) -> None:
    rows = ", ".join(f"{k} {v:.3f}" for k, v in result["iou"].items() if v is not None)
    where = ("argmax of the present classes (background-free)" if result["threshold"] is None
             else f"threshold {result['threshold']:.2f}")
    log.info("%s: mIoU %.4f at %s | IoU %s", title, result["miou"], where, rows)


def run(args) -> None:
    dist.barrier()  # under torchrun: every rank's shard of the predictions is on disk
    if not dist.is_main():
        return  # scoring is cheap and writes one JSON: rank 0 alone
    names = read_checked_list(args.eval_list or args.infer_list, args.voc12_root, skip_bad=args.skip_bad)
    if not ground_truth_available(args.voc12_root, names, "eval_cam"):
        return
    class_names = load_class_names(args.voc12_root)
    if background_free(args.voc12_root, args.background):
        thresholds = (float("-inf"),)  # no background score: the best present class everywhere
    elif args.cam_eval_thres is not None:
        thresholds = (args.cam_eval_thres,)
    else:
        thresholds = DEFAULT_SWEEP
    conf = sweep_cams(args.cam_out_dir, args.voc12_root, names, len(class_names), thresholds,
                      class_scale=args.class_scale)
    result = best_of_sweep(conf, thresholds, class_names)
    result["num_images"] = len(names)
    save_json(artifacts.eval_json_path(args.cam_out_dir, "eval_cam"), result)
    save_args(args, args.cam_out_dir, "eval_cam")
    log_table(result, f"eval_cam {args.cam_out_dir}")
