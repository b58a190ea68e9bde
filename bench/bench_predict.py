"""Benchmark the predict pass on a big GeoTIFF: throughput (Mpx/s), peak memory, georeferencing kept.

    python bench/bench_predict.py --size 2048                 # quick check
    python bench/bench_predict.py --size 10000                # 10⁸ px synthetic scene (tiled, deflate)
    python bench/bench_predict.py --size 10000 --height 1400  # a wide strip: memory that grows with the width
    python bench/bench_predict.py --scene my.tif --weights sess/seg.pth
    python bench/bench_predict.py --size 2048 --threads 1 --engine onnx   # exact | fast | onnx

Without --scene it writes a synthetic 3-band uint8 GeoTIFF (EPSG:32640, 0.5 m pixels, 512×512 deflate tiles) into a
temporary folder, strip by strip so the writer itself stays small. Without --weights the network is a SegNet with
the ImageNet backbone and an untrained head (the speed and memory do not depend on the weights; its footprints
are noise, which stresses the vectorizer). Prints one JSON line: pixels, seconds, Mpx/s, peak RSS (whole process,
``resource.getrusage``), RSS before the prediction, footprints, and whether CRS and transform were preserved.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import rasterio  # noqa: E402
import torch  # noqa: E402
from affine import Affine  # noqa: E402
from rasterio.crs import CRS  # noqa: E402
from rasterio.windows import Window  # noqa: E402

from misc.torchutils import tune_cpu_allocator  # noqa: E402
from net.seg_net import SegNet  # noqa: E402
from misc.inference_engine import conv_macs, engine_model_fn  # noqa: E402
from misc.sliding_window import window_grid  # noqa: E402
from net.registry import DEFAULT_BACKBONE  # noqa: E402
from net.zoo import load_model  # noqa: E402
from step.predict import predict_scene  # noqa: E402

CRS_EPSG = 32640
TRANSFORM = Affine(0.5, 0.0, 500000.0, 0.0, -0.5, 2800000.0)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def write_synthetic_scene(path: str, size: int, height: int | None = None, seed: int = 0, strip: int = 512) -> None:
    """A size (wide) × height RGB GeoTIFF of sandy ground with roof-like rectangles, written 512 rows at a time."""
    rng = np.random.default_rng(seed)
    height = height or size
    profile = dict(driver="GTiff", width=size, height=height, count=3, dtype="uint8", crs=CRS.from_epsg(CRS_EPSG),
                   transform=TRANSFORM, tiled=True, blockxsize=512, blockysize=512, compress="deflate")
    with rasterio.open(path, "w", **profile) as dst:
        for top in range(0, height, strip):
            rows = min(strip, height - top)
            data = np.empty((3, rows, size), np.uint8)
            base = rng.integers(170, 215, size=(rows, size), dtype=np.uint8)
            data[0], data[1], data[2] = base, base - 8, base - 25
            for _ in range(max(1, size // 40)):  # roofs
                h, w = rng.integers(12, 60, size=2)
                r, c = rng.integers(0, max(1, rows - h)), rng.integers(0, max(1, size - w))
                data[:, r:r + h, c:c + w] = rng.integers(60, 250, size=(3, 1, 1), dtype=np.uint8)
            dst.write(data, window=Window(0, top, size, rows))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=10000, help="side of the synthetic scene (px)")
    parser.add_argument("--height", type=int, default=None, help="height of the synthetic scene (default: --size)")
    parser.add_argument("--scene", default=None, help="an existing scene instead of the synthetic one")
    parser.add_argument("--weights", default=None, help="a train_seg checkpoint (default: untrained head)")
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE)
    parser.add_argument("--head_channels", type=int, default=256)
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--engine", default="exact", choices=("exact", "fast", "onnx"))
    parser.add_argument("--out", default=None, help="output folder (default: a temporary one, deleted)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    malloc_tuned = tune_cpu_allocator(device)  # as run_sample.py does; WSSS_CPU_MALLOC=default measures without

    work = tempfile.mkdtemp(prefix="bench_predict_")
    try:
        scene = args.scene
        if scene is None:
            height = args.height or args.size
            scene = os.path.join(work, f"synthetic_{args.size}x{height}.tif")
            tic = time.time()
            write_synthetic_scene(scene, args.size, height)
            logging.info("wrote %s (%.0f MB) in %.1f s", scene, os.path.getsize(scene) / 2**20, time.time() - tic)
        if args.weights:
            model, ckpt = load_model(args.weights, "seg", device)
            class_names = list(ckpt["class_names"])
        else:
            torch.manual_seed(0)
            model = SegNet(args.backbone, num_classes=2, pretrained="default",
                           head_channels=args.head_channels).to(device).eval()
            class_names = ["background", "building"]
        out_dir = args.out or os.path.join(work, "out")
        # the yardstick: the network's FLOPs per window and what this CPU reaches on a large matmul
        macs = conv_macs(model, torch.zeros(1, 3, args.window, args.window, device=device))
        a = torch.randn(2048, 2048, device=device)
        a @ a
        tic, cpu_tic = time.perf_counter(), time.process_time()
        for _ in range(3):
            a @ a
        roof_gflops = 3 * 2 * 2048 ** 3 / 1e9 / max(time.process_time() - cpu_tic, 1e-9)
        roof_wall_gflops = 3 * 2 * 2048 ** 3 / 1e9 / (time.perf_counter() - tic)
        del a
        model_fn = engine_model_fn(model, args.engine)
        rss_before = peak_rss_mb()
        cpu_start = time.process_time()
        result = predict_scene(scene, out_dir, model_fn, class_names=class_names, window=args.window,
                               overlap=args.overlap, batch_size=args.batch_size)
        cpu_seconds = time.process_time() - cpu_start
        with rasterio.open(scene) as src:
            windows = len(window_grid(src.height, src.width, args.window, args.overlap))
        with rasterio.open(scene) as src, rasterio.open(result["classes"]) as out:
            georef_ok = (src.crs == out.crs and src.transform == out.transform
                         and (src.width, src.height) == (out.width, out.height))
        summary = {
            "scene": scene if args.scene else f"synthetic {args.size}x{args.height or args.size} (WxH)",
            "engine": args.engine, "pixels": result["pixels"], "seconds": round(result["seconds"], 2),
            "cpu_seconds": round(cpu_seconds, 2), "mpx_per_s": round(result["pixels"] / 1e6 / result["seconds"], 4),
            "mpx_per_cpu_s": round(result["pixels"] / 1e6 / cpu_seconds, 4),
            "gmac_per_window": round(macs / 1e9, 3), "matmul_roof_gflops_per_cpu_s": round(roof_gflops, 1),
            "matmul_roof_gflops_wall": round(roof_wall_gflops, 1),
            "windows": windows, "network_gflops_per_cpu_s": round(windows * 2 * macs / 1e9 / cpu_seconds, 1),
            "load_avg": [round(v, 2) for v in os.getloadavg()],
            "peak_rss_mb": round(peak_rss_mb(), 1), "rss_before_predict_mb": round(rss_before, 1),
            "cpu_malloc_tuned": malloc_tuned,
            "footprints": result["num_footprints"], "crs_transform_preserved": georef_ok,
            "window": args.window, "overlap": args.overlap, "batch_size": args.batch_size,
            "threads": torch.get_num_threads(), "device": str(device),
        }
        print(json.dumps(summary))
        return 0 if georef_ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
