"""Spiking Heidelberg Digits (SHD) and Spiking Speech Commands (SSC): cochlea-model spike trains.

Both are HDF5 files of spike times (s) and units (700 channels) per spoken word; tonic's SHD and
SSC classes parse them. SHD has 20 classes (digits 0-9 in English and German), SSC 35 commands.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import tonic

from exodus_lightning.data.errors import (
    InvalidDataError,
    UnreadableFileError,
    unreadable_file_error,
)
from exodus_lightning.data.event_base import EventDataModule
from exodus_lightning.data.tonic_loading import CheckedSamples, check_labels
from exodus_lightning.data.transforms import (
    AUDIO_AUGMENTATIONS,
    SpikesToChannels,
    audio_augmentations,
)

HEIDELBERG_SOURCE = "https://zenkelab.org/datasets/ (Cramer et al. 2020)"
HEIDELBERG_CHANNELS = 700
HEIDELBERG_DATASETS = ("spikes/times", "spikes/units", "labels")  # one entry per sample
HEIDELBERG_EXTRAS = ("extra/keys", "extra/speaker")  # class names, speakers: tonic reads both


def check_heidelberg_file(path: Path, num_classes: int, dataset_name: str) -> np.ndarray:
    """Open an SHD/SSC HDF5 file and check it: spikes/times, spikes/units, labels and
    extra/keys, extra/speaker present, one label per sample (tonic's length is the number of
    labels), every label a class. Returns the labels.

    Reads the labels only (SSC's training file: 75466 x 2 bytes), once per split.
    """
    fix = f"delete it and download {dataset_name} again"
    try:
        with h5py.File(path, "r") as file:
            missing = [name for name in (*HEIDELBERG_DATASETS, *HEIDELBERG_EXTRAS)
                       if name not in file]
            counts = {name: len(file[name]) for name in HEIDELBERG_DATASETS if name in file}
            labels = file["labels"][()] if "labels" in file else []
    except OSError as error:
        raise unreadable_file_error(path, error, fix) from error
    if missing:
        raise UnreadableFileError(
            f"'{path}' lacks the datasets {missing}; it is not an SHD/SSC file"
        )
    if len(set(counts.values())) > 1:
        raise InvalidDataError(
            f"'{path}' holds spike times for {counts['spikes/times']} samples, spike units for "
            f"{counts['spikes/units']} and labels for {counts['labels']}; tonic would read only "
            f"{counts['labels']} samples. The file is incomplete: {fix}."
        )
    check_labels(labels, str(path), num_classes, dataset_name)
    return labels


class HeidelbergDataModule(EventDataModule):
    """SHD/SSC batches: inputs (batch, T, C) spike counts, 700 channels merged into C.

    Bins are fixed-width from stimulus onset (t = 0). Defaults follow EXODUS: 4 ms bins,
    T = 250 (1 s), C = 100 (channel c sums input channels 7c .. 7c + 6).
    """

    source = HEIDELBERG_SOURCE
    default_bin_width_ms = 4.0
    augmentation_choices = AUDIO_AUGMENTATIONS
    event_limits = {"x": (HEIDELBERG_CHANNELS, "spike unit (input channel)")}

    def __init__(
        self,
        *,
        num_time_steps: int = 250,
        bin_width_ms: float | None = None,
        num_channels: int = 100,
        **settings: Any,
    ) -> None:
        """SHD's and SSC's settings; `settings` go to EventDataModule and its base.

        Args:
            num_time_steps: T, the number of time bins of every sample.
            bin_width_ms: width of one time bin in milliseconds; None: 4 ms, or
                duration_ms / num_time_steps when duration_ms is given.
            num_channels: C, the number of output channels the 700 input channels merge into.
        """
        super().__init__(num_time_steps=num_time_steps, bin_width_ms=bin_width_ms, **settings)
        self.to_frames = SpikesToChannels(
            num_input_channels=HEIDELBERG_CHANNELS,
            num_channels=num_channels,
            num_time_steps=self.num_time_steps,
            bin_width_us=self.bin_width_us,
        )

    def augmentation(self) -> list[Callable]:
        return audio_augmentations(self.augmentation_names)

    @property
    def layout(self) -> str:
        """The expected files under data_dir, one line per official split."""
        return "\n".join(
            f"  {self.dataset_name}/{self.file_name(split)}   (HDF5: spikes/times, spikes/units, "
            "labels, extra/keys, extra/speaker)"
            for split in self.official_splits
        )

    def file_name(self, split: str) -> str:
        prefix = self.dataset_name.lower()
        return f"{prefix}_{split}.h5"

    def tonic_split_kwargs(self, split: str) -> dict:
        raise NotImplementedError

    def open_split(self, split: str) -> CheckedSamples:
        name = self.file_name(split)
        path = self.data_dir.resolve() / self.dataset_name / name
        present = path.exists()
        if present:
            # tonic opens the file while constructing; a truncated file should name itself.
            labels = check_heidelberg_file(path, self.num_classes, self.dataset_name)
        dataset = self.open_tonic(name, **self.tonic_split_kwargs(split))
        if not present:  # downloaded just now
            labels = check_heidelberg_file(path, self.num_classes, self.dataset_name)
        self.check_every_class(labels, path)
        return CheckedSamples(
            dataset,
            str(path),
            event_limits=self.event_limits,
            fix=f"delete it and download {self.dataset_name} again",
        )


class SHDDataModule(HeidelbergDataModule):
    """Spiking Heidelberg Digits: 20 classes, 8156 train / 2264 test samples.

    The validation set is a seeded `val_fraction` of the training file (SHD has no official one).
    """

    dataset_name = "SHD"
    num_classes = 20
    tonic_class = tonic.datasets.SHD

    def tonic_split_kwargs(self, split: str) -> dict:
        return {"train": split == "train"}


class SSCDataModule(HeidelbergDataModule):
    """Spiking Speech Commands: 35 classes, 75466 train / 9981 valid / 20382 test samples.

    val_fraction=None (default) validates on the official `ssc_valid.h5`; a number instead
    splits that fraction off the training file.
    """

    dataset_name = "SSC"
    num_classes = 35
    official_splits = ("train", "valid", "test")
    tonic_class = tonic.datasets.SSC

    def __init__(self, *, val_fraction: float | None = None, **settings: Any) -> None:
        """SSC's default validation split; `settings` go to HeidelbergDataModule and its bases.

        Args:
            val_fraction: None validates on the official `ssc_valid.h5`; a number between 0 and
                1 holds out that (seeded) fraction of the training file instead.
        """
        super().__init__(val_fraction=val_fraction, **settings)

    def tonic_split_kwargs(self, split: str) -> dict:
        # Validated by check_split first: tonic's SSC fails obscurely on unknown names.
        return {"split": split}
