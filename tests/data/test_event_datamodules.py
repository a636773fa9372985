"""NMNIST, DVS Gesture, SHD and SSC DataModules on tiny files in tonic's on-disk formats."""

from __future__ import annotations

import pickle
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import Subset

from exodus_lightning.data import (
    DVSGestureDataModule,
    EventDataModule,
    NMNISTDataModule,
    SHDDataModule,
    SSCDataModule,
)
from exodus_lightning.data.fabricate import (
    encode_nmnist_events,
    write_dvs_gesture,
    write_nmnist,
    write_shd,
    write_ssc,
)


@dataclass
class Case:
    module: type[EventDataModule]
    root_fixture: str
    num_train_file: int  # samples in the official training file(s)
    num_val: int
    num_test: int
    input_shape: tuple[int, ...]
    num_classes: int
    settings: dict = field(default_factory=dict)


CASES = {
    "nmnist": Case(NMNISTDataModule, "nmnist_root", 30, 3, 10, (2, 34, 34), 10,
                   {"num_time_steps": 10, "bin_width_ms": 30.0}),
    "dvs_gesture": Case(DVSGestureDataModule, "dvs_gesture_root", 44, 4, 22, (2, 16, 16), 11,
                        {"num_time_steps": 15, "bin_width_ms": 100.0, "downsample_factor": 8}),
    "shd": Case(SHDDataModule, "shd_root", 40, 4, 20, (50,), 20,
                {"num_time_steps": 25, "bin_width_ms": 40.0, "num_channels": 50}),
    "ssc": Case(SSCDataModule, "ssc_root", 70, 35, 35, (100,), 35,
                {"num_time_steps": 20, "duration_ms": 1000.0, "val_fraction": None}),
}  # fmt: skip


def make(case: Case, root: Path, **overrides) -> EventDataModule:
    arguments = {"data_dir": root, "download": False, "batch_size": 4, **case.settings}
    return case.module(**{**arguments, **overrides})


@pytest.fixture(params=list(CASES))
def case_and_root(request: pytest.FixtureRequest) -> tuple[Case, Path]:
    case = CASES[request.param]
    return case, request.getfixturevalue(case.root_fixture)


def test_model_facing_attributes_exist_before_setup_and_without_data(
    case_and_root: tuple[Case, Path], tmp_path: Path
) -> None:
    case, _ = case_and_root
    module = make(case, tmp_path / "nothing-here")
    assert module.num_classes == case.num_classes
    assert module.input_shape == case.input_shape
    assert module.num_time_steps == case.settings["num_time_steps"]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_batches_have_shape_dtype_and_valid_labels(
    case_and_root: tuple[Case, Path], num_workers: int
) -> None:
    case, root = case_and_root
    module = make(case, root, num_workers=num_workers)
    module.setup("fit")
    module.setup("test")
    assert len(module.train_dataset) == case.num_train_file - (
        0 if case.module is SSCDataModule else case.num_val
    )
    assert len(module.val_dataset) == case.num_val
    assert len(module.test_dataset) == case.num_test
    loaders = {
        "train": module.train_dataloader(),
        "val": module.val_dataloader(),
        "test": module.test_dataloader(),
    }
    for name, loader in loaders.items():
        seen = 0
        for inputs, targets in loader:
            assert inputs.dtype == torch.float32 and targets.dtype == torch.int64
            assert inputs.shape == (len(targets), module.num_time_steps, *module.input_shape)
            assert targets.min() >= 0 and targets.max() < module.num_classes
            assert inputs.min() >= 0 and inputs.sum() > 0
            seen += len(targets)
        assert seen == len(getattr(module, f"{name}_dataset"))


def test_labels_follow_the_files(case_and_root: tuple[Case, Path]) -> None:
    case, root = case_and_root
    test_set = make(case, root).make_dataset("test")
    labels = [test_set[i][1] for i in range(len(test_set))]
    if case.module is NMNISTDataModule:
        files = sorted((root / "NMNIST" / "Test").glob("*/*.bin"))
        expected = [int(path.parent.name) for path in files]
    elif case.module is DVSGestureDataModule:
        files = sorted((root / "DVSGesture" / "ibmGestureTest").glob("*/*.npy"))
        expected = [int(path.stem) for path in files]
    else:
        name = case.module.dataset_name
        with h5py.File(root / name / f"{name.lower()}_test.h5") as file:
            expected = file["labels"][()].tolist()
    assert labels == expected


