"""IBM DVS Gesture: 11 hand and arm gestures recorded by a 128 x 128 event camera."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import tonic

from exodus_lightning.data.errors import InvalidDataError, unreadable_file_error
from exodus_lightning.data.event_camera import EventCameraDataModule
from exodus_lightning.data.tonic_loading import CheckedSamples, check_labels

DVS_GESTURE_LAYOUT = (
    "  DVSGesture/ibmGestureTrain/userNN_<lighting>/<label 0-10>.npy\n"
    "  DVSGesture/ibmGestureTest/userNN_<lighting>/<label 0-10>.npy\n"
    "  each .npy is an int array (N, 4) of x, y, p, t with t in milliseconds"
)
DVS_GESTURE_SOURCE = (
    "https://research.ibm.com/interactive/dvsgesture/ (tonic downloads its preprocessed copy "
    "from figshare)"
)


DVS_GESTURE_FIX = "delete it and download DVS Gesture again"


def is_user_folder_name(name: str) -> bool:
    """Whether tonic reads a user and a lighting from the folder name `name`: the user NN from
    the part before the first "_" (its first 4 characters, "user", skipped), the lighting from
    the rest (tonic fails on any other name)."""
    user, separator, _ = name.partition("_")
    try:
        int(user[4:])
    except ValueError:
        return False
    return bool(separator)


def check_dvs_gesture_folders(folder: Path) -> None:
    """Reject what tonic would fail on in the split folder `folder` (with an error naming no
    path) or read silently wrong, naming the folder or file and the fix; keep what it ignores.

    tonic reads every file whose name ends in "npy" in every folder below `folder`, and takes
    the user and the lighting from the folder's path (userNN_<lighting>) and the label from the
    file's name (<label>.npy). So a folder directly in `folder` must be named userNN_<lighting>
    (tonic fails on others), a .npy in it <integer>.npy (tonic fails on others), and a folder
    deeper down holds no .npy (tonic would read `user03_led/backup/3.npy` as one more recording
    of user 03, lighting "led/backup"). Other files, and .npy files directly in `folder`, tonic
    ignores: so are they here. A folder this user may not read fails (tonic would skip it).
    """

    def refuse(error: OSError) -> None:
        if isinstance(error, PermissionError):
            raise unreadable_file_error(error.filename, error, DVS_GESTURE_FIX) from error
        raise error

    expected = (
        f"DVS Gesture's split folder '{folder}' holds userNN_<lighting> folders (e.g. "
        "user01_fluorescent), each holding <label>.npy files (0.npy to 10.npy)"
    )
    for path, _, files in os.walk(folder, onerror=refuse):
        place = Path(path).relative_to(folder).parts
        recordings = sorted(name for name in files if name.endswith("npy"))
        if len(place) == 1 and not is_user_folder_name(place[0]):
            raise InvalidDataError(
                f"'{path}' does not follow the layout: it is not a userNN_<lighting> folder, "
                f"from whose name tonic reads the user and the lighting. {expected}: move it "
                f"out of '{folder}'."
            )
        if len(place) == 1:
            for name in recordings:
                try:
                    int(name[:-4])
                except ValueError:
                    raise InvalidDataError(
                        f"'{Path(path) / name}' does not follow the layout: it is not named "
                        f"<label>.npy, from which tonic reads the label. {expected}: rename "
                        f"it or move it out of '{folder}'."
                    ) from None
        if len(place) > 1 and recordings:
            raise InvalidDataError(
                f"'{path}' holds .npy files ({', '.join(recordings[:3])}"
                f"{', ...' if len(recordings) > 3 else ''}) but is not a userNN_<lighting> "
                f"folder directly in '{folder}': tonic would read them as more recordings of "
                f"user {place[0]} (a copy? a backup?). {expected}: move them out of "
                f"'{folder}'."
            )


class DVSGestureDataModule(EventCameraDataModule):
    """DVS Gesture batches: inputs (batch, T, 2, 128 / f, 128 / f) event counts, f = downsampling.

    Bins start at each recording's first event (recordings are cut from longer sessions, so
    their clocks do not start at 0); defaults follow EXODUS: 5 ms bins over 1.5 s (T = 300) and
    f = 4 (32 x 32 pixels, each the sum of a 4 x 4 block).
    """

    dataset_name = "DVSGesture"
    num_classes = 11
    tonic_class = tonic.datasets.DVSGesture
    sensor_size = tonic.datasets.DVSGesture.sensor_size
    layout = DVS_GESTURE_LAYOUT
    source = DVS_GESTURE_SOURCE
    default_bin_width_ms = 5.0

    def __init__(
        self,
        *,
        num_time_steps: int = 300,
        bin_width_ms: float | None = None,
        downsample_factor: int = 4,
        **settings: Any,
    ) -> None:
        """DVS Gesture's settings; `settings` go to EventCameraDataModule and its bases.

        Args:
            num_time_steps: T, the number of time bins of every sample.
            bin_width_ms: width of one time bin in milliseconds; None: 5 ms, or
                duration_ms / num_time_steps when duration_ms is given.
            downsample_factor: integer f dividing 128; output pixels are f x f blocks.
        """
        super().__init__(num_time_steps=num_time_steps, bin_width_ms=bin_width_ms, **settings)
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
        frame_size = (width // downsample_factor, height // downsample_factor)
        self.to_frames = self.events_to_frames(frame_size, relative_to_first_event=True)

    def open_split(self, split: str) -> CheckedSamples:
        folder = "ibmGestureTrain" if split == "train" else "ibmGestureTest"
        split_folder = self.data_dir.resolve() / self.dataset_name / folder
        if split_folder.is_dir():
            check_dvs_gesture_folders(split_folder)
        dataset = self.open_tonic(f"{folder}/*/*.npy", train=split == "train")
        # tonic lists files in filesystem order, which differs between machines; sorting makes
        # index i (and so the seeded split and the cache) mean the same file everywhere.
        order = sorted(range(len(dataset.data)), key=dataset.data.__getitem__)
        for name in ("data", "targets", "users", "lighting"):
            values = getattr(dataset, name)
            setattr(dataset, name, [values[i] for i in order])
        check_labels(dataset.targets, dataset.data, self.num_classes, self.dataset_name)
        self.check_every_class(dataset.targets, split_folder)
        return CheckedSamples(dataset, list(dataset.data), event_limits=self.event_limits)
