"""IBM DVS Gesture: 11 hand and arm gestures recorded by a 128 x 128 event camera."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import tonic

from exodus_lightning.data.event_base import EventDataModule, bin_width_us
from exodus_lightning.data.tonic_loading import CheckedSamples, open_tonic_dataset
from exodus_lightning.data.transforms import (
    CAMERA_AUGMENTATIONS,
    EventsToFrames,
    camera_augmentations,
    check_augmentation_names,
)

DVS_GESTURE_LAYOUT = (
    "  DVSGesture/ibmGestureTrain/userNN_<lighting>/<label 0-10>.npy\n"
    "  DVSGesture/ibmGestureTest/userNN_<lighting>/<label 0-10>.npy\n"
    "  each .npy is an int array (N, 4) of x, y, p, t with t in milliseconds"
)
DVS_GESTURE_SOURCE = (
    "https://research.ibm.com/interactive/dvsgesture/ (tonic downloads its preprocessed copy "
    "from figshare)"
)


class DVSGestureDataModule(EventDataModule):
    """DVS Gesture batches: inputs (batch, T, 2, 128 / f, 128 / f) event counts, f = downsampling.

    Bins start at each recording's first event (recordings are cut from longer sessions, so
    their clocks do not start at 0); defaults follow EXODUS: 5 ms bins over 1.5 s (T = 300) and
    f = 4 (32 x 32 pixels, each the sum of a 4 x 4 block).
    """

    dataset_name = "DVSGesture"
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
        num_time_steps: int = 300,
        bin_width_ms: float = 5.0,
        duration_ms: float | None = None,
        downsample_factor: int = 4,
        denoise_ms: float | None = None,
        augmentations: Sequence[str] = (),
        pin_memory: bool | None = None,
        persistent_workers: bool = True,
    ) -> None:
        """See the class docstring; duration_ms, if given, sets bin width = duration / T.

        downsample_factor: integer f dividing 128; output pixels are f x f blocks.
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
        self.sensor_size = tonic.datasets.DVSGesture.sensor_size
        width, height, _ = self.sensor_size
        if (
            int(downsample_factor) != downsample_factor
            or downsample_factor < 1
            or width % downsample_factor
        ):
            raise ValueError(
                f"downsample_factor={downsample_factor} must be a positive integer dividing "
                f"{width} (1, 2, 4, 8, ...)"
            )
        self.to_frames = EventsToFrames(
            sensor_size=self.sensor_size,
            frame_size=(width // downsample_factor, height // downsample_factor),
            num_time_steps=num_time_steps,
            bin_width_us=bin_width_us(num_time_steps, bin_width_ms, duration_ms),
            relative_to_first_event=True,
        )
        if denoise_ms is not None and not denoise_ms > 0:
            raise ValueError(f"denoise_ms={denoise_ms} must be positive, or None for no denoising")
        self.denoise_ms = denoise_ms
        self.augmentation_names = check_augmentation_names(augmentations, CAMERA_AUGMENTATIONS)
        self.num_classes = 11
        self.input_shape = self.to_frames.output_shape
        self.num_time_steps = int(num_time_steps)

    def preprocessing(self) -> list[Callable]:
        if self.denoise_ms is None:
            return []
        return [tonic.transforms.Denoise(filter_time=self.denoise_ms * 1000.0)]

    def augmentation(self) -> list[Callable]:
        return camera_augmentations(self.augmentation_names, self.sensor_size)

    def open_split(self, split: str) -> CheckedSamples:
        folder = "ibmGestureTrain" if split == "train" else "ibmGestureTest"
        dataset = open_tonic_dataset(
            tonic.datasets.DVSGesture,
            self.data_dir,
            self.download,
            required_pattern=f"{folder}/*/*.npy",
            layout=DVS_GESTURE_LAYOUT,
            source=DVS_GESTURE_SOURCE,
            train=split == "train",
        )
        # tonic lists files in filesystem order, which differs between machines; sorting makes
        # index i (and so the seeded split and the cache) mean the same file everywhere.
        order = sorted(range(len(dataset.data)), key=dataset.data.__getitem__)
        for name in ("data", "targets", "users", "lighting"):
            values = getattr(dataset, name)
            setattr(dataset, name, [values[i] for i in order])
        return CheckedSamples(dataset, list(dataset.data))