def test_nmnist_frames_count_every_event_in_the_window(nmnist_root: Path) -> None:
    # Fabricated recordings last 300 ms; the default 100 bins of 3.5 ms cover them entirely.
    test_set = NMNISTDataModule(data_dir=nmnist_root, download=False).make_dataset("test")
    files = sorted((nmnist_root / "NMNIST" / "Test").glob("*/*.bin"))
    for index in (0, len(files) - 1):
        frames, _ = test_set[index]
        assert frames.shape == (100, 2, 34, 34)
        assert frames.sum() == files[index].stat().st_size // 5


def test_nmnist_defaults_cover_recordings_longer_than_300_ms(tmp_path: Path) -> None:
    # One of tonic's own N-MNIST test recordings runs to 311 ms; 100 bins of 3 ms would drop
    # its last events. Here: events spread over 0 .. 340 ms, the last one at 340 ms exactly.
    times = np.linspace(0, 340_000, 500).astype(np.int64)
    coordinates = np.arange(500) % 34
    # Every digit has a recording (a split lacking one is refused); digit 7's is this one.
    write_nmnist(tmp_path, num_train_per_class=1, num_test_per_class=1, num_events=10)
    (tmp_path / "NMNIST" / "Test" / "7" / "00000.bin").write_bytes(
        encode_nmnist_events(coordinates, coordinates, times, np.arange(500) % 2)
    )
    module = NMNISTDataModule(data_dir=tmp_path, download=False)
    frames, label = module.make_dataset("test")[7]
    assert label == 7 and frames.shape == (100, 2, 34, 34)
    assert frames.sum() == 500
    assert module.num_time_steps * module.bin_width_us > 340_000


def test_shd_frames_count_the_spikes_before_the_window_end(shd_root: Path) -> None:
    module = SHDDataModule(data_dir=shd_root, download=False, num_time_steps=50, bin_width_ms=10)
    test_set = module.make_dataset("test")
    with h5py.File(shd_root / "SHD" / "shd_test.h5") as file:
        times_s = file["spikes/times"][3].astype(np.float64)
    frames, _ = test_set[3]
    assert frames.sum() == np.count_nonzero(times_s * 1e6 < 500_000)


@pytest.mark.parametrize("name", ["nmnist", "dvs_gesture", "shd"])
def test_split_is_seeded_disjoint_and_complete(name: str, request: pytest.FixtureRequest) -> None:
    case = CASES[name]
    root = request.getfixturevalue(case.root_fixture)
    splits = {}
    for seed in (0, 0, 1):
        module = make(case, root, seed=seed)
        module.setup("fit")
        assert isinstance(module.train_dataset, Subset)
        train, val = module.train_dataset.indices, module.val_dataset.indices
        assert sorted(train + val) == list(range(case.num_train_file))
        splits.setdefault(seed, []).append((train, val))
    assert splits[0][0] == splits[0][1]
    assert splits[0][0] != splits[1][0]


def test_ssc_uses_the_official_validation_file_unless_asked_otherwise(ssc_root: Path) -> None:
    official = SSCDataModule(data_dir=ssc_root, download=False)
    official.setup("fit")
    with h5py.File(ssc_root / "SSC" / "ssc_valid.h5") as file:
        valid_labels = file["labels"][()].tolist()
    assert [official.val_dataset[i][1] for i in range(35)] == valid_labels
    assert len(official.train_dataset) == 70
    fraction = SSCDataModule(data_dir=ssc_root, download=False, val_fraction=0.2)
    fraction.setup("fit")
    assert (len(fraction.train_dataset), len(fraction.val_dataset)) == (56, 14)


def test_train_order_is_reproducible_for_a_seed(shd_root: Path) -> None:
    def first_batch(seed: int) -> torch.Tensor:
        module = SHDDataModule(data_dir=shd_root, download=False, batch_size=8, seed=seed)
        module.setup("fit")
        return next(iter(module.train_dataloader()))[1]

    assert torch.equal(first_batch(3), first_batch(3))
    assert not torch.equal(first_batch(3), first_batch(4))


