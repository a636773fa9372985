"""Prepared copies (litdata chunks): the same batches as the tonic path, and refused when they
were made with other settings."""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from exodus_lightning.data import (
    DVSGestureDataModule,
    EventDataModule,
    NMNISTDataModule,
    SHDDataModule,
    SSCDataModule,
)
from exodus_lightning.data.cache import files_identity
from exodus_lightning.data.collate import pad_time_collate
from exodus_lightning.data.errors import InvalidDataError, PreparedDataError
from exodus_lightning.data.stored_samples import StoredFrames, decode_frames, encode_frames
from exodus_lightning.data.streaming import MANIFEST_NAME

litdata = pytest.importorskip("litdata")

from exodus_lightning.data.prepare_copy import prepare_copy  # noqa: E402

SHD_SETTINGS = {"num_time_steps": 25, "bin_width_ms": 40.0, "num_channels": 50}
AUGMENTATIONS = ("drop_event", "time_jitter")
NMNIST_SETTINGS = {"num_time_steps": 10, "bin_width_ms": 30.0}
CASES = {
    "shd": (SHDDataModule, "shd_root", SHD_SETTINGS),
    "nmnist": (NMNISTDataModule, "nmnist_root", NMNIST_SETTINGS),
    "ssc": (SSCDataModule, "ssc_root",
            {"num_time_steps": 20, "duration_ms": 1000.0, "val_fraction": None}),
    "dvs_gesture": (DVSGestureDataModule, "dvs_gesture_root",
                    {"num_time_steps": 15, "bin_width_ms": 100.0, "downsample_factor": 8}),
}  # fmt: skip


def make(module: type[EventDataModule], root: Path, **settings) -> EventDataModule:
    return module(data_dir=root, download=False, batch_size=4, **settings)


def prepared(module: type[EventDataModule], root: Path, output: Path, **settings) -> Path:
    prepare_copy(make(module, root, **settings), str(output), progress=False)
    return output


