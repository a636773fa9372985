"""Files that are present but wrong: each fails naming the file and what is wrong (issue 17).

Every case is a tiny file in the dataset's exact format with one thing broken; before these
checks each was read silently wrong (events or samples dropped) or failed without a path.
"""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from exodus_lightning.data import (
    DVSGestureDataModule,
    EventDataModule,
    InvalidDataError,
    NMNISTDataModule,
    SHDDataModule,
    UnreadableFileError,
)
from exodus_lightning.data.fabricate import (
    encode_nmnist_events,
    write_dvs_gesture,
    write_nmnist,
    write_shd,
)


def read_every_sample(module: EventDataModule, split: str = "test") -> None:
    samples = module.make_dataset(split)
    for index in range(len(samples)):
        samples[index]


def nmnist_root(tmp_path: Path) -> Path:
    return write_nmnist(tmp_path, num_train_per_class=1, num_test_per_class=1, num_events=40)


def first_nmnist_file(root: Path) -> Path:
    return sorted((root / "NMNIST" / "Test").glob("*/*.bin"))[0]


def nmnist(root: Path) -> NMNISTDataModule:
    return NMNISTDataModule(data_dir=root, download=False, num_time_steps=10, bin_width_ms=30)


def shd_root(tmp_path: Path) -> Path:
    return write_shd(tmp_path, num_train=6, num_test=6, spikes_per_sample=20)


def shd(root: Path) -> SHDDataModule:
    return SHDDataModule(data_dir=root, download=False, num_time_steps=10, bin_width_ms=100)


# --- N-MNIST ---------------------------------------------------------------------------------


def test_empty_nmnist_file_is_named(tmp_path: Path) -> None:
    root = nmnist_root(tmp_path)
    broken = first_nmnist_file(root)
    broken.write_bytes(b"")
    with pytest.raises(UnreadableFileError, match=re.escape(f"'{broken}' is empty")):
        read_every_sample(nmnist(root))


@pytest.mark.parametrize(
    ("x", "y", "message"), [(34, 3, "pixel column x = 34"), (3, 40, "pixel row y = 40")]
)
def test_nmnist_event_outside_the_34_by_34_sensor_is_named(
    x: int, y: int, message: str, tmp_path: Path
) -> None:
    root = nmnist_root(tmp_path)
    broken = first_nmnist_file(root)
    broken.write_bytes(encode_nmnist_events([1, x, 2], [1, y, 2], [10, 20, 30], [0, 1, 0]))
    with pytest.raises(InvalidDataError) as raised:
        read_every_sample(nmnist(root))
    assert str(broken) in str(raised.value)
    assert f"event 1 has the {message}, outside 0 to 33" in str(raised.value)


# --- SHD / SSC -------------------------------------------------------------------------------


def edit_sample(path: Path, index: int, times_s: list[float], units: list[int]) -> None:
    with h5py.File(path, "r+") as file:
        file["spikes/times"][index] = np.asarray(times_s, dtype=np.float16)
        file["spikes/units"][index] = np.asarray(units, dtype=np.uint16)


@pytest.mark.parametrize("unit", [700, 1000])
def test_shd_unit_beyond_the_700_channels_is_named(unit: int, tmp_path: Path) -> None:
    root = shd_root(tmp_path)
    broken = root / "SHD" / "shd_test.h5"
    edit_sample(broken, 2, [0.1, 0.2, 0.3], [5, unit, 12])
    with pytest.raises(InvalidDataError) as raised:
        read_every_sample(shd(root))
    message = str(raised.value)
    assert f"Sample 2 of '{broken}'" in message
    assert f"event 1 has the spike unit (input channel) x = {unit}, outside 0 to 699" in message


@pytest.mark.parametrize(
    ("time_s", "message"),
    [
        (float("nan"), "NaN or infinite"),
        (float("inf"), "NaN or infinite"),
        (-0.05, "negative time"),
    ],
)
def test_shd_nan_or_negative_spike_time_is_named(
    time_s: float, message: str, tmp_path: Path
) -> None:
    root = shd_root(tmp_path)
    broken = root / "SHD" / "shd_test.h5"
    edit_sample(broken, 1, [0.1, time_s, 0.3], [5, 6, 7])
    with pytest.raises(InvalidDataError) as raised:
        read_every_sample(shd(root))
    assert f"Sample 1 of '{broken}'" in str(raised.value) and message in str(raised.value)


# --- DVS Gesture -----------------------------------------------------------------------------


def dvs_root(tmp_path: Path) -> Path:
    return write_dvs_gesture(
        tmp_path, num_train_users=1, num_test_users=1, lightings=("led",), num_events=30
    )


def dvs(root: Path) -> DVSGestureDataModule:
    return DVSGestureDataModule(data_dir=root, download=False, num_time_steps=10)


def test_dvs_gesture_pixel_outside_the_sensor_is_named(tmp_path: Path) -> None:
    root = dvs_root(tmp_path)
    broken = root / "DVSGesture" / "ibmGestureTest" / "user02_led" / "4.npy"
    events = np.load(broken)
    events[7, 0] = 128
    np.save(broken, events)
    with pytest.raises(InvalidDataError, match=re.escape(str(broken))):
        read_every_sample(dvs(root))
