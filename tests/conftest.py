"""Test-suite settings: one torch thread (the tensors are tiny; extra threads only add contention on CI's 2 cores)."""
import torch

torch.set_num_threads(1)
