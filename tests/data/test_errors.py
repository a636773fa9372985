"""Every error path: missing data, failed download, unreadable files, bad arguments."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import tonic.dataset

from exodus_lightning.data import (
    DatasetDownloadError,
    DatasetNotFoundError,
    DVSGestureDataModule,
    NMNISTDataModule,
    RandmanDataModule,
    SHDDataModule,
    SSCDataModule,
    UnreadableFileError,
    fabricate,
)
from exodus_lightning.data.fabricate import write_dvs_gesture, write_nmnist, write_shd

MODULES = [NMNISTDataModule, DVSGestureDataModule, SHDDataModule, SSCDataModule]
# A piece of each expected-layout description and of each source address.
LAYOUT_HINT = {
    NMNISTDataModule: ("NMNIST/Train/<digit 0-9>/<id>.bin", "garrickorchard.com"),
    DVSGestureDataModule: ("ibmGestureTrain/userNN_<lighting>/<label 0-10>.npy", "dvsgesture"),
    SHDDataModule: ("SHD/shd_train.h5", "zenkelab.org"),
    SSCDataModule: ("SSC/ssc_valid.h5", "zenkelab.org"),
}


@pytest.mark.parametrize("module_class", MODULES)
def test_missing_data_without_download_names_folder_layout_and_source(
    module_class, tmp_path: Path
) -> None:
    module = module_class(data_dir=tmp_path, download=False)
    with pytest.raises(DatasetNotFoundError) as raised:
        module.setup("fit")
    message = str(raised.value)
    layout, source = LAYOUT_HINT[module_class]
    assert str(tmp_path.resolve() / module_class.dataset_name) in message
    assert layout in message and source in message and "download=True" in message
    # The layout's paths start with the dataset's folder: they are relative to data_dir.
    assert f"Expected layout under data_dir '{tmp_path.resolve()}':" in message
    assert raised.value.fixes["download"] == "true"


@pytest.mark.parametrize("module_class", MODULES)
def test_failed_download_names_folder_and_manual_route(
    module_class, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*args, **kwargs):
        raise URLError("network is unreachable")

    monkeypatch.setattr(tonic.dataset, "download_and_extract_archive", no_network)
    module = module_class(data_dir=tmp_path, download=True)
    with pytest.raises(DatasetDownloadError) as raised:
        module.setup("test")
    message = str(raised.value)
    assert "network is unreachable" in message
    assert str(tmp_path.resolve() / module_class.dataset_name) in message
    assert LAYOUT_HINT[module_class][1] in message and "download=False" in message


@pytest.mark.parametrize("name", ["nmnist", "dvs_gesture", "shd", "ssc"])
def test_download_true_uses_extracted_data_without_the_network(
    name, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Data extracted by hand (no archives) is used as it is; nothing is downloaded."""
    def no_network(*args, **kwargs):
        raise URLError("network is unreachable")

    monkeypatch.setattr(tonic.dataset, "download_and_extract_archive", no_network)
    writers = {"nmnist": lambda: fabricate.write_nmnist(tmp_path, 1, 1, num_events=50),
               "dvs_gesture": lambda: fabricate.write_dvs_gesture(tmp_path, 1, 1, ("led",), 100),
               "shd": lambda: fabricate.write_shd(tmp_path, 20, 20, spikes_per_sample=20),
               "ssc": lambda: fabricate.write_ssc(tmp_path, 35, 35, 35, spikes_per_sample=20)}
    writers[name]()
    module_class = {"nmnist": NMNISTDataModule, "dvs_gesture": DVSGestureDataModule,
                    "shd": SHDDataModule, "ssc": SSCDataModule}[name]
    module = module_class(data_dir=tmp_path, download=True, num_workers=0, cache_dir=None)
    module.setup("test")
    assert len(module.test_dataset) > 0
    x, _ = next(iter(module.test_dataloader()))
    assert x.shape[2:] == module.input_shape


