"""Binning transforms, the augmentation registry and picklability."""

from __future__ import annotations

import math
import pickle
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exodus_lightning.data import SHDDataModule
from exodus_lightning.data.transforms import (
    AUDIO_AUGMENTATIONS,
    CAMERA_AUGMENTATIONS,
    Denoise,
    EventsToFrames,
    Pipeline,
    SpikesToChannels,
    audio_augmentations,
    camera_augmentations,
)

CAMERA_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("p", bool), ("t", np.int64)])
AUDIO_DTYPE = np.dtype([("t", np.int64), ("x", np.int64), ("p", np.int64)])


def camera_events(rows: list[tuple[int, int, int, int]]) -> np.ndarray:
    """Events from (x, y, p, t) rows."""
    return np.array(rows, dtype=CAMERA_DTYPE)


def test_events_land_in_the_right_bin_pixel_and_polarity() -> None:
    to_frames = EventsToFrames((4, 3, 2), (4, 3), num_time_steps=3, bin_width_us=1000)
    events = camera_events(
        [(0, 0, 0, 0), (1, 2, 1, 999), (1, 2, 1, 1000), (3, 1, 0, 2999), (3, 1, 0, 3000)]
    )
    frames = to_frames(events)
    assert frames.shape == (3, 2, 3, 4) and frames.dtype == np.float32
    expected = np.zeros((3, 2, 3, 4), dtype=np.float32)
    expected[0, 0, 0, 0] = 1
    expected[0, 1, 2, 1] = 1
    expected[1, 1, 2, 1] = 1
    expected[2, 0, 1, 3] = 1  # the event at t = 3000 = T * w falls outside and is dropped
    np.testing.assert_array_equal(frames, expected)


def test_spatial_downsampling_sums_blocks() -> None:
    to_frames = EventsToFrames((128, 128, 2), (32, 32), num_time_steps=1, bin_width_us=10)
    events = camera_events([(0, 0, 1, 0), (3, 3, 1, 1), (4, 0, 1, 2), (127, 127, 0, 3)])
    frames = to_frames(events)
    assert frames.shape == (1, 2, 32, 32)
    assert frames[0, 1, 0, 0] == 2  # (0, 0) and (3, 3) share the first 4 x 4 block
    assert frames[0, 1, 0, 1] == 1
    assert frames[0, 0, 31, 31] == 1
    assert frames.sum() == 4


def test_relative_binning_starts_at_the_first_event() -> None:
    events = camera_events([(0, 0, 0, 5000), (0, 0, 0, 5500), (0, 0, 0, 6000)])
    relative = EventsToFrames((1, 1, 2), (1, 1), 2, 1000, relative_to_first_event=True)(events)
    absolute = EventsToFrames((1, 1, 2), (1, 1), 2, 1000)(events)
    np.testing.assert_array_equal(relative[:, 0, 0, 0], [2, 1])
    assert absolute.sum() == 0  # all events lie after 2 ms


def test_no_events_gives_zero_frames_of_full_shape() -> None:
    empty = camera_events([])
    frames = Pipeline([EventsToFrames((34, 34, 2), (34, 34), 7, 1000)])(empty)
    assert frames.shape == (7, 2, 34, 34) and not frames.any()


def test_denoise_is_tonics_and_also_takes_a_recording_without_events() -> None:
    tonic = pytest.importorskip("tonic")
    rng = np.random.default_rng(0)
    events = camera_events([(int(x), int(y), int(p), int(t)) for x, y, p, t in zip(
        rng.integers(0, 8, 300), rng.integers(0, 8, 300), rng.integers(0, 2, 300),
        np.sort(rng.integers(0, 100_000, 300)))])  # fmt: skip
    theirs = tonic.transforms.Denoise(filter_time=2000.0)
    ours = Denoise(filter_time=2000.0)
    kept = ours(events)
    np.testing.assert_array_equal(kept, theirs(events))
    assert 0 < len(kept) < len(events)
    # The repr is part of cache keys and prepared copies' manifests: tonic's, as before.
    assert repr(ours) == repr(theirs) and pickle.loads(pickle.dumps(ours)) == ours
    with pytest.raises(ValueError):  # tonic's sizes its grid by the largest x
        theirs(camera_events([]))
    empty = ours(camera_events([]))
    assert len(empty) == 0 and empty.dtype == CAMERA_DTYPE


