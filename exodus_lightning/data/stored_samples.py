"""How a prepared (streamed) copy stores one sample, and how it is turned back into a sample.

Two forms: binned frames (counts as small integers) or events (the preprocessed tonic events,
when random augmentation must still run on events before binning). Frames are stored dense
or sparse, whichever takes fewer bytes for that sample:

    dense:  counts = frames.ravel()                        (size = T * prod(input_shape))
    sparse: positions = flat indices i with frames.flat[i] != 0, counts = frames.flat[positions]

so busy recordings stay dense and mostly empty ones (N-MNIST's 34 x 34 x 2 frames) shrink.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from exodus_lightning.data.errors import InvalidDataError
from exodus_lightning.data.seeded_draws import numpy_seeded
from exodus_lightning.data.transforms import Pipeline

# litdata infers one dtype per field from the first sample it writes, so every sample of a
# copy uses these: counts up to 65535 per bin, flat positions up to 2**31 - 1.
COUNT_DTYPE = np.uint16
POSITION_DTYPE = np.int32


def encode_frames(frames: np.ndarray) -> dict:
    """A stored frame sample: {"counts", "positions"} in the dense or sparse form (module doc)."""
    frames = np.asarray(frames).ravel()
    largest = frames.max(initial=0)
    if largest > np.iinfo(COUNT_DTYPE).max:
        raise InvalidDataError(
            f"a time bin holds {largest} events, more than a prepared copy stores "
            f"({np.iinfo(COUNT_DTYPE).max}); use narrower bins (bin_width_ms)"
        )
    counts = frames.astype(COUNT_DTYPE)
    if not np.array_equal(counts, frames):
        raise InvalidDataError(
            "frames hold values that are not event counts (negative or fractional); a "
            "prepared copy stores counts: prepare with --store events instead"
        )
    positions = np.flatnonzero(counts).astype(POSITION_DTYPE)
    sparse_bytes = positions.nbytes + len(positions) * counts.itemsize
    if sparse_bytes < counts.nbytes:
        return {"counts": counts[positions], "positions": positions}
    return {"counts": counts, "positions": np.zeros(0, dtype=POSITION_DTYPE)}


class StoredFrames:
    """One sample's frames as stored (dense or sparse counts), decoded when needed:
    np.asarray(frames) gives float32 frames of `shape` (T, *input_shape), and pad_time_collate
    decodes a batch of them straight into the batch array (no per-sample copy)."""

    __slots__ = ("counts", "positions", "shape")

    def __init__(self, counts: np.ndarray, positions: np.ndarray, shape: Sequence[int]) -> None:
        self.counts = np.asarray(counts)
        self.positions = np.asarray(positions)
        self.shape = tuple(int(size) for size in shape)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        frames = decode_frames({"counts": self.counts, "positions": self.positions}, self.shape)
        return frames if dtype is None else frames.astype(dtype)

    def largest(self) -> int:
        """The largest count of any bin (0 for an empty sample)."""
        return int(self.counts.max(initial=0))

    def fill(self, row: np.ndarray) -> None:
        """Write the counts into `row`, a zeroed flat array of prod(shape) values."""
        if self.counts.size == row.size:
            row[:] = self.counts
        else:
            row[self.positions] = self.counts


def collate_stored_frames(frames: Sequence[StoredFrames]) -> np.ndarray:
    """Counts (batch, *shape) of equally shaped StoredFrames, as uint8 when every count is
    below 256, else uint16.

    Integers, not float32: a batch leaving a DataLoader worker is copied through shared memory
    into the main process and then to the GPU, and uint8 carries 4x fewer bytes (one worker on
    2 cores served SHD 1.6-2.5x and N-MNIST 1.8-3.8x more samples/s than with float32 batches;
    docs/streaming.md). SpikeDataModule.on_after_batch_transfer casts them to
    float32 on the device.
    """
    shape = frames[0].shape
    largest = max(sample.largest() for sample in frames)
    dtype = np.uint8 if largest <= np.iinfo(np.uint8).max else COUNT_DTYPE
    batch = np.zeros((len(frames), int(np.prod(shape))), dtype=dtype)
    for row, sample in zip(batch, frames):
        sample.fill(row)
    return batch.reshape(len(frames), *shape)


def decode_frames(stored: dict, shape: Sequence[int]) -> np.ndarray:
    """float32 frames of `shape` (T, *input_shape) from encode_frames' output."""
    size = int(np.prod(shape))
    counts = np.asarray(stored["counts"])
    if counts.size == size:
        return counts.astype(np.float32).reshape(shape)
    frames = np.zeros(size, dtype=np.float32)
    frames[np.asarray(stored["positions"])] = counts
    return frames.reshape(shape)


class SampleEncoder:
    """Sample `index` of `samples` (already transformed) as the dict a prepared copy stores.

    {"index": source index, "label": int, "counts", "positions"} for frames, or
    {"index", "label", "events": the structured event array's bytes} for events.
    """

    def __init__(self, samples: Dataset, events: bool) -> None:
        self.samples = samples
        self.events = events

    def __call__(self, index: int) -> dict:
        data, label = self.samples[index]
        stored = {"index": int(index), "label": int(label)}
        if self.events:
            stored["events"] = np.ascontiguousarray(data).tobytes()
        else:
            stored.update(encode_frames(data))
        return stored


class SampleDecoder:
    """A stored dict -> (frames (T, *input_shape), label), as the tonic path yields them.

    Frames copies: StoredFrames (decoded by np.asarray, or a whole batch at once by
    pad_time_collate). Events copies: the events (of `events_dtype`) run through
    `after_events` (random augmentation, then binning) on every access.

    With a `seed` and the stream set by `draw_by_pass_of`, `after_events` draws inside
    numpy_seeded(seed, epoch, stored["index"]), epoch = the stream's pass number - 1 (the
    Trainer's epoch, see streaming_loader): the draws of the tonic path's EpochSeededSubset,
    for the same sample in the same epoch.
    """

    def __init__(
        self,
        frame_shape: Sequence[int],
        events_dtype: np.dtype | None = None,
        after_events: Sequence[Callable] = (),
        seed: int | None = None,
    ) -> None:
        self.frame_shape = tuple(int(size) for size in frame_shape)
        self.events_dtype = events_dtype
        self.after_events = Pipeline(after_events)
        self.seed = None if seed is None else int(seed)
        self.stream = None

    def draw_by_pass_of(self, stream: Any) -> None:
        """Seed the draws from the pass number (`current_epoch`, counted from 1) of `stream`,
        the litdata StreamingDataset this decoder serves: the number litdata shuffles by, in
        whichever process (worker) reads the sample."""
        self.stream = stream

    def __call__(self, stored: dict) -> tuple[np.ndarray, int]:
        if self.events_dtype is None:
            frames = StoredFrames(stored["counts"], stored["positions"], self.frame_shape)
            return frames, int(stored["label"])
        # A copy: the buffer is read-only and augmentations may write in place.
        events = np.frombuffer(stored["events"], dtype=self.events_dtype).copy()
        if self.seed is None or self.stream is None:
            return self.after_events(events), int(stored["label"])
        epoch = int(self.stream.current_epoch) - 1
        with numpy_seeded(self.seed, epoch, int(stored["index"])):
            return self.after_events(events), int(stored["label"])


def dtype_to_json(dtype: np.dtype) -> list:
    """A structured dtype as JSON: [[field, type string], ...] (numpy's descr)."""
    return [list(field) for field in np.dtype(dtype).descr]


def dtype_from_json(descr: list) -> np.dtype:
    return np.dtype([tuple(field) for field in descr])
