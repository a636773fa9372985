"""Picklable event transforms: fixed-length binning, and augmentations chosen by name.

All transforms here are classes (no lambdas), so DataLoader workers started with `spawn`
(and Lightning's `ddp_spawn`) can pickle them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from fractions import Fraction

import numpy as np
import tonic.transforms as tonic_transforms

from exodus_lightning.data.device_binning import count_positions

MICROSECONDS_PER_MS = 1000


class Pipeline:
    """Apply transforms in order: x -> t_n(...t_1(x)).

    Unlike tonic's Compose this never stops early on an empty recording, so a sample without
    events still becomes an all-zero frame tensor of the usual shape.
    """

    def __init__(self, transforms: Sequence[Callable]) -> None:
        self.transforms = list(transforms)

    def __call__(self, sample):
        for transform in self.transforms:
            sample = transform(sample)
        return sample

    def __repr__(self) -> str:
        return f"Pipeline({self.transforms!r})"


class Denoise(tonic_transforms.Denoise):
    """tonic's Denoise (drop events with no neighbour within 1 pixel and `filter_time` µs) that
    also takes a recording without events, which it returns as it is; tonic's fails on one
    (it sizes its grid by the largest x and y).

    Same name, fields and repr as tonic's, so disk caches and prepared copies made with it keep
    their keys.
    """

    def __call__(self, events: np.ndarray) -> np.ndarray:
        if len(events) == 0:
            return events
        return super().__call__(events)


class CompactCounts:
    """Store integer counts in the smallest unsigned dtype that holds them (uint8/16/32).

    Used before the disk cache: uint8 frames compress and load ~2x faster than float32 ones.
    """

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        largest = frames.max(initial=0)
        for dtype in (np.uint8, np.uint16, np.uint32):
            if largest <= np.iinfo(dtype).max:
                return frames.astype(dtype)
        return frames

    def __repr__(self) -> str:
        return "CompactCounts()"


class ToFloat32:
    """Cast frames to float32 (undoes CompactCounts after the cache)."""

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        return np.asarray(frames, dtype=np.float32)

    def __repr__(self) -> str:
        return "ToFloat32()"


def decimal_fraction(value: float | int | Fraction) -> Fraction:
    """`value` as an exact fraction: a float as the decimal it is written as (0.7 -> 7/10, not
    the binary double just below it), an int or a Fraction as it is."""
    if isinstance(value, Fraction | int | np.integer):
        return Fraction(value)
    return Fraction(repr(float(value)))


def _time_bin_of_events(
    times_us: np.ndarray, num_time_steps: int, bin_width_us: Fraction, relative_to_first_event: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Time bin of each event, bin = floor((t - t0) / w), and a mask of bins in [0, T).

    Whole-microsecond times (integer dtypes, those of every dataset here) are binned exactly,
    w = n / d as a fraction: floor((t - t0) / w) = ((t - t0) * d) // n, so an event exactly on
    an edge k * w starts bin k, and one at t0 + T * w is dropped. Float times: in float64.
    """
    if not np.issubdtype(times_us.dtype, np.integer):
        times = times_us.astype(np.float64)
        start = times.min() if (relative_to_first_event and len(times)) else 0.0
        bins = np.floor((times - start) / float(bin_width_us)).astype(np.int64)
        return bins, (bins >= 0) & (bins < num_time_steps)
    times = times_us.astype(np.int64)
    start = times.min() if (relative_to_first_event and len(times)) else 0
    n, d = bin_width_us.numerator, bin_width_us.denominator
    # offset = q * n + r with 0 <= r < n, so offset * d // n = q * d + r * d // n; q is clipped
    # to T first (any bin from T on is dropped), so nothing exceeds max(T + 1, n) * d.
    quotient, remainder = np.divmod(times - start, n)
    quotient = np.minimum(quotient, num_time_steps)
    if max(num_time_steps + 1, n) * d < 2**62:
        bins = quotient * d + remainder * d // n
    else:  # a width of very many decimals: Python's unbounded integers
        bins = (quotient.astype(object) * d + remainder.astype(object) * d // n).astype(np.int64)
    return bins, (bins >= 0) & (bins < num_time_steps)


def _width_repr(bin_width_us: Fraction) -> str:
    # A width a float holds exactly (whole microseconds, halves, ...) reads as before, a float,
    # so caches and prepared copies made with it, whose binning is unchanged, keep their keys;
    # any other (e.g. 25000/3) reads as the fraction.
    if Fraction(float(bin_width_us)) == bin_width_us:
        return repr(float(bin_width_us))
    return f"{bin_width_us.numerator}/{bin_width_us.denominator}"


class EventsToFrames:
    """Count camera events (x, y, t, p) in T fixed-width time bins on a downsampled pixel grid.

    frames[b, p, y', x'] = #{events e : floor((t_e - t0) / w) = b, p_e = p,
                             floor(y_e * H' / H) = y', floor(x_e * W' / W) = x'}
    shape (T, P, H', W'), float32; t0 = 0, or the first event's time if `relative_to_first_event`.
    Events at or after t0 + T * w are dropped, so every sample has exactly T steps. The width w
    (µs) is exact: a Fraction (e.g. duration / T), or a float read as its decimal (see
    decimal_fraction); whole-µs times are binned in integer arithmetic (see
    _time_bin_of_events).
    """

    def __init__(
        self,
        sensor_size: tuple[int, int, int],
        frame_size: tuple[int, int],
        num_time_steps: int,
        bin_width_us: float | Fraction,
        relative_to_first_event: bool = False,
    ) -> None:
        width, height, _ = sensor_size
        out_width, out_height = frame_size
        if not (0 < out_width <= width and 0 < out_height <= height):
            raise ValueError(
                f"frame_size={frame_size} must be positive and at most the sensor's "
                f"(width, height)=({width}, {height})"
            )
        _check_binning(num_time_steps, bin_width_us)
        self.sensor_size = tuple(sensor_size)
        self.frame_size = (out_width, out_height)
        self.num_time_steps = num_time_steps
        self.bin_width_us = decimal_fraction(bin_width_us)
        self.relative_to_first_event = relative_to_first_event

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """Features of one time step, (P, H', W')."""
        return (self.sensor_size[2], self.frame_size[1], self.frame_size[0])

    def positions(self, events: np.ndarray) -> np.ndarray:
        """Flat index into the frames (T, P, H', W') of every event kept, in event order."""
        polarities, out_height, out_width = self.output_shape
        width, height, _ = self.sensor_size
        bins, inside = _time_bin_of_events(
            events["t"], self.num_time_steps, self.bin_width_us, self.relative_to_first_event
        )
        x = events["x"].astype(np.int64) * out_width // width
        y = events["y"].astype(np.int64) * out_height // height
        # Polarity may be bool, {0, 1} or {-1, 1}; map "on" to channel 1, anything else to 0.
        if polarities > 1:
            p = (events["p"].astype(np.int64) > 0).astype(np.int64)
        else:
            p = np.zeros_like(x)
        inside &= (x >= 0) & (x < out_width) & (y >= 0) & (y < out_height)
        flat = ((bins * polarities + p) * out_height + y) * out_width + x
        return flat[inside]

    def __call__(self, events: np.ndarray) -> np.ndarray:
        return count_positions(self.positions(events), self.num_time_steps, self.output_shape)

    def __repr__(self) -> str:
        return (
            f"EventsToFrames(sensor_size={self.sensor_size}, frame_size={self.frame_size}, "
            f"num_time_steps={self.num_time_steps}, bin_width_us={_width_repr(self.bin_width_us)}, "
            f"relative_to_first_event={self.relative_to_first_event})"
        )


class SpikesToChannels:
    """Count audio spikes (t, x) in T fixed-width time bins on fewer, merged channels.

    frames[b, c] = #{spikes s : floor((t_s - t0) / w) = b, floor(x_s * C / C_in) = c}
    shape (T, C), float32; with C_in = 700 and C = 100 each output channel merges 7 neighbours.
    Spikes at or after t0 + T * w are dropped; w is exact, as in EventsToFrames.
    """

    def __init__(
        self,
        num_input_channels: int,
        num_channels: int,
        num_time_steps: int,
        bin_width_us: float | Fraction,
        relative_to_first_event: bool = False,
    ) -> None:
        if not 0 < num_channels <= num_input_channels:
            raise ValueError(
                f"num_channels={num_channels} must be between 1 and the dataset's "
                f"{num_input_channels} channels"
            )
        _check_binning(num_time_steps, bin_width_us)
        self.num_input_channels = num_input_channels
        self.num_channels = num_channels
        self.num_time_steps = num_time_steps
        self.bin_width_us = decimal_fraction(bin_width_us)
        self.relative_to_first_event = relative_to_first_event

    @property
    def output_shape(self) -> tuple[int]:
        """Features of one time step, (C,)."""
        return (self.num_channels,)

    def positions(self, events: np.ndarray) -> np.ndarray:
        """Flat index into the frames (T, C) of every spike kept, in spike order."""
        bins, inside = _time_bin_of_events(
            events["t"], self.num_time_steps, self.bin_width_us, self.relative_to_first_event
        )
        channel = events["x"].astype(np.int64) * self.num_channels // self.num_input_channels
        inside &= (channel >= 0) & (channel < self.num_channels)
        flat = bins * self.num_channels + channel
        return flat[inside]

    def __call__(self, events: np.ndarray) -> np.ndarray:
        return count_positions(self.positions(events), self.num_time_steps, self.output_shape)

    def __repr__(self) -> str:
        return (
            f"SpikesToChannels(num_input_channels={self.num_input_channels}, "
            f"num_channels={self.num_channels}, num_time_steps={self.num_time_steps}, "
            f"bin_width_us={_width_repr(self.bin_width_us)}, "
            f"relative_to_first_event={self.relative_to_first_event})"
        )


def _check_binning(num_time_steps: int, bin_width_us: float | Fraction) -> None:
    if int(num_time_steps) != num_time_steps or num_time_steps < 1:
        raise ValueError(f"num_time_steps={num_time_steps} must be a positive integer")
    if not (bin_width_us > 0 and math.isfinite(bin_width_us)):
        raise ValueError(
            f"the bin width must be positive and finite; got {bin_width_us} microseconds"
        )


# Strengths are fixed on purpose (mild, label-preserving); a user wanting other values composes
# tonic transforms directly. Times are in microseconds, positions in sensor pixels/channels.
CAMERA_AUGMENTATIONS = ("drop_event", "time_jitter", "spatial_jitter", "flip_polarity")
AUDIO_AUGMENTATIONS = ("drop_event", "time_jitter")


def check_augmentation_names(names: Sequence[str], allowed: Sequence[str]) -> tuple[str, ...]:
    """Validate augmentation names now, so a typo fails at construction and not in a worker."""
    if isinstance(names, str):
        raise TypeError(f"augmentations must be a list of names such as ['{names}'], not a string")
    unknown = [name for name in names if name not in allowed]
    if unknown:
        raise ValueError(f"unknown augmentations {unknown}; choose from {list(allowed)}")
    return tuple(names)


def camera_augmentations(names: Sequence[str], sensor_size: tuple[int, int, int]) -> list[Callable]:
    """tonic transforms for event-camera recordings, in the order given by `names`.

    Left-right flips are not offered: they swap left- and right-hand gestures and mirror digits.
    """
    transforms: dict[str, Callable] = {
        "drop_event": tonic_transforms.DropEvent(p=0.1),
        "time_jitter": tonic_transforms.TimeJitter(std=1000.0, clip_negative=True),
        "spatial_jitter": tonic_transforms.SpatialJitter(
            sensor_size=sensor_size, var_x=1.0, var_y=1.0, clip_outliers=True
        ),
        "flip_polarity": tonic_transforms.RandomFlipPolarity(p=0.5),
    }
    return [transforms[name] for name in check_augmentation_names(names, CAMERA_AUGMENTATIONS)]


def audio_augmentations(names: Sequence[str]) -> list[Callable]:
    """tonic transforms for cochlea spike trains (SHD/SSC), in the order given by `names`."""
    transforms: dict[str, Callable] = {
        "drop_event": tonic_transforms.DropEvent(p=0.1),
        "time_jitter": tonic_transforms.TimeJitter(std=1000.0, clip_negative=True),
    }
    return [transforms[name] for name in check_augmentation_names(names, AUDIO_AUGMENTATIONS)]
