"""Throughput and peak memory of the make_cam pass on a real image list, plus the CAM quality it gives.

    python bench/bench_make_cam.py --voc12_root Dataset/dubai --list Dataset/dubai/lists/train_aug.txt \
        --weights sess/dubai_cam_lite0.pth --out result/bench_make_cam [--limit 100] [--threads 2]

Runs make_cam (multi-scale + flip, the default scales) into --out with --overwrite, then eval_cam, and prints one
JSON line: images/s, seconds/image, peak resident memory (MiB, resource.getrusage), the per-epoch training time
stored in the checkpoint, and the best-threshold mIoU / building IoU.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

import run_sample  # noqa: E402
from data.labels import read_name_list  # noqa: E402
from misc.io import save_text_lines  # noqa: E402


def _last_epoch_seconds(weights: str, ckpt: dict) -> float:
    """From the timings sidecar (misc.artifacts.checkpoint_timings_path); older checkpoints kept it inside."""
    from misc import artifacts  # noqa: E402

    try:
        with open(artifacts.checkpoint_timings_path(weights), encoding="utf-8") as f:
            return float(json.load(f)["checkpoints"][-1]["epoch_seconds"])
    except (OSError, ValueError, KeyError, IndexError):
        return float(ckpt.get("metrics", {}).get("epoch_seconds", float("nan")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--voc12_root", required=True)
    parser.add_argument("--list", required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--out", default="result/bench_make_cam")
    parser.add_argument("--limit", type=int, default=0, help="first N images only (0 = all)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--scales", default="1.0,0.5,1.5,2.0")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    names = read_name_list(args.list)
    if args.limit:
        names = names[: args.limit]
    list_path = os.path.join(args.out, "bench_list.txt")
    save_text_lines(list_path, names)
    common = ["--voc12_root", args.voc12_root, "--infer_list", list_path, "--cam_weights_name", args.weights,
              "--cam_out_dir", args.out, "--cam_scales", args.scales, "--quiet", "True",
              "--log_name", os.path.join(args.out, "bench")]
    tic = time.time()
    run_sample.main(common + ["--make_cam_pass", "True", "--overwrite", "True"])
    seconds = time.time() - tic
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    run_sample.main(common + ["--eval_cam_pass", "True"])
    result = json.load(open(os.path.join(args.out, "eval_cam.json")))
    ckpt = torch.load(args.weights, map_location="cpu", weights_only=False)
    print(json.dumps({
        "images": len(names), "seconds": round(seconds, 1), "images_per_s": round(len(names) / seconds, 3),
        "s_per_image": round(seconds / len(names), 3), "peak_rss_mib": round(peak_mib),
        "train_epoch_seconds_last": round(_last_epoch_seconds(args.weights, ckpt), 1),
        "miou": round(result["miou"], 4), "threshold": result["threshold"],
        "iou": {k: (round(v, 4) if v is not None else None) for k, v in result["iou"].items()},
        "torch_threads": torch.get_num_threads(), "machine": f"{platform.machine()} {os.cpu_count()} cpus"}))


if __name__ == "__main__":
    main()
