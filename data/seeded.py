"""The bookkeeping every training dataset shares: per-item randomness from (seed, epoch, index)."""
from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset


class SeededDataset(Dataset):
    """A dataset over ``names`` whose augmentation draws from ``rng(index)``.

    The generator depends only on (seed, epoch, index), never on the worker or the process that loads the item, so
    results do not depend on --num_workers or torchrun, and --resume replays an epoch exactly. Call
    :meth:`set_epoch` before each epoch.
    """

    def __init__(self, names: list[str], seed: int = 0):
        self.names = list(names)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.names)

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index])