def test_samples_are_read_from_disk_when_accessed(tmp_path: Path) -> None:
    root = write_nmnist(tmp_path, num_train_per_class=1, num_test_per_class=1)
    module = NMNISTDataModule(data_dir=root, download=False, num_time_steps=10)
    module.setup("test")
    assert module.test_dataset[0][0].sum() > 0
    first_file = sorted((root / "NMNIST" / "Test").glob("*/*.bin"))[0]
    # Another recording under the same name, of three events.
    first_file.write_bytes(encode_nmnist_events([1, 2, 3], [4, 5, 6], [10, 20, 30], [0, 1, 1]))
    assert module.test_dataset[0][0].sum() == 3


# Tiny copies of each dataset, written again into the same folder with another seed.
WRITERS = {
    "nmnist": lambda root, seed: write_nmnist(root, 1, 1, num_events=50, seed=seed),
    "dvs_gesture": lambda root, seed: write_dvs_gesture(root, 1, 1, ("led",), 100, seed=seed),
    "shd": lambda root, seed: write_shd(root, 20, 20, spikes_per_sample=50, seed=seed),
    "ssc": lambda root, seed: write_ssc(root, 35, 35, 35, spikes_per_sample=20, seed=seed),
}


@pytest.mark.parametrize("name", list(WRITERS))
def test_cache_is_reused_and_changed_files_or_settings_get_a_fresh_cache(
    name: str, tmp_path: Path
) -> None:
    case = CASES[name]

    def test_frames(cache: bool, **settings) -> list[np.ndarray]:
        module = make(case, tmp_path / "data", cache_dir=tmp_path / "cache" if cache else None,
                      **settings)
        module.setup("test")
        return [np.asarray(module.test_dataset[i][0]) for i in range(len(module.test_dataset))]

    def cache_files() -> set[Path]:
        return set((tmp_path / "cache").rglob("*.hdf5"))

    WRITERS[name](tmp_path / "data", 0)
    first = test_frames(cache=True)
    assert len(cache_files()) == len(first)
    filled = cache_files()
    for uncached, cached in zip(test_frames(cache=False), test_frames(cache=True), strict=True):
        np.testing.assert_array_equal(uncached, cached)
    assert cache_files() == filled  # read back, not written again
    # New recordings under the same file names (as many): the cache's old frames are not served.
    WRITERS[name](tmp_path / "data", 1)
    fresh = test_frames(cache=False)
    assert any(not np.array_equal(a, b) for a, b in zip(first, fresh, strict=True))
    for now, cached in zip(fresh, test_frames(cache=True), strict=True):
        np.testing.assert_array_equal(now, cached)
    # Another time resolution gets its own folder, computed from the files now on disk.
    other = {"num_time_steps": 2 * case.settings["num_time_steps"]}
    for now, cached in zip(
        test_frames(cache=False, **other), test_frames(cache=True, **other), strict=True
    ):
        np.testing.assert_array_equal(now, cached)
    folders = {path.parent for path in cache_files()}
    assert len(folders) == 3 and all(folder.name.startswith("test-") for folder in folders)


def test_first_saccade_only_gets_its_own_cache(nmnist_root: Path, tmp_path: Path) -> None:
    """tonic reads the first saccade only inside its constructor, before any transform: the
    setting must still key the cache, or a run with it gets the whole recordings' frames."""

    def test_frames(first_saccade_only: bool, cache: bool) -> list[np.ndarray]:
        module = NMNISTDataModule(data_dir=nmnist_root, download=False, num_time_steps=40,
                                  bin_width_ms=5.0, first_saccade_only=first_saccade_only,
                                  cache_dir=tmp_path / "cache" if cache else None)
        module.setup("test")
        return [np.asarray(module.test_dataset[i][0]) for i in range(len(module.test_dataset))]

    whole = test_frames(False, cache=True)
    first = test_frames(True, cache=True)
    assert any(not np.array_equal(a, b) for a, b in zip(whole, first, strict=True))
    for uncached, cached in zip(test_frames(True, cache=False), first, strict=True):
        np.testing.assert_array_equal(uncached, cached)
    assert sum(frames[20:].sum() for frames in first) == 0  # nothing after 100 ms
    folders = {path.parent for path in (tmp_path / "cache").rglob("*.hdf5")}
    assert len(folders) == 2


