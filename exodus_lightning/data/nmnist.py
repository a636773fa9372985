"""N-MNIST: saccade recordings of MNIST digits by an event camera, 34 x 34 pixels, 10 classes."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import tonic

from exodus_lightning.data.errors import UnreadableFileError
from exodus_lightning.data.event_base import EventDataModule, bin_width_us
from exodus_lightning.data.tonic_loading import CheckedSamples, open_tonic_dataset
from exodus_lightning.data.transforms import (
    CAMERA_AUGMENTATIONS,
    EventsToFrames,
    camera_augmentations,
    check_augmentation_names,
)

NMNIST_LAYOUT = (
    "  NMNIST/Train/<digit 0-9>/<id>.bin   (60000 files)\n"
    "  NMNIST/Test/<digit 0-9>/<id>.bin    (10000 files)\n"
    "  each .bin holds 5 bytes per event: x, y, (p << 7) | t[22:16], t[15:8], t[7:0]"
)
NMNIST_SOURCE = "https://www.garrickorchard.com/datasets/n-mnist (Mendeley Data 468j46mzdv)"
BYTES_PER_NMNIST_EVENT = 5


def check_nmnist_file(path: str) -> None:
    """Reject a .bin whose size is not a whole number of 5-byte events (tonic would misread it)."""
    size = os.path.getsize(path)
    if size % BYTES_PER_NMNIST_EVENT:
        raise UnreadableFileError(
            f"'{path}' has {size} bytes, not a multiple of {BYTES_PER_NMNIST_EVENT} (one event): "
            "the file is truncated; delete it and download N-MNIST again"
        )


class NMNISTDataModule(EventDataModule):
    """N-MNIST batches: inputs (batch, T, 2, 34, 34) event counts per polarity, pixel and bin.

    Bins are fixed-width from t = 0 (recordings last ~306 ms in three saccades); the defaults
    (100 bins of 3 ms) cover the whole recording.
    """

    dataset_name = "NMNIST"
    official_splits = ("train", "test")

    def __init__(
        self,
        data_dir: str | Path = "data",
        batch_size: int = 32,
        num_workers: int = 0,
        download: bool = True,
        seed: int = 0,
        cache_dir: str | Path | None = None,
        val_fraction: float = 0.1,
        num_time_steps: int = 100,
        bin_width_ms: float = 3.0,
        duration_ms: float | None = None,
        first_saccade_only: bool = False,
        denoise_ms: float | None = None,
        augmentations: Sequence[str] = (),
        pin_memory: bool | None = None,
        persistent_workers: bool = True,
    ) -> None:
        """See the class docstring; duration_ms, if given, sets bin width = duration / T.

        augmentations: names from CAMERA_AUGMENTATIONS, applied to training samples only.
        denoise_ms: drop events with no neighbour within 1 pixel and this many ms (tonic Denoise).
        """
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
        self.save_hyperparameters()
        self.sensor_size = tonic.datasets.NMNIST.sensor_size
        self.to_frames = EventsToFrames(
            sensor_size=self.sensor_size,
            frame_size=self.sensor_size[:2],
            num_time_steps=num_time_steps,
            bin_width_us=bin_width_us(num_time_steps, bin_width_ms, duration_ms),
        )
        if denoise_ms is not None and not denoise_ms > 0:
            raise ValueError(f"denoise_ms={denoise_ms} must be positive, or None for no denoising")
        self.denoise_ms = denoise_ms
        self.augmentation_names = check_augmentation_names(augmentations, CAMERA_AUGMENTATIONS)
        self.first_saccade_only = bool(first_saccade_only)
        self.num_classes = 10
        self.input_shape = self.to_frames.output_shape
        self.num_time_steps = int(num_time_steps)

    def preprocessing(self) -> list[Callable]:
        if self.denoise_ms is None:
            return []
        return [tonic.transforms.Denoise(filter_time=self.denoise_ms * 1000.0)]

    def augmentation(self) -> list[Callable]:
        return camera_augmentations(self.augmentation_names, self.sensor_size)

    def open_split(self, split: str) -> CheckedSamples:
        folder = "Train" if split == "train" else "Test"
        dataset = open_tonic_dataset(
            tonic.datasets.NMNIST,
            self.data_dir,
            self.download,
            required_pattern=f"{folder}/*/*.bin",
            layout=NMNIST_LAYOUT,
            source=NMNIST_SOURCE,
            train=split == "train",
            first_saccade_only=self.first_saccade_only,
        )
        return CheckedSamples(dataset, list(dataset.data), check_file=check_nmnist_file)
