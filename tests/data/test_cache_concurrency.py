"""The disk cache under failed writes and under several processes sharing one cold folder."""

from __future__ import annotations

import multiprocessing as mp
import queue
import time
from multiprocessing.synchronize import Barrier
from pathlib import Path

import numpy as np
import pytest
from tonic.cached_dataset import load_from_disk_cache

from exodus_lightning.data.cache import AtomicDiskCachedDataset, disk_cached

EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", np.int8)])
NUM_SAMPLES = 8
NUM_PROCESSES = 4


class SlowEvents:
    """Deterministic event arrays whose computation takes long enough for processes to overlap.

    Module level so that children started with "spawn" can unpickle it.
    """

    def __init__(self, num_samples: int = NUM_SAMPLES, delay_s: float = 0.02) -> None:
        self.num_samples = num_samples
        self.delay_s = delay_s

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        time.sleep(self.delay_s)
        rng = np.random.default_rng(index)
        # Large enough that writing a file takes a while, so a reader can catch it half-done.
        events = np.zeros(5000 + 100 * index, dtype=EVENT_DTYPE)
        for field in ("x", "y", "p"):
            events[field] = rng.integers(0, 34 if field != "p" else 2, len(events))
        events["t"] = np.sort(rng.integers(0, 10**6, len(events)))
        return events, index % 3


class Unsaveable:
    """One sample whose second data piece HDF5 cannot store: the write fails after it began."""

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> tuple[tuple[np.ndarray, object], int]:
        return (np.arange(1000), object()), 0


def leftovers(folder: Path) -> list[str]:
    """Names in `folder` other than complete cache files."""
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".hdf5"))


def assert_same_sample(got: tuple, expected: tuple) -> None:
    assert got[0].dtype == expected[0].dtype
    np.testing.assert_array_equal(got[0], expected[0])
    assert int(got[1]) == expected[1]


def test_failed_write_leaves_no_files(tmp_path: Path) -> None:
    # tonic alone fails this: its in-place write leaves a partial 0_0.hdf5 that later reads trust.
    cached = disk_cached(Unsaveable(), tmp_path)
    with pytest.raises(TypeError):
        cached[0]
    assert list(tmp_path.iterdir()) == []


def test_failed_rename_removes_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(src: str, dst: str) -> None:
        assert Path(src).exists()
        raise OSError("disk full")

    monkeypatch.setattr("exodus_lightning.data.cache.os.replace", refuse)
    cached = disk_cached(SlowEvents(delay_s=0), tmp_path)
    with pytest.raises(OSError, match="disk full"):
        cached[0]
    assert list(tmp_path.iterdir()) == []


def test_no_file_at_final_path_while_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import exodus_lightning.data.cache as cache

    seen_during_write: list[bool] = []
    real_save = cache.save_to_disk_cache

    def save_and_look(*args: object, **kwargs: object) -> None:
        real_save(*args, **kwargs)
        seen_during_write.append((tmp_path / "3_0.hdf5").exists())

    monkeypatch.setattr(cache, "save_to_disk_cache", save_and_look)
    dataset = SlowEvents(delay_s=0)
    assert_same_sample(disk_cached(dataset, tmp_path)[3], dataset[3])
    assert seen_during_write == [False]
    assert [p.name for p in tmp_path.iterdir()] == ["3_0.hdf5"]


def test_corrupt_file_is_recomputed(tmp_path: Path) -> None:
    (tmp_path / "2_0.hdf5").write_bytes(b"\x89HDF\r\n\x1a\n truncated")
    dataset = SlowEvents(delay_s=0)
    assert_same_sample(disk_cached(dataset, tmp_path)[2], dataset[2])
    assert_same_sample(load_from_disk_cache(tmp_path / "2_0.hdf5"), dataset[2])


def test_transforms_run_after_cache_on_every_access(tmp_path: Path) -> None:
    calls: list[int] = []

    def count(events: np.ndarray) -> int:
        calls.append(1)
        return len(events)

    dataset = SlowEvents(delay_s=0)
    cached = disk_cached(dataset, tmp_path, count)
    assert cached[1][0] == cached[1][0] == len(dataset[1][0])
    assert len(calls) == 2
    assert len(cached) == NUM_SAMPLES


def read_all(folder: str, barrier: Barrier, results: mp.Queue) -> None:
    """Child process: read every index of the shared cache once all children are ready."""
    cached = disk_cached(SlowEvents(), Path(folder))
    barrier.wait(timeout=60)
    results.put([cached[i] for i in range(len(cached))])


def test_processes_sharing_a_cold_cache(tmp_path: Path) -> None:
    # fork starts in milliseconds (as DataLoader workers do on Linux); spawn re-imports Lightning in
    # every child, seconds each. The children touch only numpy and h5py, which are fork-safe.
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    barrier = ctx.Barrier(NUM_PROCESSES)
    results = ctx.Queue()
    processes = [
        ctx.Process(target=read_all, args=(str(tmp_path), barrier, results))
        for _ in range(NUM_PROCESSES)
    ]
    for process in processes:
        process.start()
    # Drain the queue before joining (a child blocks on exit until its data is consumed), and stop
    # waiting as soon as every child is gone, so a crashed child fails the test quickly.
    outputs: list[list[tuple]] = []
    deadline = time.monotonic() + 60
    while len(outputs) < NUM_PROCESSES and time.monotonic() < deadline:
        try:
            outputs.append(results.get(timeout=0.5))
        except queue.Empty:
            if not any(process.is_alive() for process in processes) and results.empty():
                break
    for process in processes:
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
    assert [process.exitcode for process in processes] == [0] * NUM_PROCESSES

    dataset = SlowEvents(delay_s=0)
    for samples in outputs:
        assert len(samples) == NUM_SAMPLES
        for index, sample in enumerate(samples):
            assert_same_sample(sample, dataset[index])
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(f"{i}_0.hdf5" for i in range(NUM_SAMPLES))
    assert leftovers(tmp_path) == []
    reread = AtomicDiskCachedDataset(dataset=None, cache_path=str(tmp_path))
    assert len(reread) == NUM_SAMPLES
    for index in range(NUM_SAMPLES):
        assert_same_sample(reread[index], dataset[index])
