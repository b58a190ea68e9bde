"""misc/torchutils.tune_cpu_allocator: when it changes glibc's thresholds and when it must leave them alone."""
import platform

import pytest
import torch

from misc.torchutils import tune_cpu_allocator


def test_allocator_left_alone_on_cuda_and_on_request(monkeypatch):
    assert tune_cpu_allocator(torch.device("cuda")) is False
    assert tune_cpu_allocator("cuda:0") is False
    monkeypatch.setenv("WSSS_CPU_MALLOC", "default")
    assert tune_cpu_allocator("cpu") is False


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_allocator_tuned_on_a_glibc_cpu_run(monkeypatch):
    monkeypatch.delenv("WSSS_CPU_MALLOC", raising=False)
    assert tune_cpu_allocator("cpu") is True
    x = torch.ones(4096, 4096)  # a 64 MiB tensor, above glibc's default mmap threshold, still works
    assert float(x.sum()) == 4096 * 4096
