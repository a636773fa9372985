"""bin_on_device: events counted into frames after the transfer give the frames the workers'
binning gives, on the tonic path and from a prepared copy of events."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.fabric.utilities import move_data_to_device

from exodus_lightning.data import NMNISTDataModule, SHDDataModule
from exodus_lightning.data.collate import pad_time_collate
from exodus_lightning.data.device_binning import (
    EventPositions,
    EventPositionsBatch,
    ToEventPositions,
)

SHD_SETTINGS = {"num_time_steps": 25, "bin_width_ms": 40.0, "num_channels": 50}
NMNIST_SETTINGS = {"num_time_steps": 10, "bin_width_ms": 30.0}


def served(datamodule, loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Batches as a model receives them (after Lightning's on_after_batch_transfer hook)."""
    return [datamodule.on_after_batch_transfer(batch, 0) for batch in loader]


def assert_same(expected, actual) -> None:
    assert len(expected) == len(actual) > 0
    for (inputs, targets), (binned_inputs, binned_targets) in zip(expected, actual):
        assert binned_inputs.dtype == torch.float32
        assert torch.equal(inputs, binned_inputs) and torch.equal(targets, binned_targets)


def audio_events(rng: np.random.Generator, count: int) -> np.ndarray:
    events = np.zeros(count, dtype=[("t", "<f8"), ("x", "<i8"), ("p", "<i8")])
    # Times past the 25 x 40 ms window and a channel past 700 are dropped by the binning.
    events["t"] = rng.uniform(0, 1.2e6, count)
    events["x"] = rng.integers(0, 701, count)
    return events


def test_a_batch_counted_on_the_device_equals_the_workers_frames() -> None:
    to_frames = SHDDataModule(data_dir="absent", **SHD_SETTINGS).to_frames
    rng = np.random.default_rng(0)
    samples = [audio_events(rng, count) for count in (500, 0, 1, 3000)]  # an empty one too
    to_positions = ToEventPositions(to_frames)
    batch, targets = pad_time_collate([(to_positions(events), 7) for events in samples])
    assert isinstance(batch, EventPositionsBatch) and targets.tolist() == [7] * 4
    assert batch.positions.dtype == torch.int32  # 4 bytes per event cross to the device
    assert batch.positions.numel() < sum(len(events) for events in samples)  # some dropped
    expected = torch.stack([torch.from_numpy(to_frames(events)) for events in samples])
    frames = batch.frames()
    assert frames.dtype == torch.float32 and frames.shape == (4, 25, 50)
    assert torch.equal(frames, expected)
    # One sample on its own, as np.asarray reads it.
    assert np.array_equal(np.asarray(to_positions(samples[3])), to_frames(samples[3]))
    assert isinstance(to_positions(samples[1]), EventPositions)


@pytest.mark.parametrize(("name", "num_workers"), [("shd", 0), ("shd", 2), ("nmnist", 0)])
def test_the_tonic_path_gives_the_same_batches(
    name: str, num_workers: int, request: pytest.FixtureRequest
) -> None:
    module, settings = {
        "shd": (SHDDataModule, SHD_SETTINGS), "nmnist": (NMNISTDataModule, NMNIST_SETTINGS)
    }[name]  # fmt: skip
    root = request.getfixturevalue(f"{name}_root")

    def make(bin_on_device: bool):
        datamodule = module(data_dir=root, download=False, batch_size=4, **settings,
                            num_workers=num_workers, bin_on_device=bin_on_device)  # fmt: skip
        datamodule.setup("fit")
        datamodule.setup("test")
        return datamodule

    in_workers, on_device = make(False), make(True)
    inputs, _ = next(iter(on_device.test_dataloader()))
    assert isinstance(inputs, EventPositionsBatch)  # what crosses from the workers
    for part in ("train", "val", "test"):
        assert_same(
            served(in_workers, getattr(in_workers, f"{part}_dataloader")()),
            served(on_device, getattr(on_device, f"{part}_dataloader")()),
        )