def test_truncated_nmnist_file_is_named(tmp_path: Path) -> None:
    root = write_nmnist(tmp_path, num_train_per_class=1, num_test_per_class=1)
    broken = sorted((root / "NMNIST" / "Test").glob("*/*.bin"))[0]
    broken.write_bytes(broken.read_bytes()[:-2])
    module = NMNISTDataModule(data_dir=root, download=False, num_workers=0)
    module.setup("test")
    with pytest.raises(UnreadableFileError, match=re.escape(str(broken))):
        next(iter(module.test_dataloader()))


def test_truncated_dvs_gesture_file_is_named_from_a_worker(tmp_path: Path) -> None:
    root = write_dvs_gesture(tmp_path, num_train_users=1, num_test_users=1, num_events=50)
    broken = sorted((root / "DVSGesture" / "ibmGestureTest").glob("*/*.npy"))[0]
    broken.write_bytes(broken.read_bytes()[:100])
    module = DVSGestureDataModule(data_dir=root, download=False, num_workers=2, batch_size=8)
    module.setup("test")
    batches = iter(module.test_dataloader())
    try:
        next(batches)
    except UnreadableFileError as error:
        message = str(error)
        # torch re-raises worker errors inside a reference cycle; dropping the traceback lets
        # the workers shut down now, not at a later garbage collection (5 s join timeout each).
        error.__traceback__ = None
    else:
        pytest.fail("a truncated recording was read without error")
    del batches
    assert str(broken) in message


def test_truncated_shd_file_is_named_at_setup(shd_root: Path, tmp_path: Path) -> None:
    shutil.copytree(shd_root / "SHD", tmp_path / "SHD")
    broken = tmp_path / "SHD" / "shd_test.h5"
    broken.write_bytes(broken.read_bytes()[:1000])
    module = SHDDataModule(data_dir=tmp_path, download=False)
    with pytest.raises(UnreadableFileError, match=re.escape(str(broken))):
        module.setup("test")


def test_non_shd_hdf5_file_is_named(tmp_path: Path) -> None:
    import h5py

    write_shd(tmp_path, num_train=20, num_test=20)
    wrong = tmp_path / "SHD" / "shd_test.h5"
    with h5py.File(wrong, "w") as file:
        file.create_dataset("labels", data=np.zeros(4))
    with pytest.raises(UnreadableFileError, match="lacks the datasets"):
        SHDDataModule(data_dir=tmp_path, download=False).setup("test")


@pytest.mark.parametrize(
    ("module_class", "split"),
    [(NMNISTDataModule, "valid"), (SHDDataModule, "validation"), (SSCDataModule, "dev")],
)
def test_unknown_split_fails_before_touching_files(module_class, split, tmp_path: Path) -> None:
    module = module_class(data_dir=tmp_path / "absent", download=False)
    with pytest.raises(ValueError, match=f"unknown split '{split}'"):
        module.make_dataset(split)


def test_unknown_randman_split() -> None:
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        RandmanDataModule(num_train_samples=10).make_dataset("dev")


@pytest.mark.parametrize(
    ("module_class", "arguments", "message"),
    [
        (NMNISTDataModule, {"augmentations": ["flip_lr"]}, "unknown augmentations"),
        (SHDDataModule, {"augmentations": ["spatial_jitter"]}, "unknown augmentations"),
        (NMNISTDataModule, {"val_fraction": 0.0}, "val_fraction=0.0"),
        (DVSGestureDataModule, {"val_fraction": 1.5}, "val_fraction=1.5"),
        (SHDDataModule, {"val_fraction": None}, "no official validation split"),
        (DVSGestureDataModule, {"downsample_factor": 3}, "downsample_factor=3"),
        (NMNISTDataModule, {"denoise_ms": -1.0}, "denoise_ms=-1.0"),
        (SHDDataModule, {"num_channels": 701}, "num_channels=701"),
        (SSCDataModule, {"bin_width_ms": 0.0}, "bin_width_ms=0.0"),
        (SSCDataModule, {"duration_ms": -5.0}, "duration_ms=-5.0"),
        (SHDDataModule, {"duration_ms": 1000.0, "bin_width_ms": 10.0},
         r"duration_ms=1000.0 over num_time_steps=250 makes bins of 4 ms, but bin_width_ms=10.0"),
        (NMNISTDataModule, {"num_time_steps": 0}, "num_time_steps=0"),
        (NMNISTDataModule, {"batch_size": 0}, "batch_size=0"),
        (SHDDataModule, {"num_workers": -1}, "num_workers=-1"),
        (RandmanDataModule, {"latent_dim": 0}, "latent_dim=0"),
        (RandmanDataModule, {"jitter": -1.0}, "jitter=-1.0"),
        (RandmanDataModule, {"num_classes": 1}, "num_classes=1"),
        (RandmanDataModule, {"num_time_steps": 1}, "num_time_steps=1"),
        (RandmanDataModule, {"num_val_samples": 0}, "num_val_samples=0"),
    ],
)
def test_bad_arguments_fail_at_construction_naming_the_argument(
    module_class, arguments: dict, message: str, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=message):
        module_class(data_dir=tmp_path, download=False, **arguments)


