"""Engines for the predict pass: the same network, run three ways (``--predict_engine``).

* ``exact``: the network as trained, eager PyTorch (the reference).
* ``fast``: eager PyTorch on a copy with every BatchNorm folded into its convolution (misc.engine.fold_batchnorm):
  one op instead of two per layer, the same logits up to float32 rounding.
* ``onnx``: the folded network exported to ONNX and run by ONNX Runtime's CPU provider (fused conv + activation
  kernels). Optional: it needs the PyPI packages ``onnxruntime`` and ``onnx`` (for the export); without them
  :func:`available_engines` leaves it out. One session per window shape, exported on first use (the TF-"same"
  padding of Lite0 is traced for that shape).

All take a (B, 3, h, w) uint8 window batch and return (B, K, h, w) float32 logits (eval_seg and select_tiles use
``exact``). What each engine measured, against a FLOP yardstick of this CPU, is in BENCHMARKS.md.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import tempfile
import warnings
from typing import Callable

import torch
from torch import nn

from misc.engine import fold_batchnorm, run_with_hooks
from net.registry import PREDICT_ENGINES

log = logging.getLogger(__name__)

ENGINES = PREDICT_ENGINES
ModelFn = Callable[[torch.Tensor], torch.Tensor]


def available_engines() -> tuple[str, ...]:
    """The engines this installation can run (``onnx`` only with onnxruntime and onnx installed)."""
    has_onnx = all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx"))
    return ENGINES if has_onnx else ENGINES[:2]


def conv_macs(model: nn.Module, example: torch.Tensor) -> int:
    """Multiply-accumulates of every convolution and linear layer for one forward pass of ``example``.

    The yardstick for throughput: the network's FLOPs are ``2 × conv_macs`` (norms, activations and resampling are
    memory-bound and left out).
    """
    total = [0]

    def conv_hook(module, _inputs, output):
        kh, kw = module.kernel_size
        total[0] += output.numel() * kh * kw * module.in_channels // module.groups

    def linear_hook(module, _inputs, output):
        total[0] += output.numel() * module.in_features

    handles = [m.register_forward_hook(conv_hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    handles += [m.register_forward_hook(linear_hook) for m in model.modules() if isinstance(m, nn.Linear)]
    run_with_hooks(model, example, handles)
    return total[0]


class _OnnxRunner:
    """ONNX Runtime sessions of one network, one per input shape (C, h, w), batch size left dynamic."""

    def __init__(self, model: nn.Module, threads: int | None):
        self.model = model
        self.threads = threads
        self.sessions: dict[tuple[int, ...], object] = {}
        self.folder = tempfile.TemporaryDirectory(prefix="wsss_onnx_")

    def session(self, shape: tuple[int, ...]):
        if shape not in self.sessions:
            import onnxruntime as ort

            path = os.path.join(self.folder.name, "x".join(map(str, shape)) + ".onnx")
            example = torch.zeros((1, *shape))
            # the export traces one window shape (Lite0's TF-"same" padding becomes constants): expected, so quiet
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                torch.onnx.export(self.model, (example,), path, input_names=["images"], output_names=["logits"],
                                  dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17,
                                  dynamo=False)
            options = ort.SessionOptions()
            options.intra_op_num_threads = self.threads or torch.get_num_threads()
            options.inter_op_num_threads = 1
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            self.sessions[shape] = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            log.info("predict: ONNX Runtime session for windows %s", shape)
        return self.sessions[shape]

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        session = self.session(tuple(images.shape[1:]))
        (logits,) = session.run(None, {"images": images.contiguous().numpy()})
        return torch.from_numpy(logits)


def engine_model_fn(model: nn.Module, engine: str = "exact", *, threads: int | None = None) -> ModelFn:
    """Window batch (B, 3, h, w) uint8 → logits (B, K, h, w) float32 with the chosen engine.

    Args:
        model: an eval-mode network taking [0, 1] float images (e.g. net.seg_net.SegNet); not modified.
        engine: one of :data:`ENGINES` (see the module docstring). ``onnx`` runs on the CPU only.
        threads: ONNX Runtime intra-op threads (None: torch's current setting).
    """
    if engine not in ENGINES:
        raise ValueError(f"predict engine must be one of {ENGINES}, got {engine!r}")
    device = next(model.parameters()).device
    if engine == "onnx":
        if engine not in available_engines():
            raise ImportError("--predict_engine onnx needs: pip install onnxruntime onnx")
        if device.type != "cpu":
            raise ValueError("--predict_engine onnx runs on the CPU; use fast or exact on CUDA")
    net = model if engine == "exact" else fold_batchnorm(model, torch.rand(1, 3, 64, 64, device=device))
    runner = _OnnxRunner(net, threads) if engine == "onnx" else None

    def model_fn(crops: torch.Tensor) -> torch.Tensor:
        images = crops.to(device, non_blocking=True).float().div_(255)
        if runner is not None:
            return runner(images)
        with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
            return net(images)

    return model_fn