@settings(max_examples=40, deadline=None)
@given(
    data=st.lists(
        st.tuples(st.integers(0, 699), st.integers(0, 50_000), st.integers(0, 1)),
        max_size=60,
    ),
    num_channels=st.integers(1, 700),
    num_time_steps=st.integers(1, 20),
    bin_width_us=st.floats(100, 5000),
)
def test_audio_binning_matches_a_per_spike_count(
    data: list[tuple[int, int, int]], num_channels: int, num_time_steps: int, bin_width_us: float
) -> None:
    events = np.array([(t, x, 1) for x, t, _ in data], dtype=AUDIO_DTYPE)
    frames = SpikesToChannels(700, num_channels, num_time_steps, bin_width_us)(events)
    expected = np.zeros((num_time_steps, num_channels), dtype=np.float32)
    width = Fraction(repr(bin_width_us))  # the width as the decimal it reads as
    for x, t, _ in data:
        step = math.floor(t / width)
        if step < num_time_steps:
            expected[step, x * num_channels // 700] += 1
    np.testing.assert_array_equal(frames, expected)


# (num_time_steps, duration_ms): widths duration / T of a whole number of µs or not (25000/3 µs).
DURATIONS = [(120, 1000), (6, 100), (11, 100), (12, 350), (300, 1000), (7, 1500), (250, 1000)]


@pytest.mark.parametrize(("num_time_steps", "duration_ms"), DURATIONS)
def test_events_on_the_edges_of_duration_over_steps_start_their_bin(
    num_time_steps: int, duration_ms: int
) -> None:
    # Exactly: bin = floor(t * T / duration), and t = duration (the window end) is dropped.
    module = SHDDataModule(data_dir="unused", num_time_steps=num_time_steps,
                           duration_ms=duration_ms, num_channels=700)  # fmt: skip
    duration = duration_ms * 1000
    edges = [k * duration // num_time_steps for k in range(num_time_steps + 1)]
    times = sorted({t + shift for t in edges for shift in (-1, 0, 1) if t + shift >= 0})
    events = np.array([(t, 0, 1) for t in times], dtype=AUDIO_DTYPE)
    expected = np.zeros(num_time_steps, dtype=np.float32)
    for t in times:
        if t < duration:
            expected[t * num_time_steps // duration] += 1
    np.testing.assert_array_equal(module.to_frames(events).sum(axis=1), expected)
    # The same with the window starting at the first event (DVS Gesture's binning).
    camera = EventsToFrames((2, 2, 2), (2, 2), num_time_steps, module.bin_width_us,
                            relative_to_first_event=True)  # fmt: skip
    shifted = camera_events([(0, 0, 1, 123_457 + t) for t in times])
    np.testing.assert_array_equal(camera(shifted)[:, 1, 0, 0], expected)


@pytest.mark.parametrize("settings", [
    {"bin_width_ms": 1.0}, {"bin_width_ms": 3.5}, {"bin_width_ms": 0.7},
    {"duration_ms": 1000, "num_time_steps": 250}, *[
        {"duration_ms": duration_ms, "num_time_steps": steps} for steps, duration_ms in DURATIONS
    ],
])  # fmt: skip
def test_binning_matches_tonics_to_frame(settings: dict) -> None:
    """tonic's ToFrame(time_window=w, start_time=t0, end_time=t0 + T * w): windows
    [t0 + k w, t0 + (k + 1) w). Its window edges are floats, exact where w is a whole number of
    µs; elsewhere only times off the edges are compared (an event exactly on an edge is put in
    the bin before or after it by the float error, either way)."""
    tonic = pytest.importorskip("tonic")
    num_time_steps = settings.get("num_time_steps", 40)
    module = SHDDataModule(data_dir="unused", **{"num_time_steps": num_time_steps, **settings})
    width = module.bin_width_us
    sensor = (3, 2, 2)
    start = 7_000
    edges = [start + math.floor(k * width) for k in range(num_time_steps + 2)]
    times = sorted({t + shift for t in edges for shift in (-1, 0, 1)} - {start - 1})
    if width.denominator > 1:  # off the edges only
        times = [t for t in times if (t - start) * width.denominator % width.numerator]
    times = [start, *times]  # the first event starts the window, as DVS Gesture's do
    rng = np.random.default_rng(len(times))
    events = camera_events([(int(rng.integers(3)), int(rng.integers(2)), int(rng.integers(2)), t)
                            for t in times])  # fmt: skip
    ours = EventsToFrames(sensor, sensor[:2], num_time_steps, width,
                          relative_to_first_event=True)(events)  # fmt: skip
    # Half a window past the end: tonic counts its windows in floats too.
    end = start + float(num_time_steps * width) + (0 if width.denominator == 1 else width / 2)
    theirs = tonic.transforms.ToFrame(sensor_size=sensor, time_window=float(width),
                                      start_time=start, end_time=end)(events)  # fmt: skip
    assert theirs.shape == ours.shape
    np.testing.assert_array_equal(ours, theirs)
    assert ours.sum() == sum(t < start + num_time_steps * width for t in times)


def test_700_channels_merge_into_100_groups_of_7() -> None:
    events = np.array([(0, x, 1) for x in range(700)], dtype=AUDIO_DTYPE)
    frames = SpikesToChannels(700, 100, 1, 1000)(events)
    np.testing.assert_array_equal(frames[0], np.full(100, 7, dtype=np.float32))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: EventsToFrames((34, 34, 2), (40, 34), 10, 1000), "frame_size"),
        (lambda: EventsToFrames((34, 34, 2), (34, 34), 0, 1000), "num_time_steps"),
        (lambda: SpikesToChannels(700, 100, 10, 0.0), "bin width"),
        (lambda: SpikesToChannels(700, 701, 10, 1000), "num_channels"),
    ],
)
def test_bad_binning_parameters_are_named(make, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_augmentations_are_built_by_name_and_typos_rejected() -> None:
    sensor = (34, 34, 2)
    assert len(camera_augmentations(CAMERA_AUGMENTATIONS, sensor)) == len(CAMERA_AUGMENTATIONS)
    assert len(audio_augmentations(AUDIO_AUGMENTATIONS)) == len(AUDIO_AUGMENTATIONS)
    with pytest.raises(ValueError, match="unknown augmentations \\['flip_lr'\\]"):
        camera_augmentations(["drop_event", "flip_lr"], sensor)
    with pytest.raises(ValueError, match="spatial_jitter"):
        audio_augmentations(["spatial_jitter"])
    with pytest.raises(TypeError, match="list of names"):
        audio_augmentations("drop_event")


def test_augmented_pipeline_survives_pickling_and_keeps_the_shape() -> None:
    sensor = (34, 34, 2)
    pipeline = Pipeline(
        [
            *camera_augmentations(CAMERA_AUGMENTATIONS, sensor),
            EventsToFrames(sensor, (34, 34), 5, 1e4),
        ]
    )
    restored = pickle.loads(pickle.dumps(pipeline))
    rng = np.random.default_rng(0)
    events = camera_events(
        [
            (int(rng.integers(34)), int(rng.integers(34)), int(rng.integers(2)), t * 100)
            for t in range(400)
        ]
    )
    frames = restored(events)
    assert frames.shape == (5, 2, 34, 34)
    assert 0 < frames.sum() <= len(events)
    assert repr(restored) == repr(pipeline)
