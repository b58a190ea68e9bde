"""Test-suite settings: one torch thread (the tensors are tiny; extra threads only add contention on CI's 2 cores)."""
import logging

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def fresh_logging():
    """run_sample.main binds its log handlers to the running test's captured stderr: drop them afterwards."""
    yield
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