@pytest.mark.parametrize("cache", [False, True])
def test_denoising_a_recording_without_events_gives_zero_frames(
    cache: bool, dvs_gesture_root: Path, nmnist_root: Path, tmp_path: Path
) -> None:
    # An empty DVS Gesture recording; an N-MNIST one whose events all come after the first
    # saccade (100 ms), which first_saccade_only then reads as empty.
    shutil.copytree(dvs_gesture_root / "DVSGesture", tmp_path / "DVSGesture")
    shutil.copytree(nmnist_root / "NMNIST", tmp_path / "NMNIST")
    dvs_file = sorted((tmp_path / "DVSGesture" / "ibmGestureTest").glob("*/*.npy"))[0]
    np.save(dvs_file, np.zeros((0, 4), dtype=np.int64))
    nmnist_file = sorted((tmp_path / "NMNIST" / "Test").glob("*/*.bin"))[0]
    nmnist_file.write_bytes(encode_nmnist_events([3, 4], [3, 3], [150_000, 200_000], [1, 0]))
    cache_dir = tmp_path / "cache" if cache else None
    for case, path, settings in (
        (CASES["dvs_gesture"], dvs_file, {"denoise_ms": 10.0}),
        (CASES["nmnist"], nmnist_file, {"denoise_ms": 5.0, "first_saccade_only": True}),
    ):
        module = make(case, tmp_path, cache_dir=cache_dir, **settings)
        samples = module.make_dataset("test")
        source = module.open_split("test")
        index = [source.file_of(i) for i in range(len(source))].index(str(path))
        frames, _ = samples[index]
        assert frames.shape == (module.num_time_steps, *case.input_shape) and not frames.any()


def test_augmentation_varies_training_samples_only_even_with_a_cache(
    nmnist_root: Path, tmp_path: Path
) -> None:
    module = NMNISTDataModule(
        data_dir=nmnist_root,
        download=False,
        cache_dir=tmp_path,
        num_time_steps=10,
        bin_width_ms=30,
        augmentations=["drop_event", "spatial_jitter"],
    )
    module.setup("fit")
    train_reads = [module.train_dataset[0][0] for _ in range(2)]
    val_reads = [module.val_dataset[0][0] for _ in range(2)]
    assert not np.array_equal(*train_reads)
    np.testing.assert_array_equal(*val_reads)
    assert train_reads[0].shape == val_reads[0].shape == (10, 2, 34, 34)


def test_datamodule_and_datasets_pickle_for_spawned_processes(
    case_and_root: tuple[Case, Path], tmp_path: Path
) -> None:
    case, root = case_and_root
    # ddp_spawn pickles the DataModule before setup; spawned workers pickle the datasets.
    module = pickle.loads(pickle.dumps(make(case, root, cache_dir=tmp_path)))
    module.setup("fit")
    restored = pickle.loads(pickle.dumps(module.val_dataset))
    np.testing.assert_array_equal(restored[0][0], module.val_dataset[0][0])
    assert restored[0][1] == module.val_dataset[0][1]


def test_download_true_uses_tonics_check_and_reads_without_network(
    shd_root: Path, tmp_path: Path
) -> None:
    # tonic's check passes when its archive file sits next to the extracted .h5.
    shutil.copytree(shd_root / "SHD", tmp_path / "SHD")
    for name in ("shd_train.h5.zip", "shd_test.h5.zip"):
        (tmp_path / "SHD" / name).write_bytes(b"")
    module = SHDDataModule(data_dir=tmp_path, download=True)
    module.setup("test")
    assert len(module.test_dataset) == 20


class _TinyClassifier(L.LightningModule):
    def __init__(self, num_inputs: int, num_classes: int) -> None:
        super().__init__()
        self.readout = torch.nn.Linear(num_inputs, num_classes)

    def training_step(self, batch, batch_index):
        inputs, targets = batch
        logits = self.readout(inputs.sum(dim=1).flatten(1))
        return torch.nn.functional.cross_entropy(logits, targets)

    def validation_step(self, batch, batch_index):
        self.log("val_loss", self.training_step(batch, batch_index))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_lightning_trainer_runs_on_the_datamodule(shd_root: Path, tmp_path: Path) -> None:
    module = SHDDataModule(data_dir=shd_root, download=False, num_time_steps=10)
    model = _TinyClassifier(int(np.prod(module.input_shape)), module.num_classes)
    trainer = L.Trainer(
        fast_dev_run=2,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule=module)
    assert trainer.state.finished
    assert module.hparams["num_time_steps"] == 10
