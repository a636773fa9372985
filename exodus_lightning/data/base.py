"""Base LightningDataModule: loader settings, seeded splits, and the attributes a model links to."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, Sampler

from exodus_lightning.data.collate import pad_time_collate
from exodus_lightning.data.device_binning import EventPositionsBatch
from exodus_lightning.data.sampler import EpochSeededSampler, ResumableDataLoader
from exodus_lightning.data.seeded_draws import EpochSeededSubset


def split_indices(num_samples: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded random split of range(num_samples) into (train, val) index lists.

    n_val = round(val_fraction * num_samples), at least 1 and at most num_samples - 1; the same
    (num_samples, val_fraction, seed) always gives the same split, whatever the global RNG state.
    """
    if num_samples < 2:
        raise ValueError(
            f"cannot split {num_samples} sample(s) into train and validation; need at least 2"
        )
    check_val_fraction(val_fraction)
    num_val = min(max(round(val_fraction * num_samples), 1), num_samples - 1)
    order = torch.randperm(num_samples, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(order[num_val:]), sorted(order[:num_val])


def check_val_fraction(val_fraction: float) -> None:
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(
            f"val_fraction={val_fraction} must lie strictly between 0 and 1 (e.g. 0.1)"
        )


class SpikeDataModule(L.LightningDataModule):
    """Serves (inputs, targets) batches: inputs float32 (batch, time, *input_shape), targets int64.

    Loaders may yield integer inputs (event counts, to carry fewer bytes from worker processes
    and to the GPU) or events still to be counted into frames (EventPositionsBatch, with
    bin_on_device): `on_after_batch_transfer`, which Lightning calls on the device, turns them
    into float32 frames, so a model always receives float32. Code iterating a loader itself
    calls it too.

    Subclasses set `num_classes`, `input_shape` and `num_time_steps` in __init__ (so a CLI can
    link them to model arguments before setup) and fill `train_dataset`, `val_dataset` and
    `test_dataset` in setup() (the test split also for stage "predict", which predicts on it).
    """

    num_classes: int
    input_shape: tuple[int, ...]
    num_time_steps: int

    def __init__(
        self,
        *,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
        pin_memory: bool | None = None,
        persistent_workers: bool = True,
    ) -> None:
        """Loader settings shared by every DataModule; subclasses pass them on by keyword.

        Args:
            batch_size: samples per batch.
            num_workers: DataLoader worker processes; 0 loads in the main process.
            seed: seed of the train/validation split, of the shuffling order of each epoch and
                of the random augmentation draws of recorded datasets.
            pin_memory: put batches in page-locked memory for faster copies to a GPU; None: only
                when CUDA is available.
            persistent_workers: keep the worker processes between epochs (only with
                num_workers > 0).
        """
        super().__init__()
        # Lightning reads the arguments of every __init__ in the calling subclass chain, so
        # `hparams` holds all settings, defaults included, whatever a subclass passes on.
        self.save_hyperparameters()
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be a positive integer")
        if int(num_workers) != num_workers or num_workers < 0:
            raise ValueError(
                f"num_workers={num_workers} must be 0 (load in the main process) or more"
            )
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.seed = int(seed)
        # Pinning only helps host-to-GPU copies and warns on machines without a GPU.
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else bool(pin_memory)
        # Workers can only persist if there are any.
        self.persistent_workers = bool(persistent_workers) and self.num_workers > 0
        self.train_dataset: Dataset | None = None
        self.val_dataset: Dataset | None = None
        self.test_dataset: Dataset | None = None

    def _loader(
        self, dataset: Dataset | None, name: str, shuffle: bool, num_workers: int | None = None
    ) -> DataLoader:
        """A DataLoader of `dataset` with this module's settings (num_workers: None, its own)."""
        workers = self.num_workers if num_workers is None else num_workers
        if dataset is None:
            raise RuntimeError(
                f"the {name} dataset is not set up; call setup('fit') (or 'test' for the test "
                "set) first, as Lightning's Trainer does"
            )
        # The shuffling order depends on (seed, epoch) only, and the loader saves its position
        # in the epoch in checkpoints: reproducible, and exact on resume, also mid-epoch. A
        # dataset that seeds its augmentation from (seed, epoch, index) gets the epoch too.
        if shuffle:
            sampler = EpochSeededSampler.for_this_process(
                len(dataset), self.seed, with_epoch=isinstance(dataset, EpochSeededSubset)
            )
            loader_class = ResumableDataLoader
        else:
            sampler, loader_class = self._evaluation_sampler(dataset, name), DataLoader
        loader = loader_class(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=workers,
            collate_fn=pad_time_collate,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers and workers > 0,
        )
        if shuffle:
            loader.trainer_epoch = self._trainer_epoch
        return loader

    def _trainer_epoch(self) -> int | None:
        """The epoch of the Trainer fitting with this DataModule (None: no Trainer).

        While a training epoch runs, this is the value Lightning passes to samplers' set_epoch,
        except in a run with max_steps resumed from a checkpoint: there set_epoch gets one
        more, and the uninterrupted run's epochs are current_epoch's. The training loaders
        (ResumableDataLoader, the streaming loader) shuffle as this epoch.
        """
        trainer = getattr(self, "trainer", None)
        return None if trainer is None else trainer.current_epoch

    def _evaluation_sampler(self, dataset: Dataset, name: str) -> Sampler | None:
        """Under DDP, this rank's share of `dataset` in order, every sample on exactly one rank
        (rank r reads r, r + world_size, ...); None otherwise (the whole split, in order).

        Lightning would insert a DistributedSampler, which pads the split to a multiple of the
        world size by repeating samples, so the synced metrics would count those twice. Without
        padding, ranks may run one batch fewer: fine for evaluation, which syncs only at the
        epoch's end. Lightning keeps a sampler that is a DistributedSampler, as this one is.
        """
        trainer = getattr(self, "trainer", None)
        kwargs = None if trainer is None else trainer.distributed_sampler_kwargs
        # use_distributed_sampler=False asks Lightning to leave the loaders as they are.
        if (not kwargs or kwargs.get("num_replicas", 1) <= 1
                or not trainer._accelerator_connector.use_distributed_sampler):
            return None
        if len(dataset) < kwargs["num_replicas"]:
            # A rank without a batch would wait forever for the others' collectives.
            raise ValueError(
                f"the {name} split has {len(dataset)} sample(s), fewer than the "
                f"{kwargs['num_replicas']} DDP processes that share it; use fewer processes "
                "(--trainer.devices) or a larger split"
            )
        return UnrepeatedDistributedSampler(
            dataset, num_replicas=kwargs["num_replicas"], rank=kwargs["rank"], shuffle=False
        )

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """float32 inputs, made on the device the batch was moved to: integer counts cast, and
        events of an EventPositionsBatch (bin_on_device) counted into frames."""
        inputs, *rest = batch
        if isinstance(inputs, EventPositionsBatch):
            return (inputs.frames(), *rest)
        if torch.is_floating_point(inputs):
            return batch
        return (inputs.to(torch.float32), *rest)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_dataset, "train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_dataset, "validation", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_dataset, "test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        """The test split, in order (setup('predict') loads it)."""
        return self._loader(self.test_dataset, "test", shuffle=False)


class GeneratedDataModule(SpikeDataModule):
    """A built-in task generated in memory (Randman, Delayed XOR): subclasses give
    make_dataset(split) for split 'train', 'val' or 'test'; each split is generated once, in
    setup(), and kept."""

    def make_dataset(self, split: str) -> Dataset:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        # Generated once per DataModule: a second setup() (e.g. fit then test) reuses the data.
        if stage in (None, "fit", "validate"):
            if self.train_dataset is None:
                self.train_dataset = self.make_dataset("train")
            if self.val_dataset is None:
                self.val_dataset = self.make_dataset("val")
        if stage in (None, "test", "predict") and self.test_dataset is None:
            self.test_dataset = self.make_dataset("test")
