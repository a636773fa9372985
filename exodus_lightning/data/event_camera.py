"""Base DataModule for event-camera recordings (N-MNIST, DVS Gesture): denoising, augmentations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from exodus_lightning.data.event_base import EventDataModule
from exodus_lightning.data.transforms import (
    CAMERA_AUGMENTATIONS,
    Denoise,
    EventsToFrames,
    camera_augmentations,
)


class EventCameraDataModule(EventDataModule):
    """Camera events (x, y, t, p) -> optional denoising -> camera augmentations -> frames.

    Subclasses set `sensor_size` (width, height, polarities) and, in __init__, `to_frames`
    (through `events_to_frames`).
    """

    sensor_size: tuple[int, int, int]
    augmentation_choices = CAMERA_AUGMENTATIONS

    def __init__(self, *, denoise_ms: float | None = None, **settings: Any) -> None:
        """Check and store the camera settings; `settings` go to EventDataModule.

        Args:
            denoise_ms: drop events with no neighbour within 1 pixel and this many ms (tonic's
                Denoise); None: keep every event.
        """
        super().__init__(**settings)
        if denoise_ms is not None and not denoise_ms > 0:
            raise ValueError(f"denoise_ms={denoise_ms} must be positive, or None for no denoising")
        self.denoise_ms = denoise_ms

    @property
    def event_limits(self) -> dict[str, tuple[int, str]]:
        """Valid event coordinates: x < width, y < height (see CheckedSamples)."""
        width, height, _ = self.sensor_size
        return {"x": (width, "pixel column"), "y": (height, "pixel row")}

    def events_to_frames(
        self, frame_size: tuple[int, int], relative_to_first_event: bool = False
    ) -> EventsToFrames:
        """The binning of this module's T bins of width w onto a (width, height) `frame_size`."""
        return EventsToFrames(
            sensor_size=self.sensor_size,
            frame_size=frame_size,
            num_time_steps=self.num_time_steps,
            bin_width_us=self.bin_width_us,
            relative_to_first_event=relative_to_first_event,
        )

    def preprocessing(self) -> list[Callable]:
        if self.denoise_ms is None:
            return []
        return [Denoise(filter_time=self.denoise_ms * 1000.0)]

    def augmentation(self) -> list[Callable]:
        return camera_augmentations(self.augmentation_names, self.sensor_size)
