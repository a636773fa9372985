"""IBM DVS Gesture: 11 hand and arm gestures recorded by a 128 x 128 event camera."""

from __future__ import annotations

from typing import Any

import tonic

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
        dataset = self.open_tonic(f"{folder}/*/*.npy", train=split == "train")
        # tonic lists files in filesystem order, which differs between machines; sorting makes
        # index i (and so the seeded split and the cache) mean the same file everywhere.
        order = sorted(range(len(dataset.data)), key=dataset.data.__getitem__)
        for name in ("data", "targets", "users", "lighting"):
            values = getattr(dataset, name)
            setattr(dataset, name, [values[i] for i in order])
        check_labels(dataset.targets, dataset.data, self.num_classes, self.dataset_name)
        split_folder = self.data_dir.resolve() / self.dataset_name / folder
        self.check_every_class(dataset.targets, split_folder)
        return CheckedSamples(dataset, list(dataset.data), event_limits=self.event_limits)
