"""Benchmark AdvCAM (pass make_adv_cam) against plain multi-scale CAMs (pass make_cam), per image.

    python bench/bench_advcam.py --sizes 256,512 --num_images 2 --device cpu --threads 1
    python bench/bench_advcam.py --engines exact,fast --repeats 2 --threads 1   # A/B, each run in a fresh process

With several --engines (or --repeats > 1) every (size, engine) run is a fresh subprocess, interleaved
(exact, fast, exact, fast, ...), so each peak RSS is its own and load drifts hit both engines alike; the report adds
the largest CAM difference between the engines (same images, max-normalised as the artifact stores them).

Seed settings by default (adv_iter 2, AD_coeff 7, AD_stepsize 0.08, score_th 0.6, scales 1.0,0.5,1.5,2.0) on a
random-weight CAMNet, or on trained weights with --weights. Images are procedural aerial scenes (data/synthetic.py),
every foreground class counted as present. Reports seconds per image for both passes (wall clock, and the process's
CPU time) and their ratio, peak memory (CPU: the process's maximum resident set, resource.getrusage — monotone, so it
is read after each pass in order of increasing size; CUDA: torch.cuda.max_memory_allocated, reset before each pass),
and forward/backward passes per image against the algorithm's minimum. Prints one JSON line, then a table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data.synthetic import generate_scene  # noqa: E402
from misc.adv_climb import ClimbStats, input_gradients_only, minimum_passes  # noqa: E402
from misc.cam_maps import multiscale_cams  # noqa: E402
from misc.cli import float_list  # noqa: E402
from misc.torchutils import resolve_device, tune_cpu_allocator  # noqa: E402
from net.cam_net import CAMNet  # noqa: E402
from net.registry import DEFAULT_BACKBONE  # noqa: E402
from net.zoo import load_model  # noqa: E402
from step.make_adv_cam import multiscale_adv_cams  # noqa: E402


def int_list(value: str) -> tuple[int, ...]:
    return tuple(int(v) for v in float_list(value))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--weights", default=None, help="a CAM checkpoint (default: a random-weight CAMNet)")
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE, choices=("efficientnet_lite0", "resnet50"),
                        help="random-weight network only")
    parser.add_argument("--num_classes", type=int, default=1, help="random-weight network only")
    parser.add_argument("--sizes", type=int_list, default=(256, 512), help="square image sides")
    parser.add_argument("--num_images", type=int, default=2, help="timed images per size")
    parser.add_argument("--cam_scales", type=float_list, default=(1.0, 0.5, 1.5, 2.0))
    parser.add_argument("--adv_iter", type=int, default=2)
    parser.add_argument("--AD_coeff", type=float, default=7.0)
    parser.add_argument("--AD_stepsize", type=float, default=0.08)
    parser.add_argument("--score_th", type=float, default=0.6)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: leave torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--engine", default="exact", choices=("exact", "fast"), help="AdvCAM engine (one run)")
    parser.add_argument("--engines", default=None, help="comma list: A/B runs in fresh processes, interleaved")
    parser.add_argument("--repeats", type=int, default=1, help="with --engines: runs per engine")
    parser.add_argument("--skip_make_cam", action="store_true", help="time AdvCAM only")
    parser.add_argument("--save_cams", default=None, help=argparse.SUPPRESS)
    return parser


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    # ru_maxrss: KiB on Linux, bytes on macOS
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if platform.system() == "Darwin" else rss / 2**10


def cpu_seconds() -> float:
    """User + system CPU time of this process: on a shared, busy machine it is steadier than the wall clock."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def compare_engines(args, argv: list[str]) -> int:
    """Run one fresh process per (repeat, engine), interleaved; print each JSON line and a summary."""
    import subprocess
    import tempfile

    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    strip = {"--engines", "--repeats", "--engine"}
    base, skip = [], False
    for a in argv:  # the worker gets every option except the A/B ones
        if skip:
            skip = False
            continue
        if a in strip:
            skip = True
            continue
        if a.split("=", 1)[0] in strip:
            continue
        base.append(a)
    runs: dict[str, list[dict]] = {e: [] for e in engines}
    cams: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for i, engine in enumerate(engines):
                cmd = [sys.executable, os.path.abspath(__file__), *base, "--engine", engine]
                if repeat == 0:
                    cams[engine] = os.path.join(tmp, f"{engine}.npz")
                    cmd += ["--save_cams", cams[engine]]
                if repeat > 0 or i > 0:
                    cmd += ["--skip_make_cam"]
                done = subprocess.run(cmd, capture_output=True, text=True, check=True)
                line = done.stdout.strip().splitlines()[0]
                print(line, flush=True)
                runs[engine].append(json.loads(line))
        ref = np.load(cams[engines[0]])
        summary = {"bench": "advcam_engines", "load_avg": [round(v, 2) for v in os.getloadavg()], "rows": []}
        for engine in engines:
            other = np.load(cams[engine])
            diff = max(float(np.abs(other[k] - ref[k]).max()) for k in ref.files)
            for size in args.sizes:
                rows = [r for run in runs[engine] for r in run["rows"] if r["size"] == size]
                summary["rows"].append({
                    "engine": engine, "size": size,
                    "advcam_s_per_image_min": min(r["advcam_s_per_image"] for r in rows),
                    "advcam_cpu_s_per_image_min": min(r["advcam_cpu_s_per_image"] for r in rows),
                    "advcam_peak_mb_max": max(r["advcam_peak_mb"] for r in rows),
                    "max_cam_diff_to_" + engines[0]: diff})
    print(json.dumps(summary))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.engines:
        return compare_engines(args, argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    malloc_tuned = tune_cpu_allocator(device)  # as run_sample.py does; WSSS_CPU_MALLOC=default measures without
    torch.manual_seed(args.seed)
    if args.weights:
        model, _ = load_model(args.weights, "cam", device)
    else:
        model = CAMNet(args.backbone, num_classes=args.num_classes, pretrained=None).to(device).eval()
    keys = np.arange(model.num_classes, dtype=np.int64)  # every class present: the most work per image
    climb = dict(adv_iter=args.adv_iter, ad_coeff=args.AD_coeff, ad_stepsize=args.AD_stepsize, score_th=args.score_th)

    # warm-up (allocator, kernels, first-call overheads), untimed
    warm = generate_scene((min(args.sizes), min(args.sizes)), seed=args.seed)[0]
    from misc.adv_climb import climb_network

    build_start = time.perf_counter()
    climber = climb_network(model, args.engine)  # the fast engine's folded copy, built once as the pass does
    build_s = time.perf_counter() - build_start
    with input_gradients_only(climber):
        multiscale_adv_cams(climber, warm, keys, (1.0,), engine=args.engine, **climb)
    saved = {}

    rows = []
    for size in sorted(args.sizes):
        images = [generate_scene((size, size), seed=args.seed + 1 + i)[0] for i in range(args.num_images)]
        reset_peak(device)
        sync(device)
        start, cpu_start = time.perf_counter(), cpu_seconds()
        with torch.inference_mode():
            for image in ([] if args.skip_make_cam else images):
                multiscale_cams(model, image, args.cam_scales)
        sync(device)
        cam_s = (time.perf_counter() - start) / len(images)
        cam_cpu = (cpu_seconds() - cpu_start) / len(images)
        cam_mem = peak_memory_mb(device)

        stats = ClimbStats()
        reset_peak(device)
        sync(device)
        start, cpu_start = time.perf_counter(), cpu_seconds()
        with input_gradients_only(climber):
            for i, image in enumerate(images):
                _, high = multiscale_adv_cams(climber, image, keys, args.cam_scales, stats=stats, engine=args.engine,
                                              **climb)
                stats.target_logits.clear()
                saved[f"{size}_{i}"] = (high / high.flatten(1).amax(1).clamp_min(1e-5)[:, None, None]).cpu().numpy()
        sync(device)
        adv_s = (time.perf_counter() - start) / len(images)
        adv_cpu = (cpu_seconds() - cpu_start) / len(images)
        adv_mem = peak_memory_mb(device)
        least_f, least_b = minimum_passes(len(args.cam_scales), args.adv_iter, len(keys))
        rows.append({
            "size": size, "images": len(images),
            "make_cam_s_per_image": round(cam_s, 3), "advcam_s_per_image": round(adv_s, 3),
            "ratio_to_make_cam": round(adv_s / cam_s, 2) if not args.skip_make_cam else None,
            "make_cam_cpu_s_per_image": round(cam_cpu, 3), "advcam_cpu_s_per_image": round(adv_cpu, 3),
            "make_cam_peak_mb": round(cam_mem, 1), "advcam_peak_mb": round(adv_mem, 1),
            "forwards_per_image": stats.forwards / len(images), "backwards_per_image": stats.backwards / len(images),
            "min_forwards": least_f, "min_backwards": least_b,
        })

    report = {
        "bench": "advcam", "engine": args.engine, "engine_build_s": round(build_s, 3),
        "load_avg": [round(v, 2) for v in os.getloadavg()], "device": str(device),
        "threads": torch.get_num_threads(), "cpu_malloc_tuned": malloc_tuned,
        "network": args.weights or f"random {args.backbone}", "num_classes": model.num_classes,
        "scales": list(args.cam_scales), "adv_iter": args.adv_iter, "AD_coeff": args.AD_coeff,
        "AD_stepsize": args.AD_stepsize, "score_th": args.score_th,
        "peak_memory": "cuda max_memory_allocated" if device.type == "cuda" else "process maxrss (monotone)",
        "rows": rows,
    }
    print(json.dumps(report))
    if args.save_cams:
        np.savez(args.save_cams, **saved)
    header = ("size", "make_cam s/img", "AdvCAM s/img", "ratio", "make_cam CPU s/img", "AdvCAM CPU s/img",
              "make_cam MB", "AdvCAM MB", "fwd/img (min)", "bwd/img (min)")
    print(" | ".join(header))
    for r in rows:
        print(" | ".join([
            f"{r['size']}²", f"{r['make_cam_s_per_image']:.2f}", f"{r['advcam_s_per_image']:.2f}",
            f"{r['ratio_to_make_cam'] or float('nan'):.1f}x", f"{r['make_cam_cpu_s_per_image']:.2f}",
            f"{r['advcam_cpu_s_per_image']:.2f}", f"{r['make_cam_peak_mb']:.0f}", f"{r['advcam_peak_mb']:.0f}",
            f"{r['forwards_per_image']:g} ({r['min_forwards']})", f"{r['backwards_per_image']:g} ({r['min_backwards']})",
        ]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
