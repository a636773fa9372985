"""Binning events into frames on the device, on whole batches (`bin_on_device=True`).

The worker computes each kept event's flat index into its frames (the binning transform's
`positions`: time bin, channel or pixel); the batch carries those indices, 4 bytes per event,
instead of the dense frames, and the counting runs on the device after the transfer:

    frames[b].flat[i] = #{events e of sample b : positions[e] = i}
    global index of event e of sample b = b * T * prod(input_shape) + positions[e]

the same counts as the binning transform's own np.bincount (count_positions), so the frames are
equal. This module needs numpy and torch only (no tonic, no Lightning): the GPU benchmark times it
on a bare GPU machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


def count_positions(
    positions: np.ndarray, num_time_steps: int, output_shape: Sequence[int]
) -> np.ndarray:
    """float32 frames (T, *output_shape): frames.flat[i] = #{events e : positions[e] = i} (the
    binning transforms' counting, in the worker)."""
    counts = np.bincount(positions, minlength=num_time_steps * int(np.prod(output_shape)))
    return counts.reshape(num_time_steps, *output_shape).astype(np.float32)


class EventPositions:
    """One sample's events as flat indices into its frames of `shape` (T, *input_shape);
    np.asarray gives the float32 frames, as the binning transform would."""

    __slots__ = ("positions", "shape")

    def __init__(self, positions: np.ndarray, shape: Sequence[int]) -> None:
        self.positions = np.asarray(positions)
        self.shape = tuple(int(size) for size in shape)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        frames = count_positions(self.positions, self.shape[0], self.shape[1:])
        return frames if dtype is None else frames.astype(dtype)


class ToEventPositions:
    """Events -> EventPositions, with the positions of a binning transform (EventsToFrames or
    SpikesToChannels): the binning without the counting, which runs on the device."""

    def __init__(self, to_frames) -> None:
        self.to_frames = to_frames

    def __call__(self, events: np.ndarray) -> EventPositions:
        shape = (self.to_frames.num_time_steps, *self.to_frames.output_shape)
        return EventPositions(self.to_frames.positions(events), shape)

    def __repr__(self) -> str:
        return f"ToEventPositions({self.to_frames!r})"


@dataclass
class EventPositionsBatch:
    """A batch of EventPositions: every event's global flat index (module doc), int32 when it
    fits, and the batch's frame shape (batch, T, *input_shape). Lightning moves it to the
    device with `to()`; `frames()` counts the positions there."""

    positions: torch.Tensor
    shape: tuple[int, ...]

    def pin_memory(self) -> EventPositionsBatch:
        """The same batch in page-locked memory (DataLoader's pin_memory calls this)."""
        return EventPositionsBatch(self.positions.pin_memory(), self.shape)

    def to(self, device: torch.device | str) -> EventPositionsBatch:
        """The same batch with positions on ``device``: what Lightning's batch transfer calls.

        Non-blocking to a GPU (from pinned memory the copy overlaps the host's work; the
        counting that follows runs in stream order after it), blocking to the CPU, as
        Lightning moves tensors.
        """
        device = torch.device(device)
        non_blocking = device.type not in ("cpu", "mps")
        return EventPositionsBatch(self.positions.to(device, non_blocking=non_blocking),
                                   self.shape)

    def frames(self) -> torch.Tensor:
        """float32 frames of `shape`, counted on positions' device."""
        size = int(np.prod(self.shape))
        device = self.positions.device
        # scatter_add_, not bincount: 6x faster on CPU here, and deterministic on CUDA (float32
        # sums of ones are exact up to 2**24 events per bin, so the order of the adds is moot).
        frames = torch.zeros(size, dtype=torch.float32, device=device)
        ones = torch.ones(self.positions.numel(), dtype=torch.float32, device=device)
        frames.scatter_add_(0, self.positions.long(), ones)
        return frames.reshape(self.shape)


def collate_event_positions(samples: Sequence[EventPositions]) -> EventPositionsBatch:
    """One EventPositionsBatch of equally shaped EventPositions."""
    shape = samples[0].shape
    size = int(np.prod(shape))
    batch_shape = (len(samples), *shape)
    # int32 halves what crosses to the main process and the device; int64 beyond 2**31 - 1.
    dtype = np.int32 if len(samples) * size <= np.iinfo(np.int32).max else np.int64
    positions = np.concatenate(
        [sample.positions.astype(dtype) + dtype(row * size) for row, sample in enumerate(samples)]
    )
    return EventPositionsBatch(torch.from_numpy(positions), batch_shape)
