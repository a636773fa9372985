"""Random augmentation draws that depend only on (seed, epoch, sample index).

tonic's random transforms draw from numpy's global generator. Left alone, what a sample draws
depends on the history of the process that loads it: the main process's generator, which
`seed_everything` resets at every start, or a worker's, seeded when the loader starts its
workers. A run resumed from a checkpoint would then replay the first epoch's draws, and the
draws would change with the number of workers. Seeding the generator for each access from

    numpy seed = SeedSequence([seed, epoch, index, tag]).generate_state(4)

instead makes sample `index`'s augmentation in `epoch` the same in every process, with any
number of workers or DDP processes, before and after a resume; a new epoch draws anew.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from torch.utils.data import Dataset, Subset

# Keeps these streams apart from the other seeded streams of the package (Randman, Delayed XOR).
_AUGMENTATION_TAG = 0xA0647


@contextmanager
def numpy_seeded(seed: int, epoch: int, index: int) -> Iterator[None]:
    """numpy's global generator seeded from (seed, epoch, index) inside the block; its state
    from before the block is restored after it, so the caller's own draws are left as they
    were."""
    saved = np.random.get_state()  # noqa: NPY002 (tonic draws from the global generator)
    # SeedSequence takes non-negative integers only; a negative seed maps to its 64-bit pattern.
    entropy = [int(seed) % 2**64, int(epoch), int(index), _AUGMENTATION_TAG]
    np.random.seed(np.random.SeedSequence(entropy).generate_state(4))  # noqa: NPY002
    try:
        yield
    finally:
        np.random.set_state(saved)  # noqa: NPY002


class EpochSeededSubset(Subset):
    """The training samples `dataset[indices[i]]`, each augmented with draws seeded from
    (seed, epoch, indices[i]) (see numpy_seeded).

    The training loader's EpochSeededSampler (with_epoch=True) yields keys (i, epoch); the
    index that seeds the draws is the sample's index in the dataset's official split, so a
    prepared copy of events (whose samples carry that index) draws the same. A plain index i
    (a loader with another sampler, or code reading `train_dataset[i]`) has no epoch: its draws
    come from numpy's global generator, as without this class.

    draws=False: the dataset draws nothing at random (no augmentation), so numpy's generator is
    left alone (seeding and restoring it cost ~0.2 ms per sample).
    """

    def __init__(self, dataset: Dataset, indices: Sequence[int], seed: int,
                 draws: bool = True) -> None:
        super().__init__(dataset, list(indices))
        self.seed = int(seed)
        self.draws = bool(draws)

    def __getitem__(self, key: int | tuple[int, int]) -> Any:
        if isinstance(key, tuple):
            position, epoch = key
            index = self.indices[position]
            if not self.draws:
                return self.dataset[index]
            with numpy_seeded(self.seed, epoch, index):
                return self.dataset[index]
        return self.dataset[self.indices[key]]

    def __getitems__(self, keys: Sequence[int | tuple[int, int]]) -> list[Any]:
        # Subset's own batched read would index `indices` with the (i, epoch) keys.
        return [self[key] for key in keys]
