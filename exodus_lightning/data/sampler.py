"""A shuffling sampler whose order depends only on (seed, epoch): resumed runs continue."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class EpochSeededSampler(Sampler[int]):
    """Random permutation of range(num_samples), drawn from a generator seeded with (seed, epoch).

    Lightning calls ``set_epoch`` before every training epoch. A generator seeded once per
    DataLoader would instead restart from epoch 0's order after resuming from a checkpoint.
    """

    def __init__(self, num_samples: int, seed: int) -> None:
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.num_samples, generator=generator).tolist())
