"""A shuffling sampler whose order depends only on (seed, epoch), and a DataLoader that saves its
position inside an epoch in Lightning checkpoints: resumed runs continue exactly."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler


class ResumeWarning(UserWarning):
    """A resumed epoch cannot continue with exactly the batches of the uninterrupted run."""


class EpochSeededSampler(DistributedSampler):
    """Random permutation of range(num_samples), drawn from a generator seeded with (seed, epoch);
    under DDP, this process's share of it.

    Lightning calls ``set_epoch`` before every training epoch. A generator seeded once per
    DataLoader would instead restart from epoch 0's order after resuming from a checkpoint.

    With ``num_replicas`` processes, the permutation is padded with its own first indices to a
    multiple of ``num_replicas`` and process ``rank`` takes every ``num_replicas``-th index from
    position ``rank`` (as torch's DistributedSampler does). Being a DistributedSampler, Lightning
    keeps it instead of wrapping it in one of its own.

    After ``resume_at(epoch, skip)``, the next pass leaves out the first ``skip`` indices of this
    process's share if it is a pass of that epoch (ResumableDataLoader.load_state_dict: the
    samples served before the checkpoint).

    With ``with_epoch``, it yields ``(index, epoch)`` pairs instead of indices, for a dataset
    that seeds each sample's random augmentation from them (seeded_draws.EpochSeededSubset):
    worker processes receive the epoch with every index.
    """

    def __init__(self, num_samples: int, seed: int, num_replicas: int = 1, rank: int = 0,
                 with_epoch: bool = False) -> None:
        if int(num_replicas) != num_replicas or num_replicas < 1:
            raise ValueError(f"num_replicas={num_replicas} must be a positive integer")
        if int(rank) != rank or not 0 <= rank < num_replicas:
            raise ValueError(f"rank={rank} must be an integer in [0, num_replicas={num_replicas})")
        super().__init__(range(num_samples), num_replicas=int(num_replicas), rank=int(rank),
                         shuffle=True, seed=int(seed), drop_last=False)
        self.dataset_size = int(num_samples)
        # DistributedSampler's num_samples: the share of one process.
        self.num_samples = math.ceil(self.dataset_size / self.num_replicas)
        self.with_epoch = bool(with_epoch)
        self._resume: tuple[int, int] | None = None  # (epoch, indices to skip)

    @classmethod
    def for_this_process(cls, num_samples: int, seed: int,
                         with_epoch: bool = False) -> EpochSeededSampler:
        """Sharded between the processes of torch.distributed when it is initialised (DDP)."""
        if dist.is_available() and dist.is_initialized():
            return cls(num_samples, seed, dist.get_world_size(), dist.get_rank(), with_epoch)
        return cls(num_samples, seed, with_epoch=with_epoch)

    def resume_at(self, epoch: int, skip: int) -> None:
        """Leave out the first `skip` indices of the next pass, if it is one of `epoch`."""
        self._resume = (int(epoch), int(skip))

    def pending_skip(self) -> int:
        """The indices the next pass leaves out (at the current epoch)."""
        return self._resume[1] if self._resume and self._resume[0] == self.epoch else 0

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int] | Iterator[tuple[int, int]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.dataset_size, generator=generator).tolist()
        total = self.num_samples * self.num_replicas
        order += (order * math.ceil(total / max(len(order), 1)))[: total - len(order)]
        share = order[self.rank : total : self.num_replicas]
        # The first pass after resume_at only, whichever epoch it is.
        skip, self._resume = self.pending_skip(), None
        if self.with_epoch:
            return iter([(index, self.epoch) for index in share[skip:]])
        return iter(share[skip:])


class ResumableDataLoader(DataLoader):
    """A DataLoader over an EpochSeededSampler whose position is saved in Lightning checkpoints
    (``state_dict``) and restored on resume (``load_state_dict``): a run resumed from a checkpoint
    written inside an epoch serves that epoch's remaining batches, as the uninterrupted run would.

    The position is the number of samples this process was served in the epoch: batches
    yielded x batch_size (batches prefetched by worker processes are not counted). Under DDP
    every process serves as many batches, so process 0's count, which the checkpoint holds, is
    every process's.
    """

    #: Returns the Trainer's epoch (None: no Trainer); set by the DataModule that builds the
    #: loader. Each pass then shuffles as that epoch, whatever set_epoch was given.
    trainer_epoch: Callable[[], int | None] | None = None

    def __iter__(self) -> Iterator[Any]:
        if not isinstance(self.sampler, EpochSeededSampler):
            # Lightning replaced the sampler (e.g. overfit_batches): nothing to resume.
            return super().__iter__()
        return self._counted()

    def _counted(self) -> Iterator[Any]:
        # Runs from the first batch on: after Lightning set the epoch, which it may do after
        # iter(); worker processes draw the epoch's indices as soon as their iterator starts.
        sampler = self.sampler
        # A run with max_steps resumed from a checkpoint passes set_epoch one epoch more than
        # the epoch it trains (Lightning counts the checkpoint's finished epoch as done once
        # more), which would shuffle as the next epoch and skip nothing of a resumed one.
        epoch = None if self.trainer_epoch is None else self.trainer_epoch()
        if epoch is not None:
            sampler.set_epoch(int(epoch))
        self._epoch, self._served = sampler.epoch, sampler.pending_skip()
        for batch in super().__iter__():
            self._served += self.batch_size
            yield batch

    def state_dict(self) -> dict[str, int]:
        """The epoch, and the samples this process was served in it (its share's length once
        the epoch is complete)."""
        sampler = self.sampler
        if not isinstance(sampler, EpochSeededSampler):
            return {}
        epoch = getattr(self, "_epoch", sampler.epoch)
        served = min(getattr(self, "_served", 0), len(sampler))
        return {"epoch": epoch, "samples_served": served, "num_replicas": sampler.num_replicas}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        """Continue where `state_dict` was taken: the next pass over its epoch serves the rest."""
        sampler = self.sampler
        if not state_dict or not isinstance(sampler, EpochSeededSampler):
            return
        epoch, served = int(state_dict["epoch"]), int(state_dict["samples_served"])
        saved_replicas = int(state_dict.get("num_replicas", 1))
        if saved_replicas != sampler.num_replicas and 0 < served < math.ceil(
                sampler.dataset_size / saved_replicas):
            warnings.warn(ResumeWarning(
                f"the checkpoint was written inside epoch {epoch} by {saved_replicas} "
                f"process(es), and this run has {sampler.num_replicas}: the rest of that epoch "
                "skips as many samples in all, in another order than the uninterrupted run's; "
                "later epochs are exact. Resume with the same number of processes (devices x "
                "nodes) to continue exactly."), stacklevel=2)
        # In samples of the whole epoch, then in this process's share. A complete epoch skips
        # all of it: Lightning resumes with the next epoch, or (2.3, from a checkpoint of the
        # epoch's last step) first ends that epoch with a pass that must serve nothing.
        served = min(served * saved_replicas // sampler.num_replicas, len(sampler))
        sampler.resume_at(epoch, served)
        self._epoch, self._served = epoch, served
