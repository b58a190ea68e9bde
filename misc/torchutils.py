"""Seeds, devices, optimisers and self-describing checkpoints."""
from __future__ import annotations

import io
import json
import logging
import os
import random
from typing import Any, Iterable

import numpy as np
import torch

from misc.io import atomic_path, save_json

log = logging.getLogger(__name__)


def set_seed(seed: int) -> None:
    """Seed python, numpy and torch (all devices) from one integer."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def seeded_generator(seed: int) -> torch.Generator:
    """A CPU generator for DataLoader shuffling, so the sample order depends on --seed only."""
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


def seed_epoch(generator: torch.Generator, seed: int, epoch: int) -> None:
    """Make an epoch's randomness a function of (seed, epoch) alone: the DataLoader ``generator`` (sample order,
    worker seeds) and the global torch RNG (dropout). A run resumed at epoch e then trains exactly as an uninterrupted
    one, which would otherwise draw epoch e's order from a generator that has already shuffled e times."""
    epoch_seed = (int(seed) * 1_000_003 + int(epoch)) % 2**63
    generator.manual_seed(epoch_seed)
    torch.manual_seed(epoch_seed)


def resolve_device(name: str) -> torch.device:
    """'auto' → CUDA when present, else CPU. An unavailable CUDA request is an error, not a silent CPU run."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"--device {name}: CUDA is not available on this machine (use --device auto or cpu)")
    return device


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
CPU_MALLOC_KEEP = 1 << 30  # bytes


def tune_cpu_allocator(device: torch.device | str) -> bool:
    """Keep freed tensor memory in the process on a CPU run instead of handing it back to the kernel.

    glibc serves allocations above its mmap threshold (at most 32 MiB by default) with fresh ``mmap`` pages and
    unmaps them on free, so every large activation of a forward/backward pass is page-faulted in again: AdvCAM at
    512² spent half its time in the kernel. Raising the mmap and trim thresholds to 1 GiB makes glibc reuse the
    memory (measured: AdvCAM 36 → 21 s per 512² image, peak RSS +300 MB; BENCHMARKS.md). No-op on CUDA, on
    non-glibc systems, or when the environment variable ``WSSS_CPU_MALLOC=default`` is set.

    Returns:
        whether the thresholds were changed.
    """
    if torch.device(device).type != "cpu" or os.environ.get("WSSS_CPU_MALLOC", "") == "default":
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        ok = (libc.mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(CPU_MALLOC_KEEP)) == 1
              and libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(CPU_MALLOC_KEEP)) == 1)
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl without mallopt)
        return False
    if ok:
        log.debug("CPU allocator: glibc mmap/trim thresholds raised to %d MiB", CPU_MALLOC_KEEP >> 20)
    return ok


class PolyOptimizer(torch.optim.SGD):
    """SGD whose learning rate decays as ``lr * (1 - step / max_step) ** power`` (IRN's schedule).

    Weight decay and momentum are passed by keyword (IRN passed weight decay positionally into the momentum slot).
    """

    def __init__(self, param_groups: Iterable[dict], lr: float, weight_decay: float, max_step: int,
                 momentum: float = 0.9, power: float = 0.9):
        super().__init__(param_groups, lr=lr, weight_decay=weight_decay, momentum=momentum)
        self.global_step = 0
        self.max_step = max(1, int(max_step))
        self.power = power
        self._initial_lrs = [group["lr"] for group in self.param_groups]

    def step(self, closure=None):
        if self.global_step < self.max_step:
            factor = (1 - self.global_step / self.max_step) ** self.power
            for group, lr0 in zip(self.param_groups, self._initial_lrs):
                group["lr"] = lr0 * factor
        result = super().step(closure)
        self.global_step += 1
        return result


def check_finite(loss: torch.Tensor, *, where: str) -> None:
    """Stop with a clear message when a loss turns NaN/inf (a silent NaN ruins every later artifact)."""
    if not torch.isfinite(loss).all():
        raise FloatingPointError(
            f"{where}: loss is {loss.detach().cpu().tolist()} (not finite); lower the learning rate or check the "
            f"input images for NaN/constant values")


# metrics that measure the machine, not the model: kept out of the checkpoint's bytes (same seed -> same file) and
# written to the timings sidecar instead (misc.artifacts.checkpoint_timings_path)
TIMING_SUFFIX = "_seconds"


def non_finite_entries(state: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors of a state dict that hold NaN or inf."""
    return [k for k, v in state.items()
            if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())]


