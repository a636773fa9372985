"""Spike-tensor DataModules: NMNIST, DVS Gesture, SHD, SSC (through tonic), Randman and Delayed XOR
(built in).

Every DataModule yields (inputs, targets) batches, inputs float32 (batch, time, *input_shape),
and exposes `num_classes`, `input_shape` and `num_time_steps` right after construction.
"""

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
