"""Collation of `(frames, target)` samples into `(inputs, targets)` batches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from exodus_lightning.data.device_binning import (
    EventPositions,
    EventPositionsBatch,
    collate_event_positions,
)
from exodus_lightning.data.stored_samples import StoredFrames, collate_stored_frames


def pad_time_collate(
    samples: Sequence[tuple[Any, Any]],
) -> tuple[torch.Tensor | EventPositionsBatch, torch.Tensor]:
    """Stack samples of shape (T_i, *features) into inputs (batch, max_i T_i, *features).

    Shorter samples are padded with zeros at the end of time, i.e. they receive no input spikes
    after their last bin; inputs are float32 and targets int64 of shape (batch,). A prepared
    copy's frames (StoredFrames) are collated as integer counts instead (uint8 or uint16, see
    collate_stored_frames), which SpikeDataModule.on_after_batch_transfer casts to float32, and
    events to be binned on the device (EventPositions) as an EventPositionsBatch, which it bins.
    """
    if len(samples) == 0:
        raise ValueError("pad_time_collate got an empty batch; check the dataset is not empty")
    if all(isinstance(frame, StoredFrames) for frame, _ in samples) and (
        len({frame.shape for frame, _ in samples}) == 1
    ):
        # A prepared copy's frames: decoded straight into the batch, as integer counts.
        inputs = torch.from_numpy(collate_stored_frames([frame for frame, _ in samples]))
        targets = torch.as_tensor([int(target) for _, target in samples], dtype=torch.long)
        return inputs, targets
    if all(isinstance(frame, EventPositions) for frame, _ in samples) and (
        len({frame.shape for frame, _ in samples}) == 1
    ):
        targets = torch.as_tensor([int(target) for _, target in samples], dtype=torch.long)
        return collate_event_positions([frame for frame, _ in samples]), targets
    frames = [torch.as_tensor(np.asarray(frame), dtype=torch.float32) for frame, _ in samples]
    feature_shape = frames[0].shape[1:]
    for frame in frames:
        if frame.ndim < 1 or frame.shape[1:] != feature_shape:
            raise ValueError(
                "pad_time_collate needs samples shaped (time, *features) with equal features; "
                f"got {tuple(frame.shape)} next to {(None, *feature_shape)}"
            )
    max_time = max(frame.shape[0] for frame in frames)
    targets = torch.as_tensor(np.asarray([int(target) for _, target in samples]), dtype=torch.long)
    if all(frame.shape[0] == max_time for frame in frames):
        # One allocation and copy instead of zero-fill then copy (batches reach ~100 MB).
        return torch.stack(frames), targets
    inputs = torch.zeros((len(frames), max_time, *feature_shape), dtype=torch.float32)
    for row, frame in enumerate(frames):
        inputs[row, : frame.shape[0]] = frame
    return inputs, targets
