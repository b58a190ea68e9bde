"""Pass eval_seg: predict the held-out images with the trained segmentation network and score them.

Reads:  --seg_val_list (default --eval_list, then --infer_list), <voc12_root>/JPEGImages, SegmentationClassAug,
        classes.json, --seg_weights_name
Writes: <seg_out_dir>/<name>.png (uint8 predicted class index, sliding windows --predict_window/--predict_overlap),
        <seg_out_dir>/overlays/<name>.png for the first --seg_num_overlays images (image | prediction | ground
        truth), <seg_out_dir>/eval_seg.json = {"miou", "iou", "precision", "recall", "f1": {class: value},
        "pixel_accuracy", "confusion", "num_images", "weights"} (scored by misc.evaluate.evaluate_label_dir),
        args_eval_seg.json.
A prediction is reused only when it is newer than --seg_weights_name (predictions depend on the weights, which may
have changed since the last run), so a killed run resumes; --overwrite recomputes every one.
"""
from __future__ import annotations

import logging

import torch

from data.labels import ground_truth_available, load_class_names, load_ground_truth, read_checked_list
from data.raster_io import read_image
from misc import artifacts, dist
from misc.evaluate import evaluate_label_dir
from misc.io import save_json, save_png
from misc.item_pass import for_each_item, made_after, open_item_pass, segmenter_window_fn
from misc.sliding_window import predict_sliding
from misc.visualize import label_overlay, legend_entries, side_by_side

log = logging.getLogger(__name__)


def run(args) -> None:
    names = read_checked_list(args.seg_val_list or args.eval_list or args.infer_list, args.voc12_root, skip_bad=args.skip_bad)
    if not ground_truth_available(args.voc12_root, names, "eval_seg"):
        return
    class_names = load_class_names(args.voc12_root)
    model_fn, _ = segmenter_window_fn(args, class_names)
    todo = open_item_pass(args, "eval_seg", args.seg_out_dir, names, done=made_after(
        lambda n: artifacts.seg_pred_path(args.seg_out_dir, n), args.seg_weights_name))
    overlay_names = set(names[: args.seg_num_overlays])

    def one(name: str) -> None:
        rgb = read_image(artifacts.image_path(args.voc12_root, name))  # (H, W, 3) uint8
        probs = predict_sliding(model_fn, torch.from_numpy(rgb).permute(2, 0, 1), window=args.predict_window,
                                overlap=args.predict_overlap, num_classes=len(class_names),
                                batch_size=args.predict_batch_size)  # (K, H, W)
        pred = probs.argmax(0).to(torch.uint8).cpu().numpy()  # (H, W)
        if name in overlay_names:  # before the prediction: the prediction marks the item done
            gt = load_ground_truth(args.voc12_root, name, pred.shape)
            save_png(artifacts.overlay_path(args.seg_out_dir, name),
                     side_by_side([rgb, label_overlay(rgb, pred), label_overlay(rgb, gt)],
                                  titles=["image", "prediction", "ground truth"], legend=legend_entries(class_names)))
        save_png(artifacts.seg_pred_path(args.seg_out_dir, name), pred)

    # every image is scored, so a bad one stops the pass (--skip_bad would leave a hole in the scores)
    for_each_item(todo, one, pass_name="eval_seg", skip_bad=False)
    dist.barrier()
    if not dist.is_main():
        return
    result = evaluate_label_dir(args.seg_out_dir, args.voc12_root, names, class_names, path_of=artifacts.seg_pred_path)
    result["weights"] = args.seg_weights_name
    save_json(artifacts.eval_json_path(args.seg_out_dir, "eval_seg"), result)
    rows = ", ".join(f"{k} {v:.3f}" for k, v in result["iou"].items() if v is not None)
    miou = float("nan") if result["miou"] is None else result["miou"]
    log.info("eval_seg %s on %d images: mIoU %.4f | IoU %s", args.seg_weights_name, len(names), miou, rows)
