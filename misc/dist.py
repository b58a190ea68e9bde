"""torchrun support: process group set-up, rank-sharded inference, rank-0-only writes.

Under ``torchrun --nproc_per_node=N run_sample.py ...`` the environment carries RANK/WORLD_SIZE/LOCAL_RANK; a plain
``python run_sample.py`` is world size 1 and none of this does anything.
"""
from __future__ import annotations

import os
from typing import Sequence, TypeVar

import torch
import torch.distributed as torch_dist

T = TypeVar("T")


def is_distributed() -> bool:
    return torch_dist.is_available() and torch_dist.is_initialized()


def rank() -> int:
    return torch_dist.get_rank() if is_distributed() else int(os.environ.get("RANK", 0))


def world_size() -> int:
    return torch_dist.get_world_size() if is_distributed() else int(os.environ.get("WORLD_SIZE", 1))


def is_main() -> bool:
    return rank() == 0


def init_distributed(device: torch.device) -> torch.device:
    """Join the process group when launched by torchrun (NCCL on CUDA, gloo on CPU); returns this rank's device."""
    if int(os.environ.get("WORLD_SIZE", 1)) <= 1 or is_distributed():
        return device
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    torch_dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device


def shard(items: Sequence[T]) -> list[T]:
    """This rank's share of ``items`` (round-robin, so every rank gets a similar mix)."""
    return list(items[rank()::world_size()])


def all_reduce_sum(values: Sequence[float]) -> list[float]:
    """Sum numbers over all ranks (epoch loss totals, counts); the values themselves when not distributed."""
    if not is_distributed():
        return [float(v) for v in values]
    tensor = torch.tensor([float(v) for v in values], dtype=torch.float64)
    if torch_dist.get_backend() == "nccl":  # NCCL reduces device tensors only
        tensor = tensor.to(torch.device("cuda", torch.cuda.current_device()))
    torch_dist.all_reduce(tensor)
    return tensor.cpu().tolist()


def barrier() -> None:
    if is_distributed():
        torch_dist.barrier()


def cleanup() -> None:
    """Leave the process group (torchrun warns about a group that is never destroyed)."""
    if is_distributed():
        torch_dist.destroy_process_group()
