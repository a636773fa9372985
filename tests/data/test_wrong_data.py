"""Files that are present but wrong: each fails naming the file and what is wrong (issue 17).

Every case is a tiny file in the dataset's exact format with one thing broken; before these
checks each was read silently wrong (events or samples dropped) or failed without a path.
"""

from __future__ import annotations

import builtins
import errno
import json
import os
import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from exodus_lightning.data import (
    DatasetNotFoundError,
    DVSGestureDataModule,
    EventDataModule,
    InvalidDataError,
    NMNISTDataModule,
    SHDDataModule,
    SSCDataModule,
    UnreadableFileError,
)
from exodus_lightning.data.fabricate import (
    encode_nmnist_events,
    write_dvs_gesture,
    write_heidelberg_h5,
    write_nmnist,
    write_shd,
    write_ssc,
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
    return write_shd(tmp_path, num_train=20, num_test=20, spikes_per_sample=20)


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


@pytest.mark.parametrize("stray", [("samples",), ("3", "copy2")])
def test_stray_folder_among_the_nmnist_digits_is_named(
    stray: tuple[str, ...], tmp_path: Path
) -> None:
    """`samples/` made tonic fail on int('s') with no path; `3/copy2/` became digit 2."""
    root = nmnist_root(tmp_path)
    folder = root.joinpath("NMNIST", "Train", *stray)
    folder.mkdir(parents=True)
    shutil.copy(first_nmnist_file(root), folder / "00000.bin")
    with pytest.raises(InvalidDataError) as raised:
        nmnist(root).setup("fit")
    message = str(raised.value)
    assert f"'{folder}' holds .bin files but is not one of the digit folders 0-9" in message


def test_folders_without_recordings_among_the_digits_are_ignored(tmp_path: Path) -> None:
    root = nmnist_root(tmp_path)
    (root / "NMNIST" / "Train" / ".ipynb_checkpoints").mkdir()
    (root / "NMNIST" / "Train" / "README.txt").write_text("N-MNIST")
    module = nmnist(root)
    module.setup("fit")
    assert len(module.train_dataset) + len(module.val_dataset) == 10


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


def test_shd_file_with_fewer_labels_than_samples_fails_at_setup(tmp_path: Path) -> None:
    """tonic's length is the number of labels: the dataset shrank without a word."""
    root = shd_root(tmp_path)
    broken = root / "SHD" / "shd_test.h5"
    with h5py.File(broken, "r+") as file:
        labels = file["labels"][()]
        del file["labels"]
        file.create_dataset("labels", data=labels[:4])
    with pytest.raises(InvalidDataError) as raised:
        shd(root).setup("test")
    message = str(raised.value)
    assert f"'{broken}' holds spike times for 20 samples" in message
    assert "labels for 4" in message


def test_shd_label_beyond_its_20_classes_fails_at_setup(tmp_path: Path) -> None:
    """Label 57 used to surface as an IndexError in the loss, far from any file."""
    root = shd_root(tmp_path)
    broken = root / "SHD" / "shd_train.h5"
    with h5py.File(broken, "r+") as file:
        file["labels"][3] = 57
    with pytest.raises(InvalidDataError) as raised:
        shd(root).setup("fit")
    message = str(raised.value)
    assert f"'{broken}' gives sample 3 the label 57, but SHD has 20 classes" in message


# --- DVS Gesture -----------------------------------------------------------------------------


def dvs_root(tmp_path: Path) -> Path:
    return write_dvs_gesture(
        tmp_path, num_train_users=1, num_test_users=1, lightings=("led",), num_events=30
    )


def dvs(root: Path) -> DVSGestureDataModule:
    return DVSGestureDataModule(data_dir=root, download=False, num_time_steps=10)


def test_dvs_gesture_label_beyond_its_11_classes_fails_at_setup(tmp_path: Path) -> None:
    root = dvs_root(tmp_path)
    folder = root / "DVSGesture" / "ibmGestureTest" / "user02_led"
    (folder / "10.npy").rename(folder / "57.npy")
    with pytest.raises(InvalidDataError) as raised:
        dvs(root).setup("test")
    assert f"'{folder / '57.npy'}' has the label 57, but DVSGesture has 11 classes" in str(
        raised.value
    )


def add_to_dvs_test_split(root: Path, place: tuple[str, ...]) -> Path:
    """A copy of a recording at `place` (a path below ibmGestureTest; a folder where it ends
    in "/"); the path named."""
    split = root / "DVSGesture" / "ibmGestureTest"
    path = split.joinpath(*place)
    if place[-1].endswith("/"):
        path.mkdir(parents=True)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(split / "user02_led" / "3.npy", path)
    return path


def tonic_dvs_gesture_test_files(root: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The recordings tonic's own DVSGesture lists (its download check left out)."""
    import tonic

    monkeypatch.setattr(tonic.datasets.DVSGesture, "_check_exists", lambda self: True)
    return sorted(tonic.datasets.DVSGesture(str(root), train=False).data)


@pytest.mark.parametrize(("place", "named", "tonic_reads"), [
    (("backup/",), ("backup",), "fails"),  # tonic: not enough values to unpack, no path named
    (("samples", "3.npy"), ("samples",), "fails"),
    (("user02_led", "backup", "3.npy"), ("user02_led", "backup"), "one more recording"),
    (("user02_led", "3_copy.npy"), ("user02_led", "3_copy.npy"), "fails"),  # int('3_copy')
])  # fmt: skip
def test_dvs_gesture_stray_folder_or_file_is_named(
    place: tuple[str, ...], named: tuple[str, ...], tonic_reads: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch
) -> None:  # fmt: skip
    root = dvs_root(tmp_path)
    clean = tonic_dvs_gesture_test_files(root, monkeypatch)
    stray = add_to_dvs_test_split(root, place)
    if tonic_reads == "fails":
        with pytest.raises(ValueError):
            tonic_dvs_gesture_test_files(root, monkeypatch)
    else:  # silently: the copy becomes a sample of its own
        assert tonic_dvs_gesture_test_files(root, monkeypatch) == sorted([*clean, str(stray)])
    with pytest.raises(InvalidDataError) as raised:
        dvs(root).setup("test")
    message = str(raised.value)
    assert f"'{root.joinpath('DVSGesture', 'ibmGestureTest', *named)}'" in message
    assert "userNN_<lighting>" in message and "move" in message


@pytest.mark.parametrize("place", [
    ("3.npy",), ("README.txt",), ("user02_led", "notes.txt"), ("user02_led", "notes", "todo.txt"),
    ("user02_led", "empty/"),
])  # fmt: skip
def test_dvs_gesture_files_tonic_ignores_are_ignored(
    place: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = dvs_root(tmp_path)
    clean = tonic_dvs_gesture_test_files(root, monkeypatch)
    split = root / "DVSGesture" / "ibmGestureTest"
    path = split.joinpath(*place)
    if place[-1].endswith("/") or place[-1].endswith(".txt"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir() if place[-1].endswith("/") else path.write_text("notes")
    else:
        add_to_dvs_test_split(root, place)
    assert tonic_dvs_gesture_test_files(root, monkeypatch) == clean
    module = dvs(root)
    module.setup("test")
    assert sorted(module.test_dataset.sample_files) == clean


def test_dvs_gesture_user_folder_without_read_permission_is_named(tmp_path: Path) -> None:
    """tonic's listing skips a folder it may not read; here it fails. With real permissions:
    skipped as root (see test_without_read_permission_says_permission_denied)."""
    root = dvs_gesture_two_users(tmp_path)
    locked = root / "DVSGesture" / "ibmGestureTest" / "user03_led"
    locked.chmod(0)
    try:
        try:
            os.listdir(locked)
        except PermissionError:
            pass
        else:
            pytest.skip("this process reads what it has no permission to read (root)")
        with pytest.raises(UnreadableFileError) as raised:
            dvs(root).setup("test")
    finally:
        locked.chmod(0o755)
    assert_permission_message(raised.value, locked)


def dvs_gesture_two_users(tmp_path: Path) -> Path:
    """Two test users: without one of them, every gesture is still there."""
    return write_dvs_gesture(
        tmp_path, num_train_users=1, num_test_users=2, lightings=("led",), num_events=30
    )


def test_dvs_gesture_pixel_outside_the_sensor_is_named(tmp_path: Path) -> None:
    root = dvs_root(tmp_path)
    broken = root / "DVSGesture" / "ibmGestureTest" / "user02_led" / "4.npy"
    events = np.load(broken)
    events[7, 0] = 128
    np.save(broken, events)
    with pytest.raises(InvalidDataError, match=re.escape(str(broken))):
        read_every_sample(dvs(root))


# --- Whole classes missing (an extraction or copy that stopped midway) -----------------------


def assert_missing_classes_message(error: BaseException, missing: list[int], where: Path,
                                   name: str) -> None:  # fmt: skip
    message = str(error)
    assert f"'{where}' holds no samples of {len(missing)} of {name}'s" in message
    assert f": {missing}; " in message
    assert "download=true" in message and "Expected layout under data_dir" in message


@pytest.mark.parametrize(("split", "folder", "digit"), [("test", "Test", 7), ("fit", "Train", 0)])
def test_nmnist_split_without_a_digit_folder_is_refused(
    split: str, folder: str, digit: int, tmp_path: Path
) -> None:
    root = nmnist_root(tmp_path)
    shutil.rmtree(root / "NMNIST" / folder / str(digit))
    with pytest.raises(DatasetNotFoundError) as raised:
        nmnist(root).setup(split)
    assert_missing_classes_message(raised.value, [digit], root / "NMNIST" / folder, "NMNIST")


def test_nmnist_digit_folder_without_recordings_is_refused(tmp_path: Path) -> None:
    root = nmnist_root(tmp_path)
    for digit in (2, 9):
        for recording in (root / "NMNIST" / "Test" / str(digit)).glob("*.bin"):
            recording.unlink()
    with pytest.raises(DatasetNotFoundError) as raised:
        nmnist(root).setup("test")
    assert_missing_classes_message(raised.value, [2, 9], root / "NMNIST" / "Test", "NMNIST")


def test_dvs_gesture_split_without_a_gesture_is_refused(tmp_path: Path) -> None:
    root = dvs_root(tmp_path)
    (root / "DVSGesture" / "ibmGestureTest" / "user02_led" / "3.npy").unlink()
    with pytest.raises(DatasetNotFoundError) as raised:
        dvs(root).setup("test")
    folder = root / "DVSGesture" / "ibmGestureTest"
    assert_missing_classes_message(raised.value, [3], folder, "DVSGesture")


@pytest.mark.parametrize("module_class", [SHDDataModule, SSCDataModule])
def test_heidelberg_file_without_some_labels_is_refused(module_class, tmp_path: Path) -> None:
    name = module_class.dataset_name
    if module_class is SHDDataModule:
        write_shd(tmp_path, num_train=20, num_test=20, spikes_per_sample=20)
    else:
        write_ssc(tmp_path, num_train=35, num_valid=35, num_test=35, spikes_per_sample=20)
    broken = tmp_path / name / f"{name.lower()}_test.h5"
    with h5py.File(broken, "r+") as file:
        labels = file["labels"][()]
        labels[np.isin(labels, [4, 11])] = 0
        file["labels"][...] = labels
    module = module_class(data_dir=tmp_path, download=False, num_time_steps=10, bin_width_ms=100)
    with pytest.raises(DatasetNotFoundError) as raised:
        module.setup("test")
    assert_missing_classes_message(raised.value, [4, 11], broken, name)


def test_fabricated_heidelberg_file_holds_every_class(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="num_samples=19 is fewer than num_classes=20"):
        write_heidelberg_h5(tmp_path / "shd_test.h5", 19, 20)
    path = write_heidelberg_h5(tmp_path / "shd_test.h5", 20, 20, spikes_per_sample=5)
    with h5py.File(path) as file:
        assert sorted(file["labels"][()].tolist()) == list(range(20))


# --- Permissions -----------------------------------------------------------------------------


def refuse_to_open(monkeypatch: pytest.MonkeyPatch, module, name: str, locked: Path) -> None:
    """Make `module.name` (an open function) fail for `locked` as the OS does for a file this
    user may not read; the tests run as root, whom the OS never refuses."""
    real_open = getattr(module, name)

    def guarded(file, *args, **kwargs):
        if Path(file) == locked:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(module, name, guarded)


def assert_permission_message(error: BaseException, path: Path) -> None:
    message = str(error)
    assert "Permission denied reading " in message and str(path) in message
    assert "corrupt" not in message and "download" not in message


def test_unreadable_nmnist_file_says_permission_denied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = nmnist_root(tmp_path)
    locked = first_nmnist_file(root)
    refuse_to_open(monkeypatch, builtins, "open", locked)
    with pytest.raises(UnreadableFileError) as raised:
        read_every_sample(nmnist(root))
    assert_permission_message(raised.value, locked)


def test_unreadable_shd_file_says_permission_denied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = shd_root(tmp_path)
    locked = root / "SHD" / "shd_test.h5"
    refuse_to_open(monkeypatch, h5py, "File", locked)
    with pytest.raises(UnreadableFileError) as raised:
        shd(root).setup("test")
    assert_permission_message(raised.value, locked)


@pytest.mark.parametrize("what", ["file", "digit folder"])
def test_without_read_permission_says_permission_denied(what: str, tmp_path: Path) -> None:
    """With real permissions: skipped where they do not apply (root keeps reading), e.g. run
    `setpriv --bounding-set=-all pytest ...` as root to take that power away."""
    root = nmnist_root(tmp_path)
    locked = first_nmnist_file(root) if what == "file" else root / "NMNIST" / "Train" / "3"
    locked.chmod(0)
    try:
        try:
            os.listdir(locked) if locked.is_dir() else locked.open("rb").close()
        except PermissionError:
            pass
        else:
            pytest.skip("this process reads what it has no permission to read (root)")
        with pytest.raises(UnreadableFileError) as raised:
            module = nmnist(root)
            module.setup("fit")
            module.setup("test")
            read_every_sample(module)
    finally:
        locked.chmod(0o755)
    assert_permission_message(raised.value, locked)


# --- Disk cache ------------------------------------------------------------------------------


def test_cache_file_without_its_data_entry_is_named(tmp_path: Path) -> None:
    root = shd_root(tmp_path / "data")
    settings = {"data_dir": root, "download": False, "cache_dir": tmp_path / "cache"}
    SHDDataModule(**settings).make_dataset("test")[0]  # writes the cache file of sample 0
    (cache_file,) = (tmp_path / "cache").rglob("0_0.hdf5")
    with h5py.File(cache_file, "w") as file:
        file.create_dataset("target/0", data=3)
    with pytest.raises(UnreadableFileError) as raised:
        SHDDataModule(**settings).make_dataset("test")[0]
    message = str(raised.value)
    assert f"Cache file '{cache_file}'" in message and "'data'" in message
    assert "Delete it" in message


def fill_cache(root: Path, cache: Path, num_samples: int) -> list:
    """The first `num_samples` test samples of SHD read through a cache in `cache`, which they
    fill."""
    samples = SHDDataModule(data_dir=root, download=False, cache_dir=cache).make_dataset("test")
    return [samples[index] for index in range(num_samples)]


def assert_same_samples(actual: list, expected: list) -> None:
    assert len(actual) == len(expected)
    for (frames, label), (expected_frames, expected_label) in zip(actual, expected):
        np.testing.assert_array_equal(frames, expected_frames)
        assert frames.dtype == expected_frames.dtype and int(label) == int(expected_label)


def test_a_filled_cache_this_user_may_not_write_is_read(tmp_path: Path) -> None:
    """With real permissions (a cache filled by another user, files 644 in folders 755):
    skipped where they do not apply (root writes anyway), e.g. run `setpriv
    --bounding-set=-all pytest ...` as root to take that power away."""
    root, cache = shd_root(tmp_path / "data"), tmp_path / "cache"
    expected = fill_cache(root, cache, 20)
    (folder,) = (cache / "SHD").iterdir()
    for path in (folder, *folder.iterdir()):
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        try:
            (folder / "probe").write_text("")
        except PermissionError:
            pass
        else:
            pytest.skip("this process writes where it has no permission to write (root)")
        assert_same_samples(fill_cache(root, cache, 20), expected)
    finally:
        folder.chmod(0o755)


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS])
def test_a_cache_folder_that_cannot_be_written_serves_its_samples(
    code: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import exodus_lightning.data.cache as cache_module

    root, cache = shd_root(tmp_path / "data"), tmp_path / "cache"
    uncached = fill_cache(root, None, 20)
    filled = fill_cache(root, cache, 10)  # samples 0-9 are in the cache, 10-19 are not
    (folder,) = (cache / "SHD").iterdir()
    files = sorted(folder.iterdir())

    # Every write in the cache fails as the OS fails it for a folder this user may only read
    # (permission denied) or on a read-only mount; the tests run as root, whom permissions
    # never stop.
    def refuse(path: Path | str) -> None:
        if Path(path).is_relative_to(cache):
            exception = PermissionError if code == errno.EACCES else OSError
            raise exception(code, os.strerror(code), str(path))

    real_write_text, real_save = Path.write_text, cache_module.save_to_disk_cache

    def write_text(path: Path, *args, **kwargs):
        refuse(path)
        return real_write_text(path, *args, **kwargs)

    def save(data, targets, file_path, **kwargs) -> None:
        refuse(file_path)
        real_save(data, targets, file_path=file_path, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)
    monkeypatch.setattr(cache_module, "save_to_disk_cache", save)
    samples = SHDDataModule(data_dir=root, download=False, cache_dir=cache).make_dataset("test")
    assert_same_samples([samples[index] for index in range(10)], filled)
    # Those it lacks are computed on every access, as without a cache: one warning says so.
    with pytest.warns(UserWarning, match="cannot be written") as warned:
        assert_same_samples([samples[index] for index in range(10, 20)], uncached[10:])
    assert len(warned) == 1
    message = str(warned[0].message)
    assert str(folder) in message and "--data.init_args.cache_dir" in message
    assert sorted(folder.iterdir()) == files  # nothing written, nothing left behind


def test_the_cache_record_is_written_when_missing_or_different(tmp_path: Path) -> None:
    root, cache = shd_root(tmp_path / "data"), tmp_path / "cache"
    fill_cache(root, cache, 1)
    (record,) = (cache / "SHD").rglob("cache_key.json")
    text = record.read_text()
    assert json.loads(text)["dataset"] == "SHD"
    record.write_text("{}")
    fill_cache(root, cache, 1)
    assert record.read_text() == text
    record.unlink()
    fill_cache(root, cache, 1)
    assert record.read_text() == text