def served(datamodule: EventDataModule, loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The batches of one pass as a model receives them: after on_after_batch_transfer, which
    Lightning calls once a batch is on the device (it makes integer counts float32)."""
    return [
        datamodule.on_after_batch_transfer((inputs.clone(), targets.clone()), 0)
        for inputs, targets in loader
    ]


def batches(datamodule: EventDataModule, part: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return served(datamodule, getattr(datamodule, f"{part}_dataloader")())


def samples_of(datamodule: EventDataModule, loader=None) -> list[tuple[int, bytes]]:
    """Every sample of one training pass as (label, frame bytes), sorted: its multiset."""
    loader = datamodule.train_dataloader() if loader is None else loader
    return sorted(
        (int(target), frame.numpy().tobytes())
        for inputs, targets in served(datamodule, loader)
        for frame, target in zip(inputs, targets)
    )


def assert_same_batches(expected, actual) -> None:
    assert len(expected) == len(actual)
    for (inputs, targets), (streamed_inputs, streamed_targets) in zip(expected, actual):
        assert streamed_inputs.dtype == torch.float32 and streamed_targets.dtype == torch.int64
        assert torch.equal(inputs, streamed_inputs)
        assert torch.equal(targets, streamed_targets)


def set_up(*datamodules: EventDataModule) -> None:
    for datamodule in datamodules:
        datamodule.prepare_data()
        datamodule.setup("fit")
        datamodule.setup("test")


def assert_same_data(expected: EventDataModule, actual: EventDataModule) -> None:
    """Evaluation loaders: the same batches in the same order; training: the same samples each
    epoch (shuffled by litdata on a prepared copy, by our sampler on the tonic path)."""
    assert_same_batches(batches(expected, "val"), batches(actual, "val"))
    assert_same_batches(batches(expected, "test"), batches(actual, "test"))
    assert samples_of(actual) == samples_of(expected)


@pytest.mark.parametrize(
    ("name", "writers"),
    [("shd", 0), ("shd", 2), ("nmnist", 0), ("nmnist", 2), ("ssc", 0), ("dvs_gesture", 0)],
)
def test_streamed_batches_equal_the_tonic_paths(
    name: str, writers: int, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    module, root_fixture, settings = CASES[name]
    root = request.getfixturevalue(root_fixture)
    output = tmp_path / "prepared"
    prepare_copy(make(module, root, **settings), str(output), writers, progress=False)
    tonic_path = make(module, root, **settings)
    streamed = make(module, root, **settings, streaming=output)
    set_up(tonic_path, streamed)
    assert_same_data(tonic_path, streamed)
    assert len(samples_of(tonic_path)) == len(tonic_path.train_dataset) > 0
    # The loaders pass counts as uint8 (4x fewer bytes from workers and to the GPU);
    # on_after_batch_transfer makes them float32 (above), the tonic path's are float32 already.
    for part in ("train", "val", "test"):
        streamed_inputs, _ = next(iter(getattr(streamed, f"{part}_dataloader")()))
        tonic_inputs, _ = next(iter(getattr(tonic_path, f"{part}_dataloader")()))
        assert streamed_inputs.dtype == torch.uint8 and tonic_inputs.dtype == torch.float32


def test_the_manifest_records_what_the_copy_holds(shd_root: Path, tmp_path: Path) -> None:
    output = prepared(SHDDataModule, shd_root, tmp_path / "shd", **SHD_SETTINGS)
    manifest = json.loads((output / "manifest.json").read_text())
    assert manifest["dataset"] == "SHD"
    assert manifest["datamodule"] == "exodus_lightning.data.audio_spikes.SHDDataModule"
    assert manifest["settings"]["num_channels"] == 50
    assert manifest["versions"]["litdata"] == litdata.__version__
    parts = manifest["parts"]
    assert {part: parts[part]["num_samples"] for part in parts} == {
        "train": 36, "val": 4, "test": 20
    }  # fmt: skip
    assert parts["val"]["split"] == "train" and parts["val"]["seed"] == 0
    assert parts["test"]["stored"] == "frames"
    assert "SpikesToChannels(" in parts["test"]["transforms"][0]
    test_file = str((shd_root / "SHD" / "shd_test.h5").resolve())
    assert parts["test"]["source_files"] == files_identity(test_file)


def test_the_training_part_is_written_in_a_fixed_random_order(
    shd_root: Path, tmp_path: Path
) -> None:
    datamodule = make(SHDDataModule, shd_root, **SHD_SETTINGS)
    output = prepared(SHDDataModule, shd_root, tmp_path / "shd", **SHD_SETTINGS)
    again = prepared(SHDDataModule, shd_root, tmp_path / "again", **SHD_SETTINGS)
    manifest = json.loads((output / "manifest.json").read_text())
    assert {part: entry["order_seed"] for part, entry in manifest["parts"].items()} == {
        "train": 0, "val": None, "test": None
    }  # fmt: skip

    def stored_indices(copy: Path, part: str) -> list[int]:
        return [int(item["index"]) for item in litdata.StreamingDataset(str(copy / part))]

    train = stored_indices(output, "train")
    assert sorted(train) == sorted(datamodule.part_indices("train")) and train != sorted(train)
    assert stored_indices(again, "train") == train  # the same order every time
    for part in ("val", "test"):  # evaluation parts keep the source's order
        assert stored_indices(output, part) == datamodule.part_indices(part)


def test_a_copy_of_an_older_format_version_is_refused(shd_root: Path, tmp_path: Path) -> None:
    output = prepared(SHDDataModule, shd_root, tmp_path / "shd", **SHD_SETTINGS)
    manifest = json.loads((output / "manifest.json").read_text())
    manifest["format_version"] = 1  # written in the source's order
    (output / "manifest.json").write_text(json.dumps(manifest))
    reader = make(SHDDataModule, shd_root, **SHD_SETTINGS, streaming=output)
    with pytest.raises(PreparedDataError, match="format version 1.*source's order.*Prepare it ag"):
        reader.prepare_data()


def test_training_batches_mix_the_classes_as_on_the_tonic_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # N-MNIST lists its files class by class, and litdata never mixes chunks within a batch:
    # here a chunk holds a quarter of a class, as a 32 MB chunk of the real N-MNIST does
    # (~1,400 samples, of 6,000 per digit).
    import exodus_lightning.data.streaming as streaming
    from exodus_lightning.data.fabricate import write_nmnist

    root = write_nmnist(tmp_path / "raw", num_train_per_class=20, num_events=100)
    settings = {**NMNIST_SETTINGS, "batch_size": 16}
    tonic_path = NMNISTDataModule(data_dir=root, download=False, **settings)
    tonic_path.setup("fit")
    sizes = [sum(array.nbytes for array in encode_frames(tonic_path.train_dataset[i][0]).values())
             for i in range(0, 180, 9)]  # fmt: skip
    monkeypatch.setattr(streaming, "CHUNK_BYTES", f"{5 * int(np.mean(sizes))}b")
    output = tmp_path / "prepared"
    prepare_copy(NMNISTDataModule(data_dir=root, download=False, **settings), str(output),
                 progress=False)  # fmt: skip
    assert len(json.loads((output / "train" / "index.json").read_text())["chunks"]) >= 20
    streamed = NMNISTDataModule(data_dir=root, download=False, streaming=output, **settings)
    streamed.setup("fit")

    def classes_per_batch(datamodule: NMNISTDataModule) -> float:
        return float(np.mean([len(set(targets.tolist()))
                              for _, targets in datamodule.train_dataloader()]))  # fmt: skip

    # About 8 of the 10 classes in a batch of 16 drawn at random.
    expected = classes_per_batch(tonic_path)
    assert expected > 6
    assert classes_per_batch(streamed) > 0.85 * expected  # 7.75 and 7.33 here; 3.75 in order


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ({"num_time_steps": 30}, "transforms"),
        ({"num_channels": 25}, "transforms"),
        ({"seed": 1}, "seed"),
        ({"val_fraction": 0.2}, "val_fraction"),
    ],
)
def test_a_copy_made_with_other_settings_is_refused(
    setting: dict, named: str, shd_root: Path, tmp_path: Path
) -> None:
    output = prepared(SHDDataModule, shd_root, tmp_path / "shd", **SHD_SETTINGS)
    reader = make(SHDDataModule, shd_root, **{**SHD_SETTINGS, **setting}, streaming=output)
    # In prepare_data, which Lightning runs before it starts the loggers (no W&B run is
    # created for a run that cannot read its data), and in setup.
    with pytest.raises(PreparedDataError, match=f"other settings.*{named}: prepared"):
        reader.prepare_data()
    with pytest.raises(PreparedDataError, match=f"other settings.*{named}: prepared"):
        reader.setup("fit")


@pytest.mark.parametrize("prepared_with", [False, True], ids=["whole", "first_saccade"])
def test_a_copy_read_with_other_tonic_settings_is_refused(
    prepared_with: bool, nmnist_root: Path, tmp_path: Path
) -> None:
    """first_saccade_only acts inside tonic's reader, not as a transform: it is part of the
    copy's identity all the same."""
    output = prepared(NMNISTDataModule, nmnist_root, tmp_path / "nmnist", **NMNIST_SETTINGS,
                      first_saccade_only=prepared_with)
    reader = make(NMNISTDataModule, nmnist_root, **NMNIST_SETTINGS, streaming=output,
                  first_saccade_only=not prepared_with)
    with pytest.raises(PreparedDataError, match="other settings.*reading: prepared"):
        reader.setup("test")
    same = make(NMNISTDataModule, nmnist_root, **NMNIST_SETTINGS, streaming=output,
                first_saccade_only=prepared_with)
    same.setup("test")  # accepted


def test_a_copy_of_another_dataset_is_refused(shd_root: Path, tmp_path: Path) -> None:
    output = prepared(SHDDataModule, shd_root, tmp_path / "shd", **SHD_SETTINGS)
    reader = make(NMNISTDataModule, shd_root, **NMNIST_SETTINGS, streaming=output)
    with pytest.raises(PreparedDataError, match="dataset: prepared 'SHD', this DataModule 'NMNI"):
        reader.setup("test")


def test_a_folder_without_manifest_is_refused_before_training(tmp_path: Path) -> None:
    reader = make(SHDDataModule, tmp_path, streaming=tmp_path / "half-written")
    with pytest.raises(PreparedDataError, match="not a prepared dataset.*exodus-lightning prepare"):
        reader.prepare_data()


def test_preparing_over_a_prepared_copy_is_refused(shd_root: Path, tmp_path: Path) -> None:
    output = prepared(SHDDataModule, shd_root, tmp_path / "shd", **SHD_SETTINGS)
    with pytest.raises(PreparedDataError, match="already holds a prepared copy"):
        prepared(SHDDataModule, shd_root, output, **SHD_SETTINGS)


@pytest.mark.parametrize("writers", [0, 2])
def test_what_an_unfinished_preparation_left_is_never_read(
    writers: int, shd_root: Path, tmp_path: Path
) -> None:
    # A preparation with other settings stopped before its manifest (killed, out of disk): its
    # parts' chunks and indexes are left, and preparing again into the folder is allowed.
    output = prepared(SHDDataModule, shd_root, tmp_path / "shd", **SHD_SETTINGS)
    (output / MANIFEST_NAME).unlink()
    (output / "train" / "0.index.json").write_text("{}")  # a writer's index, not yet merged
    other = {**SHD_SETTINGS, "num_channels": 100}  # the old frames would fit: read silently
    prepare_copy(make(SHDDataModule, shd_root, **other), str(output), writers, progress=False)
    tonic_path = make(SHDDataModule, shd_root, **other)
    streamed = make(SHDDataModule, shd_root, **other, streaming=output)
    set_up(tonic_path, streamed)
    assert_same_data(tonic_path, streamed)


def test_a_part_folder_with_other_files_is_refused(shd_root: Path, tmp_path: Path) -> None:
    output = tmp_path / "shd"
    (output / "train").mkdir(parents=True)
    (output / "train" / "notes.txt").write_text("not a chunk")
    with pytest.raises(PreparedDataError, match="holds files that prepare did not write.*notes"):
        prepared(SHDDataModule, shd_root, output, **SHD_SETTINGS)
    assert (output / "train" / "notes.txt").exists()


def test_without_litdata_the_error_says_how_to_install_it(
    shd_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = prepared(SHDDataModule, shd_root, tmp_path / "shd", **SHD_SETTINGS)
    monkeypatch.setitem(sys.modules, "litdata", None)  # import litdata now fails
    reader = make(SHDDataModule, shd_root, **SHD_SETTINGS, streaming=output)
    with pytest.raises(PreparedDataError, match=r"pip install 'exodus-lightning\[streaming\]'"):
        reader.prepare_data()
    with pytest.raises(PreparedDataError, match="litdata package, which is not installed"):
        prepared(SHDDataModule, shd_root, tmp_path / "again", **SHD_SETTINGS)


def test_augmenting_copies_store_events_and_augment_every_epoch(
    shd_root: Path, tmp_path: Path
) -> None:
    settings = {**SHD_SETTINGS, "augmentations": ["drop_event"]}
    output = prepared(SHDDataModule, shd_root, tmp_path / "shd", **settings)
    manifest = json.loads((output / "manifest.json").read_text())
    assert [manifest["parts"][part]["stored"] for part in ("train", "val", "test")] == [
        "events", "frames", "frames"
    ]  # fmt: skip
    streamed = make(SHDDataModule, shd_root, **settings, streaming=output)
    streamed.setup("fit")
    first, again = streamed.train_dataset[0], streamed.train_dataset[0]
    assert first[1] == again[1] and first[0].shape == (25, 50)
    # The draws are seeded by (seed, epoch, sample): within a pass a sample reads the same,
    # the next pass draws anew (10 % of ~300 spikes dropped at random).
    np.testing.assert_array_equal(first[0], again[0])
    streamed.train_dataset.set_epoch(2)
    assert not np.array_equal(first[0], streamed.train_dataset[0][0])
    # The events are those of the tonic path: without dropping, the frames are the same.
    plain = make(SHDDataModule, shd_root, **SHD_SETTINGS)
    plain.setup("fit")
    unaugmented = make(SHDDataModule, shd_root, **SHD_SETTINGS, streaming=output)
    unaugmented.setup("fit")
    assert samples_of(unaugmented) == samples_of(plain)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_an_events_copy_augments_as_the_tonic_path_does(
    num_workers: int, shd_root: Path, tmp_path: Path
) -> None:
    # Both draw each sample's augmentation from (seed, epoch, its index in the split).
    settings = {**SHD_SETTINGS, "augmentations": ["drop_event", "time_jitter"]}
    output = prepared(SHDDataModule, shd_root, tmp_path / "shd", **settings)
    tonic_path = make(SHDDataModule, shd_root, **settings)
    streamed = make(SHDDataModule, shd_root, **settings, streaming=output,
                    num_workers=num_workers, streaming_workers=num_workers)  # fmt: skip
    set_up(tonic_path, streamed)
    tonic_loader, streamed_loader = tonic_path.train_dataloader(), streamed.train_dataloader()
    epochs = []
    for epoch in (0, 1):  # two passes of one loader: litdata's epochs 1 and 2
        tonic_loader.sampler.set_epoch(epoch)
        epochs.append(samples_of(tonic_path, tonic_loader))
        assert samples_of(streamed, streamed_loader) == epochs[-1], epoch
    assert epochs[0] != epochs[1]


def test_a_frames_copy_is_refused_when_augmenting(shd_root: Path, tmp_path: Path) -> None:
    output = prepared(SHDDataModule, shd_root, tmp_path / "shd", **SHD_SETTINGS)
    reader = make(
        SHDDataModule, shd_root, **SHD_SETTINGS, augmentations=["drop_event"], streaming=output
    )
    with pytest.raises(PreparedDataError, match="stored: prepared 'frames', this DataModule 'ev"):
        reader.setup("fit")


@pytest.mark.parametrize(
    ("name", "other_binning"),
    [
        ("shd", {"num_time_steps": 10, "bin_width_ms": 100.0, "num_channels": 20}),
        ("nmnist", {"num_time_steps": 5, "bin_width_ms": 60.0}),
    ],
)
def test_an_events_copy_serves_any_binning(
    name: str, other_binning: dict, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    module, root_fixture, settings = CASES[name]
    root = request.getfixturevalue(root_fixture)
    output = tmp_path / "events"
    prepare_copy(make(module, root, **settings), str(output), store="events", progress=False)
    tonic_path = make(module, root, **other_binning)
    streamed = make(module, root, **other_binning, streaming=output)
    for datamodule in (tonic_path, streamed):
        datamodule.setup("test")
    assert_same_batches(batches(tonic_path, "test"), batches(streamed, "test"))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_shuffling_is_seeded_and_changes_every_epoch(
    num_workers: int, ssc_root: Path, tmp_path: Path
) -> None:
    # SSC validates on its own file, so its train part is the whole training file for any seed
    # (SHD's is drawn with the seed, and a copy made with another seed is refused).
    settings = {"num_time_steps": 20, "duration_ms": 1000.0, "val_fraction": None}
    output = prepared(SSCDataModule, ssc_root, tmp_path / "ssc", **settings)

    def epochs(seed: int) -> list[list[int]]:
        streamed = make(
            SSCDataModule, ssc_root, **settings, streaming=output, num_workers=num_workers,
            streaming_workers=num_workers, seed=seed,
        )  # fmt: skip
        streamed.setup("fit")
        loader = streamed.train_dataloader()
        return [[int(x) for x in torch.cat([t for _, t in loader])] for _ in range(2)] + [
            samples_of(streamed, loader)
        ]

    first, second, other_seed = epochs(0), epochs(0), epochs(1)
    assert first[:2] == second[:2]  # the same seed gives the same order, epoch by epoch
    assert first[0] != first[1]  # labels in another order: the next epoch is shuffled anew
    assert other_seed[0] != first[0]
    assert len(first[2]) == 70 and len(set(first[2])) == 70  # each sample once per epoch


def test_frames_copies_load_in_the_main_process_unless_told(
    shd_root: Path, tmp_path: Path
) -> None:
    frames = prepared(SHDDataModule, shd_root, tmp_path / "frames", **SHD_SETTINGS)
    events = tmp_path / "events"
    prepare_copy(make(SHDDataModule, shd_root, **SHD_SETTINGS), str(events), store="events",
                 progress=False)  # fmt: skip

    def workers(copy: Path, **settings) -> list[int]:
        datamodule = make(SHDDataModule, shd_root, **SHD_SETTINGS, streaming=copy, **settings)
        datamodule.setup("fit")
        datamodule.setup("test")
        return [
            getattr(datamodule, f"{part}_dataloader")().num_workers
            for part in ("train", "val", "test")
        ]

    # Frames: decoding costs less than passing batches from workers (see the README).
    assert workers(frames, num_workers=2) == [0, 0, 0]
    # Events are binned (and augmented) per sample: num_workers as given.
    assert workers(events, num_workers=2) == [2, 2, 2]
    assert workers(frames, num_workers=2, streaming_workers=1) == [1, 1, 1]
    assert workers(events, num_workers=2, streaming_workers=0) == [0, 0, 0]
    # Without streaming, streaming_workers does not apply.
    tonic_path = make(SHDDataModule, shd_root, **SHD_SETTINGS, num_workers=1, streaming_workers=0)
    tonic_path.setup("test")
    assert tonic_path.test_dataloader().num_workers == 1
    with pytest.raises(ValueError, match="streaming_workers=-1 must be 0"):
        make(SHDDataModule, shd_root, streaming_workers=-1)


def test_frames_are_stored_dense_or_sparse_whichever_is_smaller() -> None:
    rng = np.random.default_rng(0)
    busy = rng.integers(0, 4, (25, 50)).astype(np.float32)
    empty_mostly = np.zeros((10, 2, 34, 34), dtype=np.float32)
    empty_mostly[3, 1, 5, 7] = 2.0
    empty_mostly[9, 0, 33, 33] = 300.0  # above uint8
    for frames, sparse in ((busy, False), (empty_mostly, True), (np.zeros((3, 4)), True)):
        stored = encode_frames(frames)
        assert (len(stored["positions"]) > 0 or frames.sum() == 0) == sparse
        decoded = decode_frames(stored, frames.shape)
        assert decoded.dtype == np.float32 and np.array_equal(decoded, frames)


def test_a_batch_of_stored_frames_collates_as_the_decoded_frames() -> None:
    rng = np.random.default_rng(1)
    shape = (4, 2, 3, 3)
    dense = rng.integers(0, 3, shape).astype(np.float32)
    sparse = np.zeros(shape, dtype=np.float32)
    sparse[1, 0, 2, 1] = 5.0
    samples = [
        (StoredFrames(**encode_frames(frames), shape=shape), label)
        for label, frames in enumerate((dense, sparse, np.zeros(shape)))
    ]
    assert np.array_equal(np.asarray(samples[1][0]), sparse)
    inputs, targets = pad_time_collate(samples)
    expected, _ = pad_time_collate([(np.asarray(frames), label) for frames, label in samples])
    # Counts below 256: uint8, 4x fewer bytes than float32 (cast after the transfer).
    assert inputs.dtype == torch.uint8 and inputs.shape == (3, *shape)
    assert torch.equal(inputs.float(), expected) and targets.tolist() == [0, 1, 2]
    # One count above 255: the whole batch is uint16.
    sparse[3, 1, 0, 0] = 300.0
    samples[1] = (StoredFrames(**encode_frames(sparse), shape=shape), 1)
    inputs, _ = pad_time_collate(samples)
    expected, _ = pad_time_collate([(np.asarray(frames), label) for frames, label in samples])
    assert inputs.dtype == torch.uint16 and torch.equal(inputs.float(), expected)


def test_counts_too_large_to_store_or_not_counts_are_refused() -> None:
    with pytest.raises(InvalidDataError, match="narrower bins"):
        encode_frames(np.full((2, 2), 70000.0))
    for not_counts in (np.full((2, 2), 0.5), np.full((2, 2), -1.0)):
        with pytest.raises(InvalidDataError, match="not event counts"):
            encode_frames(not_counts)


@pytest.mark.slow  # building the command line's parser: ~3 s, up to 30 s on 2 busy cores
def test_the_prepare_command_uses_the_fit_configs(
    shd_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from exodus_lightning.prepare import main

    monkeypatch.setattr(sys, "argv", ["exodus-lightning"])
    repo = Path(__file__).resolve().parents[2]
    output = tmp_path / "shd"
    manifest = main([
        "--config", str(repo / "configs" / "shd.yaml"), "--output", str(output),
        "--num_workers", "0", "--data.init_args.data_dir", str(shd_root),
        "--data.init_args.download", "false", "--data.init_args.num_time_steps", "20",
    ])  # fmt: skip
    assert manifest["dataset"] == "SHD" and manifest["num_time_steps"] == 20
    assert manifest["settings"]["num_channels"] == 100  # configs/shd.yaml's
    reader = SHDDataModule(
        data_dir=tmp_path / "absent", num_time_steps=20, streaming=output, batch_size=8
    )
    reader.setup("test")
    inputs, targets = next(iter(reader.test_dataloader()))
    assert inputs.shape == (8, 20, 100) and targets.shape == (8,)
    assert f"--data.init_args.streaming {output}" in capsys.readouterr().out
    # Data that is generated, not recorded, ends in one line naming the problem.
    with pytest.raises(SystemExit) as exit_info:
        main(["--output", str(tmp_path / "randman"), "--num_workers", "0"])
    assert exit_info.value.code == 1
    message = capsys.readouterr().err
    assert message.startswith("exodus-lightning prepare: error: RandmanDataModule is not a")
    assert len(message.strip().splitlines()) == 1


def test_lightning_trains_and_validates_on_a_prepared_copy(shd_root: Path, tmp_path: Path) -> None:
    import lightning as L

    from tests.data.test_event_datamodules import _TinyClassifier

    output = prepared(SHDDataModule, shd_root, tmp_path / "shd", **SHD_SETTINGS)
    datamodule = make(SHDDataModule, tmp_path / "no raw data here", **SHD_SETTINGS,
                      streaming=str(output))  # fmt: skip

    class Recorder(_TinyClassifier):
        def training_step(self, batch, batch_index):
            self.dtypes.add(batch[0].dtype)
            return super().training_step(batch, batch_index)

    model = Recorder(int(np.prod(datamodule.input_shape)), datamodule.num_classes)
    model.dtypes = set()
    trainer = L.Trainer(
        max_epochs=2, accelerator="cpu", logger=False, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(model, datamodule=datamodule)
    assert trainer.state.finished and trainer.global_step == 2 * 9  # 36 samples, batches of 4
    assert "val_loss" in trainer.callback_metrics
    # The loader passes uint8 counts; Lightning's on_after_batch_transfer hook made them float32.
    assert next(iter(datamodule.train_dataloader()))[0].dtype == torch.uint8
    assert model.dtypes == {torch.float32}
    # ddp_spawn and spawned workers pickle the datasets.
    for dataset in (datamodule.train_dataset, datamodule.val_dataset):
        restored = pickle.loads(pickle.dumps(dataset))
        assert np.array_equal(np.asarray(restored[0][0]), np.asarray(dataset[0][0]))


def fit_recording(
    output: Path, root: Path, tmp_path: Path, checkpoint: str | None = None, num_workers: int = 0,
    callbacks: tuple = (), validate: bool = False, augmentations: tuple[str, ...] = (),
    **trainer_settings,
) -> list[tuple[list[int], float]]:  # fmt: skip
    """The labels and the input's sum of every training batch of a Lightning run on the
    prepared copy `output` (made with `augmentations`), resumed from `checkpoint` if given
    (9 batches per epoch: 36 samples, batches of 4)."""
    import lightning as L

    from tests.data.test_event_datamodules import _TinyClassifier

    class Recorder(_TinyClassifier):
        def on_train_batch_start(self, batch, batch_index) -> None:
            self.seen.append((batch[1].tolist(), batch[0].sum().item()))

    # Paths as strings: the checkpoint holds the DataModule's arguments, and Lightning's
    # weights_only loading refuses Path objects.
    datamodule = make(SHDDataModule, str(root), **SHD_SETTINGS, streaming=str(output),
                      num_workers=num_workers, streaming_workers=num_workers,
                      augmentations=list(augmentations))  # fmt: skip
    model = Recorder(int(np.prod(datamodule.input_shape)), datamodule.num_classes)
    model.seen = []
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=tmp_path, callbacks=list(callbacks), enable_checkpointing=bool(callbacks),
        num_sanity_val_steps=0, limit_val_batches=None if validate else 0, **trainer_settings,
    )  # fmt: skip
    trainer.fit(model, datamodule=datamodule, ckpt_path=checkpoint)
    return model.seen


@pytest.mark.parametrize(
    ("num_workers", "augmentations"), [(0, ()), (2, ()), (0, AUGMENTATIONS), (2, AUGMENTATIONS)]
)
def test_resuming_mid_epoch_continues_exactly(
    num_workers: int, augmentations: tuple[str, ...], shd_root: Path, tmp_path: Path
) -> None:
    from lightning.pytorch.callbacks import ModelCheckpoint

    output = prepared(SHDDataModule, shd_root, tmp_path / "shd", **SHD_SETTINGS,
                      augmentations=list(augmentations))  # fmt: skip
    # Saves at step 13: 9 batches per epoch, so 4 batches into the second epoch.
    saver = ModelCheckpoint(dirpath=tmp_path / "checkpoints", filename="{step}",
                            every_n_train_steps=13, save_top_k=-1)  # fmt: skip
    straight = fit_recording(output, shd_root, tmp_path, num_workers=num_workers,
                             callbacks=(saver,), augmentations=augmentations,
                             max_epochs=3)  # fmt: skip
    assert len(straight) == 27 and straight[:9] != straight[9:18]  # epochs are reshuffled
    checkpoint = str(tmp_path / "checkpoints" / "step=13.ckpt")
    resumed = fit_recording(output, shd_root, tmp_path, checkpoint, num_workers,
                            augmentations=augmentations, max_epochs=3)  # fmt: skip
    # The rest of the second epoch, then the third; augmented with the same draws.
    assert resumed == straight[13:]


@pytest.mark.parametrize(
    ("first_job", "whole_run", "augmentations"),
    [({"max_epochs": 1}, {"max_epochs": 3}, ()),
     ({"max_epochs": -1, "max_steps": 9}, {"max_epochs": -1, "max_steps": 27}, ()),
     ({"max_epochs": 1}, {"max_epochs": 3}, AUGMENTATIONS)],
    ids=["max_epochs", "max_steps", "max_epochs-augmented"],
)  # fmt: skip
def test_resuming_from_the_end_of_an_epoch_continues_exactly(
    first_job: dict, whole_run: dict, augmentations: tuple[str, ...], shd_root: Path,
    tmp_path: Path
) -> None:
    # The README's resume: a job trains one epoch and writes last.ckpt after validating; the
    # next job resumes from it. Lightning does not restore the loader's state from such a
    # checkpoint (with max_steps it restores an epoch already complete), so the loader must take
    # the epoch from the Trainer instead of counting its own passes.
    from lightning.pytorch.callbacks import ModelCheckpoint

    output = prepared(SHDDataModule, shd_root, tmp_path / "shd", **SHD_SETTINGS,
                      augmentations=list(augmentations))  # fmt: skip
    run = {"validate": True, "augmentations": augmentations}
    straight = fit_recording(output, shd_root, tmp_path, **run, **whole_run)
    epochs = [straight[9 * epoch : 9 * epoch + 9] for epoch in range(3)]
    assert len(straight) == 27 and len({str(epoch) for epoch in epochs}) == 3
    saver = ModelCheckpoint(dirpath=tmp_path / "checkpoints", save_last=True)
    first = fit_recording(output, shd_root, tmp_path, callbacks=(saver,), **run, **first_job)
    assert first == epochs[0]
    checkpoint = str(tmp_path / "checkpoints" / "last.ckpt")
    resumed = fit_recording(output, shd_root, tmp_path, checkpoint, **run, **whole_run)
    assert resumed == straight[9:]  # epochs 1 and 2 in their own orders, not 0 and 1 again


def test_a_loader_reloaded_every_epoch_shuffles_every_epoch_anew(
    shd_root: Path, tmp_path: Path
) -> None:
    output = prepared(SHDDataModule, shd_root, tmp_path / "shd", **SHD_SETTINGS)
    straight = fit_recording(output, shd_root, tmp_path, max_epochs=3)
    reloaded = fit_recording(output, shd_root, tmp_path, max_epochs=3,
                             reload_dataloaders_every_n_epochs=1)  # fmt: skip
    assert reloaded == straight and straight[:9] != straight[9:18]
