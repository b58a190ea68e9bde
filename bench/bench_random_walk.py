"""Wall time and peak memory of the random walk (misc/random_walk.py) on synthetic images.

    python bench/bench_random_walk.py                      # 512², 1024², 2048² images on the CPU
    python bench/bench_random_walk.py --sizes 512 --device cuda
    python bench/bench_random_walk.py --sizes 2048 --threads 1,2 --repeats 2   # thread counts, interleaved

Image size N means stride-4 maps of (N/4)²; K=2 CAM channels, radius 5, beta 10, exp_times 8 (256 steps), as
make_sem_seg runs it. Each size runs in a fresh subprocess so that its peak resident memory (``ru_maxrss``) is its
own; ``baseline_rss_mib`` is the same process after imports, before any map exists. On a shared machine the wall
``seconds`` can exceed ``cpu_seconds / threads``. On CUDA the peak allocated GPU memory is reported too.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def synthetic_inputs(image_size: int, channels: int, seed: int = 0):
    """Stride-4 CAMs (channels, n, n) and a boundary map (n, n) with rectangular 'buildings'."""
    import torch

    n = -(-image_size // 4)
    gen = torch.Generator().manual_seed(seed)
    boundary = torch.rand(n, n, generator=gen) * 0.1
    cams = torch.zeros(channels, n, n)
    for _ in range(max(4, (n // 32) ** 2)):
        y, x = torch.randint(0, n - 8, (2,), generator=gen).tolist()
        h, w = torch.randint(4, 24, (2,), generator=gen).tolist()
        boundary[y:y + h, x] = boundary[y:y + h, min(n - 1, x + w)] = 1.0
        boundary[y, x:x + w] = boundary[min(n - 1, y + h), x:x + w] = 1.0
        cams[int(torch.randint(0, channels, (1,), generator=gen)), y + 1:y + h, x + 1:x + w] = 1.0
    return cams, boundary


def worker(image_size: int, channels: int, device: str, radius: int, beta: float, exp_times: int,
           threads: int = 0) -> dict:
    import torch

    from misc.random_walk import random_walk
    from misc.torchutils import tune_cpu_allocator

    if threads > 0:
        torch.set_num_threads(threads)
    tune_cpu_allocator(torch.device(device))  # as run_sample.py does
    torch.set_grad_enabled(False)
    baseline_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cams, boundary = synthetic_inputs(image_size, channels)
    cams, boundary = cams.to(device), boundary.to(device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    cpu_start = time.process_time()
    # threads=None: the walk runs with this process's thread count (--threads), not the library's default of 1
    out = random_walk(cams, boundary, beta=beta, exp_times=exp_times, radius=radius, threads=None)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    result = {"image_size": image_size, "map_size": list(boundary.shape), "channels": channels, "device": device,
              "torch_threads": torch.get_num_threads(), "seconds": round(seconds, 2),
              "cpu_seconds": round(cpu_seconds, 2),
              "baseline_rss_mib": round(baseline_mib, 1),
              "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
              "finite": bool(torch.isfinite(out).all()), "load_avg": [round(v, 2) for v in os.getloadavg()]}
    if device.startswith("cuda"):
        result["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated() / 2 ** 20, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048], help="image sizes (pixels)")
    parser.add_argument("--channels", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--radius", type=int, default=5)
    parser.add_argument("--beta", type=float, default=10.0)
    parser.add_argument("--exp_times", type=int, default=8)
    parser.add_argument("--threads", default="1",
                        help="comma list of torch thread counts (0: torch's default; the library walks with 1)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per (size, threads), interleaved")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        print(json.dumps(worker(args.worker, args.channels, args.device, args.radius, args.beta, args.exp_times,
                                int(args.threads))))
        return 0
    for size in args.sizes:
        for _ in range(args.repeats):
            for threads in args.threads.split(","):
                cmd = [sys.executable, os.path.abspath(__file__), "--worker", str(size), "--channels",
                       str(args.channels), "--device", args.device, "--radius", str(args.radius), "--beta",
                       str(args.beta), "--exp_times", str(args.exp_times), "--threads", threads]
                done = subprocess.run(cmd, capture_output=True, text=True, check=True)
                print(done.stdout.strip().splitlines()[-1], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
