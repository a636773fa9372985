"""Spiking Heidelberg Digits (SHD) and Spiking Speech Commands (SSC): cochlea-model spike trains.

Both are HDF5 files of spike times (s) and units (700 channels) per spoken word; tonic's SHD and
SSC classes parse them. SHD has 20 classes (digits 0-9 in English and German), SSC 35 commands.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import h5py
import tonic

from exodus_lightning.data.errors import UnreadableFileError
from exodus_lightning.data.event_base import EventDataModule, bin_width_us
from exodus_lightning.data.tonic_loading import CheckedSamples, open_tonic_dataset
from exodus_lightning.data.transforms import (
    AUDIO_AUGMENTATIONS,
    SpikesToChannels,
    audio_augmentations,
    check_augmentation_names,
)

HEIDELBERG_SOURCE = "https://zenkelab.org/datasets/ (Cramer et al. 2020)"
HEIDELBERG_CHANNELS = 700
HEIDELBERG_DATASETS = ("spikes/times", "spikes/units", "labels")


def check_heidelberg_file(path: Path) -> None:
    """Open an SHD/SSC HDF5 file and check it holds spikes/times, spikes/units and labels."""
    try:
        with h5py.File(path, "r") as file:
            missing = [name for name in HEIDELBERG_DATASETS if name not in file]
    except OSError as error:
        raise UnreadableFileError(
            f"Could not open '{path}' as HDF5 ({error}); the file is truncated or corrupt: "
            "delete it and download it again"
        ) from error
    if missing:
        raise UnreadableFileError(
            f"'{path}' lacks the datasets {missing}; it is not an SHD/SSC file"
        )


class HeidelbergDataModule(EventDataModule):
    """SHD/SSC batches: inputs (batch, T, C) spike counts, 700 channels merged into C.

    Bins are fixed-width from stimulus onset (t = 0). Defaults follow EXODUS: 4 ms bins,
    T = 250 (1 s), C = 100 (channel c sums input channels 7c .. 7c + 6).
    """

    tonic_class: type
    num_dataset_classes: int

    def __init__(
        self,
        data_dir: str | Path = "data",
        batch_size: int = 32,
        num_workers: int = 0,
        download: bool = True,
        seed: int = 0,
        cache_dir: str | Path | None = None,
        val_fraction: float | None = 0.1,
        num_time_steps: int = 250,
        bin_width_ms: float = 4.0,
        duration_ms: float | None = None,
        num_channels: int = 100,
        augmentations: Sequence[str] = (),
        pin_memory: bool | None = None,
        persistent_workers: bool = True,
    ) -> None:
        super().__init__(
            data_dir,
            batch_size,
            num_workers,
            download,
            seed,
            cache_dir,
            val_fraction,
            pin_memory,
            persistent_workers,
        )
        self.to_frames = SpikesToChannels(
            num_input_channels=HEIDELBERG_CHANNELS,
            num_channels=num_channels,
            num_time_steps=num_time_steps,
            bin_width_us=bin_width_us(num_time_steps, bin_width_ms, duration_ms),
        )
        self.augmentation_names = check_augmentation_names(augmentations, AUDIO_AUGMENTATIONS)
        self.num_classes = self.num_dataset_classes
        self.input_shape = self.to_frames.output_shape
        self.num_time_steps = int(num_time_steps)

    def augmentation(self) -> list[Callable]:
        return audio_augmentations(self.augmentation_names)

    def file_name(self, split: str) -> str:
        prefix = self.dataset_name.lower()
        return f"{prefix}_{split}.h5"

    def tonic_split_kwargs(self, split: str) -> dict:
        raise NotImplementedError

    def open_split(self, split: str) -> CheckedSamples:
        name = self.file_name(split)
        path = self.data_dir.resolve() / self.dataset_name / name
        if path.exists():
            # tonic opens the file while constructing; a truncated file should name itself.
            check_heidelberg_file(path)
        layout = "\n".join(
            f"  {self.dataset_name}/{self.file_name(s)}   (HDF5: spikes/times, spikes/units, "
            "labels)"
            for s in self.official_splits
        )
        dataset = open_tonic_dataset(
            self.tonic_class,
            self.data_dir,
            self.download,
            required_pattern=name,
            layout=layout,
            source=HEIDELBERG_SOURCE,
            **self.tonic_split_kwargs(split),
        )
        return CheckedSamples(dataset, str(path))


class SHDDataModule(HeidelbergDataModule):
    """Spiking Heidelberg Digits: 20 classes, 8156 train / 2264 test samples.

    The validation set is a seeded `val_fraction` of the training file (SHD has no official one).
    """

    dataset_name = "SHD"
    official_splits = ("train", "test")
    tonic_class = tonic.datasets.SHD
    num_dataset_classes = 20

    def __init__(
        self,
        data_dir: str | Path = "data",
        batch_size: int = 32,
        num_workers: int = 0,
        download: bool = True,
        seed: int = 0,
        cache_dir: str | Path | None = None,
        val_fraction: float = 0.1,
        num_time_steps: int = 250,
        bin_width_ms: float = 4.0,
        duration_ms: float | None = None,
        num_channels: int = 100,
        augmentations: Sequence[str] = (),
        pin_memory: bool | None = None,
        persistent_workers: bool = True,
    ) -> None:
        """See HeidelbergDataModule; augmentations are names from AUDIO_AUGMENTATIONS."""
        super().__init__(
            data_dir,
            batch_size,
            num_workers,
            download,
            seed,
            cache_dir,
            val_fraction,
            num_time_steps,
            bin_width_ms,
            duration_ms,
            num_channels,
            augmentations,
            pin_memory,
            persistent_workers,
        )
        self.save_hyperparameters()

    def tonic_split_kwargs(self, split: str) -> dict:
        return {"train": split == "train"}


class SSCDataModule(HeidelbergDataModule):
    """Spiking Speech Commands: 35 classes, 75466 train / 9981 valid / 20382 test samples.

    val_fraction=None (default) validates on the official `ssc_valid.h5`; a number instead
    splits that fraction off the training file.
    """

    dataset_name = "SSC"
    official_splits = ("train", "valid", "test")
    tonic_class = tonic.datasets.SSC
    num_dataset_classes = 35

    def __init__(
        self,
        data_dir: str | Path = "data",
        batch_size: int = 32,
        num_workers: int = 0,
        download: bool = True,
        seed: int = 0,
        cache_dir: str | Path | None = None,
        val_fraction: float | None = None,
        num_time_steps: int = 250,
        bin_width_ms: float = 4.0,
        duration_ms: float | None = None,
        num_channels: int = 100,
        augmentations: Sequence[str] = (),
        pin_memory: bool | None = None,
        persistent_workers: bool = True,
    ) -> None:
        """See HeidelbergDataModule; augmentations are names from AUDIO_AUGMENTATIONS."""
        super().__init__(
            data_dir,
            batch_size,
            num_workers,
            download,
            seed,
            cache_dir,
            val_fraction,
            num_time_steps,
            bin_width_ms,
            duration_ms,
            num_channels,
            augmentations,
            pin_memory,
            persistent_workers,
        )
        self.save_hyperparameters()

    def tonic_split_kwargs(self, split: str) -> dict:
        # Validated by check_split first: tonic's SSC fails obscurely on unknown names.
        return {"split": split}
