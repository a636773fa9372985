"""Spike-tensor DataModules: NMNIST, DVS Gesture, SHD, SSC (through tonic), Randman and Delayed XOR
(built in).

Every DataModule yields (inputs, targets) batches, inputs float32 (batch, time, *input_shape),
and exposes `num_classes`, `input_shape` and `num_time_steps` right after construction.

The names below are imported on first use, so that a module of this package that needs only
numpy and torch (device_binning, for the GPU benchmark on a bare machine) imports without
tonic or Lightning.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# name -> module of this package that defines it
_WHERE = {
    "SHDDataModule": "audio_spikes",
    "SSCDataModule": "audio_spikes",
    "GeneratedDataModule": "base",
    "SpikeDataModule": "base",
    "split_indices": "base",
    "pad_time_collate": "collate",
    "DelayedXorDataModule": "delayed_xor",
    "DVSGestureDataModule": "dvs_gesture",
    "DatasetDownloadError": "errors",
    "DatasetNotFoundError": "errors",
    "InvalidDataError": "errors",
    "UnreadableFileError": "errors",
    "EventDataModule": "event_base",
    "NMNISTDataModule": "nmnist",
    "RandmanDataModule": "randman",
    "RandomManifolds": "randman",
}
__all__ = [
    "DVSGestureDataModule",
    "DelayedXorDataModule",
    "DatasetDownloadError",
    "DatasetNotFoundError",
    "EventDataModule",
    "GeneratedDataModule",
    "InvalidDataError",
    "NMNISTDataModule",
    "RandmanDataModule",
    "RandomManifolds",
    "SHDDataModule",
    "SSCDataModule",
    "SpikeDataModule",
    "UnreadableFileError",
    "pad_time_collate",
    "split_indices",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))


if TYPE_CHECKING:  # what type checkers and IDEs see
    from exodus_lightning.data.audio_spikes import SHDDataModule, SSCDataModule
    from exodus_lightning.data.base import GeneratedDataModule, SpikeDataModule, split_indices
    from exodus_lightning.data.collate import pad_time_collate
    from exodus_lightning.data.delayed_xor import DelayedXorDataModule
    from exodus_lightning.data.dvs_gesture import DVSGestureDataModule
    from exodus_lightning.data.errors import (
        DatasetDownloadError,
        DatasetNotFoundError,
        InvalidDataError,
        UnreadableFileError,
    )
    from exodus_lightning.data.event_base import EventDataModule
    from exodus_lightning.data.nmnist import NMNISTDataModule
    from exodus_lightning.data.randman import RandmanDataModule, RandomManifolds