def test_a_prepared_copy_of_events_gives_the_same_batches(shd_root: Path, tmp_path: Path) -> None:
    pytest.importorskip("litdata")
    from exodus_lightning.data.prepare_copy import prepare_copy

    output = tmp_path / "events"
    prepare_copy(
        SHDDataModule(data_dir=shd_root, download=False, **SHD_SETTINGS), str(output),
        store="events", progress=False,
    )  # fmt: skip
    tonic_path = SHDDataModule(data_dir=shd_root, download=False, batch_size=4, **SHD_SETTINGS)
    streamed = SHDDataModule(data_dir=shd_root, download=False, batch_size=4, **SHD_SETTINGS,
                             streaming=output, bin_on_device=True)  # fmt: skip
    for datamodule in (tonic_path, streamed):
        datamodule.setup("test")
    assert_same(
        served(tonic_path, tonic_path.test_dataloader()),
        served(streamed, streamed.test_dataloader()),
    )


def test_bin_on_device_with_frames_binned_before_says_it_has_no_effect(
    shd_root: Path, tmp_path: Path, recwarn: pytest.WarningsRecorder
) -> None:
    """Frames from the disk cache are binned before it: the option would do nothing, silently
    (every shipped dataset config sets a cache); with an augmentation the training split bins
    per access, so it takes effect there and nothing is said."""
    cached = SHDDataModule(data_dir=shd_root, download=False, batch_size=4, **SHD_SETTINGS,
                           cache_dir=tmp_path / "cache", bin_on_device=True)  # fmt: skip
    with pytest.warns(UserWarning, match=r"bin_on_device=True has no effect: the frames come "
                                         r"binned from the disk cache"):
        cached.setup("fit")
    cached.setup("test")  # once per DataModule
    augmented = SHDDataModule(data_dir=shd_root, download=False, batch_size=4, **SHD_SETTINGS,
                              cache_dir=tmp_path / "cache", bin_on_device=True,
                              augmentations=["time_jitter"])  # fmt: skip
    augmented.setup("fit")
    assert not [w for w in recwarn if "bin_on_device" in str(w.message)]


def test_lightning_hands_the_model_float32_frames(shd_root: Path, tmp_path: Path) -> None:
    import lightning as L

    from tests.data.test_event_datamodules import _TinyClassifier

    class Recorder(_TinyClassifier):
        def training_step(self, batch, batch_index):
            self.seen.append((batch[0].dtype, tuple(batch[0].shape)))
            return super().training_step(batch, batch_index)

    datamodule = SHDDataModule(data_dir=shd_root, download=False, batch_size=4, **SHD_SETTINGS,
                               bin_on_device=True)  # fmt: skip
    model = Recorder(int(np.prod(datamodule.input_shape)), datamodule.num_classes)
    model.seen = []
    trainer = L.Trainer(
        fast_dev_run=2, accelerator="cpu", logger=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(model, datamodule=datamodule)
    # 2 training batches, then the 4 validation samples (validation_step calls training_step).
    assert model.seen == [(torch.float32, (4, 25, 50))] * 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinning needs a GPU")
def test_a_batch_of_positions_is_pinned_and_counted_on_the_gpu() -> None:
    batch = EventPositionsBatch(torch.tensor([0, 3, 3, 7], dtype=torch.int32), (2, 2, 2))
    pinned = batch.pin_memory()
    assert pinned.positions.is_pinned() and pinned.shape == batch.shape
    moved = move_data_to_device(pinned, "cuda")  # as Lightning moves a training batch
    assert moved.positions.is_cuda and moved.shape == batch.shape
    assert torch.equal(moved.frames().cpu(), batch.frames())
    assert batch.frames().flatten().tolist() == [1, 0, 0, 2, 0, 0, 0, 1]


def test_lightning_moves_the_batch_with_its_own_to(monkeypatch) -> None:
    """Lightning calls the batch's to() (one way of moving it, shared with the GPU benchmark)."""
    batch = EventPositionsBatch(torch.tensor([0, 3, 3, 7], dtype=torch.int32), (2, 2, 2))
    calls = []
    original = EventPositionsBatch.to

    def recording(self, device):
        calls.append(torch.device(device))
        return original(self, device)

    monkeypatch.setattr(EventPositionsBatch, "to", recording)
    moved = move_data_to_device(batch, torch.device("cpu"))
    assert calls == [torch.device("cpu")] and isinstance(moved, EventPositionsBatch)
    assert torch.equal(moved.frames(), batch.frames()) and moved.shape == batch.shape


def test_device_binning_imports_without_tonic_or_lightning():
    """The GPU benchmark times it on a bare GPU machine (no tonic, no Lightning)."""
    code = ("import sys, exodus_lightning.data.device_binning; "
            "print(sorted({'tonic', 'lightning'} & set(sys.modules)))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    assert proc.stdout.strip() == "[]"
