"""N-MNIST: saccade recordings of MNIST digits by an event camera, 34 x 34 pixels, 10 classes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import tonic

from exodus_lightning.data.errors import (
    InvalidDataError,
    UnreadableFileError,
    unreadable_file_error,
)
from exodus_lightning.data.event_camera import EventCameraDataModule
from exodus_lightning.data.tonic_loading import CheckedSamples

NMNIST_LAYOUT = (
    "  NMNIST/Train/<digit 0-9>/<id>.bin   (60000 files)\n"
    "  NMNIST/Test/<digit 0-9>/<id>.bin    (10000 files)\n"
    "  each .bin holds 5 bytes per event: x, y, (p << 7) | t[22:16], t[15:8], t[7:0]"
)
NMNIST_SOURCE = "https://www.garrickorchard.com/datasets/n-mnist (Mendeley Data 468j46mzdv)"
BYTES_PER_NMNIST_EVENT = 5
NMNIST_FIX = "delete it and download N-MNIST again"
DIGIT_FOLDERS = tuple(str(digit) for digit in range(10))


def check_nmnist_file(path: str) -> None:
    """Reject a .bin that is empty or not a whole number of 5-byte events (tonic would misread it).

    The format has no header or event count, so a file cut exactly at an event boundary reads
    as a shorter recording; only the extreme case, nothing left, is recognisable (no real
    N-MNIST recording is empty).
    """
    size = os.path.getsize(path)
    if size % BYTES_PER_NMNIST_EVENT:
        raise UnreadableFileError(
            f"'{path}' has {size} bytes, not a multiple of {BYTES_PER_NMNIST_EVENT} (one event): "
            f"the file is truncated; {NMNIST_FIX}"
        )
    if size == 0:
        raise UnreadableFileError(
            f"'{path}' is empty (0 bytes, no events); every N-MNIST recording holds thousands "
            f"of events, so the file is truncated; {NMNIST_FIX}"
        )


def check_nmnist_folders(folder: Path) -> None:
    """Reject .bin files anywhere but in the digit folders `folder/0` .. `folder/9`.

    tonic takes a recording's label from the last character of its folder's name: a stray
    `samples/` fails with "invalid literal for int()", a `3/copy2/` silently becomes digit 2.
    tonic also skips folders it may not read; here they fail. One listing of the folder, at
    open (tonic lists it once more).
    """

    def refuse(error: OSError) -> None:
        if isinstance(error, PermissionError):
            raise unreadable_file_error(error.filename, error, NMNIST_FIX) from error
        raise error

    for path, _, files in os.walk(folder, onerror=refuse):
        if not any(name.endswith("bin") for name in files):
            continue
        place = Path(path).relative_to(folder).parts
        if len(place) != 1 or place[0] not in DIGIT_FOLDERS:
            raise InvalidDataError(
                f"'{path}' holds .bin files but is not one of the digit folders 0-9 directly "
                f"in '{folder}', whose names are N-MNIST's labels. Move the files into the "
                f"folder of their digit, or out of '{folder}'."
            )


class NMNISTDataModule(EventCameraDataModule):
    """N-MNIST batches: inputs (batch, T, 2, 34, 34) event counts per polarity, pixel and bin.

    Bins are fixed-width from t = 0. Recordings last about 300-315 ms in three saccades (one of
    tonic's test recordings runs to 311 ms); the defaults, 100 bins of 3.5 ms (350 ms), cover
    the whole recording with room to spare.
    """

    dataset_name = "NMNIST"
    num_classes = 10
    tonic_class = tonic.datasets.NMNIST
    sensor_size = tonic.datasets.NMNIST.sensor_size
    layout = NMNIST_LAYOUT
    source = NMNIST_SOURCE
    default_bin_width_ms = 3.5

    def __init__(
        self,
        *,
        num_time_steps: int = 100,
        bin_width_ms: float | None = None,
        first_saccade_only: bool = False,
        **settings: Any,
    ) -> None:
        """N-MNIST's settings; `settings` go to EventCameraDataModule and its bases.

        Args:
            num_time_steps: T, the number of time bins of every sample.
            bin_width_ms: width of one time bin in milliseconds; None: 3.5 ms, or
                duration_ms / num_time_steps when duration_ms is given.
            first_saccade_only: read only the first of the three saccades (~100 ms).
        """
        super().__init__(num_time_steps=num_time_steps, bin_width_ms=bin_width_ms, **settings)
        self.first_saccade_only = bool(first_saccade_only)
        self.to_frames = self.events_to_frames(frame_size=self.sensor_size[:2])

    def reading(self) -> dict[str, Any]:
        return {"first_saccade_only": True} if self.first_saccade_only else {}

    def open_split(self, split: str) -> CheckedSamples:
        folder = "Train" if split == "train" else "Test"
        split_folder = self.data_dir.resolve() / self.dataset_name / folder
        if split_folder.is_dir():
            check_nmnist_folders(split_folder)
        dataset = self.open_tonic(
            f"{folder}/*/*.bin",
            train=split == "train",
            first_saccade_only=self.first_saccade_only,
        )
        # tonic's labels are the digit folders' names: this finds a digit folder absent or empty.
        self.check_every_class(dataset.targets, split_folder)
        return CheckedSamples(
            dataset,
            list(dataset.data),
            check_file=check_nmnist_file,
            event_limits=self.event_limits,
            fix=NMNIST_FIX,
        )