def save_checkpoint(path: str, *, model: torch.nn.Module, args: Any, step: int, metrics: dict | None = None,
                    optimizer: torch.optim.Optimizer | None = None, extra: dict | None = None) -> None:
    """Write a self-describing checkpoint atomically: weights, the arguments that built the model, step, metrics.

    - Weights with NaN/inf are refused (FloatingPointError) before anything is written: the last good checkpoint
      at ``path`` stays until a finite one replaces it.
    - The file is serialised in memory and written with one checked write: a full disk is a :class:`WriteError`
      naming ``path`` and the cause, never a half-written file or torch's "unexpected pos" message.
    - Timings (metrics ending in ``_seconds``) go to ``<path>.timings.json``, not into the checkpoint, so the same
      seed and inputs give a byte-identical checkpoint.
    """
    from misc import artifacts
    from misc.io import write_bytes

    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    bad = non_finite_entries(state)
    if bad:
        raise FloatingPointError(
            f"not saving {path}: the weights hold NaN/inf ({len(bad)} tensor(s), first {bad[0]!r}) - the training "
            f"diverged; the previous checkpoint at that path (if any) is kept. Lower the learning rate.")
    metrics = dict(metrics or {})
    timings = {k: metrics.pop(k) for k in list(metrics) if k.endswith(TIMING_SUFFIX)}
    payload = {
        "state_dict": state,
        "args": vars(args) if not isinstance(args, dict) else dict(args),
        "step": int(step),
        "metrics": metrics,
        "model_class": type(model).__name__,
    }
    if optimizer is not None:
        payload["optimizer"] = optimizer.state_dict()
    if extra:
        payload.update(extra)
    buffer = io.BytesIO()  # in memory (deterministic archive name too), then one checked write
    torch.save(payload, buffer)
    with atomic_path(path) as tmp:
        write_bytes(tmp, buffer.getbuffer(), final=path)
    if timings:
        _append_timings(artifacts.checkpoint_timings_path(path), int(step), payload.get("epoch"), timings)


def _append_timings(path: str, step: int, epoch, timings: dict) -> None:
    """Keep one row per saved checkpoint (rows of a later step, from a run that was resumed earlier, are dropped)."""
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            rows = [r for r in json.load(f).get("checkpoints", []) if int(r.get("step", -1)) < step]
    except (OSError, ValueError, AttributeError, TypeError):
        rows = []
    rows.append({"step": step, "epoch": epoch, **{k: round(float(v), 3) for k, v in timings.items()}})
    save_json(path, {"checkpoints": rows})


def load_checkpoint(path: str, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` (or a bare state dict); errors name the file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file not found: {path} (train it first, or fix the path)")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:
        raise ValueError(f"cannot read weights file {path}: {err}") from err
    if isinstance(payload, dict) and "state_dict" in payload:
        return payload
    if isinstance(payload, dict) and all(isinstance(v, torch.Tensor) for v in payload.values()):
        return {"state_dict": payload, "args": {}, "step": 0, "metrics": {}}
    raise ValueError(f"{path} is not a checkpoint of this toolkit (no 'state_dict')")


def load_weights(model: torch.nn.Module, checkpoint: dict, *, path: str) -> None:
    """Strictly load weights; a wrong architecture is reported with the file name and the first differing keys or
    shapes (and the backbone the file was trained with, when it says), before anything is copied."""
    state = checkpoint["state_dict"]
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    misfit = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or misfit:
        built = checkpoint.get("args", {})
        hint = f" (it was trained with --backbone {built.get('backbone')})" if built.get("backbone") else ""
        details = (f"missing {missing[:5]}, unexpected {unexpected[:5]}" if missing or unexpected
                   else f"other shapes (file vs model): {misfit[:3]}")
        raise ValueError(f"weights in {path} do not fit {type(model).__name__}{hint}: {details}")
    model.load_state_dict(state, strict=True)


def make_train_loader(dataset, batch_size: int, *, num_workers: int, seed: int):
    """The training DataLoader every training pass uses: seeded shuffling, a DistributedSampler under torchrun,
    full batches only. Returns (loader, sampler or None, generator); reseed the generator per epoch with
    :func:`seed_epoch` and call ``sampler.set_epoch`` so that --resume reproduces an uninterrupted run."""
    from torch.utils.data import DataLoader, DistributedSampler

    from misc import dist

    sampler = DistributedSampler(dataset, seed=seed) if dist.is_distributed() else None
    generator = seeded_generator(seed)
    loader = DataLoader(dataset, batch_size=min(batch_size, len(dataset)), shuffle=sampler is None, sampler=sampler,
                        num_workers=num_workers, drop_last=True, generator=generator)
    return loader, sampler, generator


def resume_checkpoint(path: str, model: torch.nn.Module, optimizer: "PolyOptimizer", *, expect: dict,
                      map_location: str | torch.device = "cpu") -> dict | None:
    """--resume: restore weights, optimiser state and step from ``path`` when it exists (None when it does not).

    ``expect`` holds checkpoint entries that must match (e.g. {"kind": "cam", "num_classes": 1}); a mismatch is an
    error naming the file, so a run never continues from another model's weights.
    """
    if not os.path.isfile(path):
        log.info("--resume: no checkpoint at %s yet, training from the start", path)
        return None
    ckpt = load_checkpoint(path, map_location=map_location)
    found = {key: ckpt.get(key) for key in expect}
    if found != expect:
        raise ValueError(f"--resume: {path} is not the checkpoint this run would write: expected {expect}, "
                         f"found {found}")
    load_weights(model, ckpt, path=path)
    if "optimizer" in ckpt:
        optimizer.load_state_dict(ckpt["optimizer"])
    optimizer.global_step = int(ckpt["step"])
    log.info("resuming %s from epoch %d (step %d)", path, int(ckpt.get("epoch", 0)), optimizer.global_step)
    return ckpt


def wrap_distributed(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel under torchrun, the model itself otherwise."""
    from misc import dist

    if not dist.is_distributed():
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