@pytest.mark.parametrize(
    ("module_class", "arguments", "width_ms"),
    [
        (SHDDataModule, {}, 4.0),
        (NMNISTDataModule, {}, 3.5),
        (DVSGestureDataModule, {}, 5.0),
        (SHDDataModule, {"bin_width_ms": 10.0}, 10.0),
        (SHDDataModule, {"duration_ms": 1500.0}, 6.0),
        (SSCDataModule, {"duration_ms": 1000.0, "bin_width_ms": 4.0}, 4.0),  # they agree
        (NMNISTDataModule, {"duration_ms": 350.0, "num_time_steps": 7, "bin_width_ms": 50.0}, 50.0),
    ],
)
def test_bin_width_from_either_setting_or_the_default(
    module_class, arguments: dict, width_ms: float, tmp_path: Path
) -> None:
    module = module_class(data_dir=tmp_path, download=False, **arguments)
    assert module.bin_width_us == width_ms * 1000


def test_loader_before_setup_says_what_to_call(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="setup"):
        SHDDataModule(data_dir=tmp_path, download=False).train_dataloader()


@pytest.mark.parametrize(("stage", "needed"), [("fit", ["train"]), ("validate", ["train"]),
                                               ("test", ["test"]), ("predict", ["test"])])
def test_prepare_data_checks_the_splits_the_stage_reads(stage, needed, shd_root: Path,
                                                         tmp_path: Path) -> None:
    """Lightning calls prepare_data() before it starts the loggers: a missing split fails
    there, before a (W&B) run exists; a present one is opened once."""
    import lightning as L

    trainer = L.Trainer(logger=False)
    trainer.state.fn = stage
    missing = SHDDataModule(data_dir=tmp_path, download=False)
    missing.trainer = trainer
    with pytest.raises(DatasetNotFoundError, match=f"shd_{needed[0]}.h5"):
        missing.prepare_data()
    present = SHDDataModule(data_dir=shd_root, download=False, num_workers=0)
    present.trainer = trainer
    present.prepare_data()
    assert sorted(present._opened) == needed


@pytest.mark.parametrize("entry", ["extra/keys", "extra/speaker"])
def test_shd_file_without_the_entries_tonic_reads_is_named(entry: str, tmp_path: Path) -> None:
    """A hand-made subset with spikes and labels only: tonic's constructor also reads the class
    names and speakers, and h5py's KeyError names neither the file nor the entry."""
    import h5py

    write_shd(tmp_path, num_train=20, num_test=20)
    wrong = tmp_path / "SHD" / "shd_test.h5"
    with h5py.File(wrong, "r+") as file:
        del file[entry]
    with pytest.raises(UnreadableFileError, match=rf"lacks the datasets \['{entry}'\]"):
        SHDDataModule(data_dir=tmp_path, download=False).setup("test")
    message = SHDDataModule(data_dir=tmp_path, download=False).layout
    assert "extra/keys, extra/speaker" in message
