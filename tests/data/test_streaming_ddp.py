"""A prepared copy read by 2 DDP ranks (CPU processes, gloo): litdata splits the training part
between them, so each sample is read at most once per epoch, by one rank; evaluation parts are
split as on the tonic path, every sample read once, by one rank."""

from __future__ import annotations

import hashlib
import json
import socket
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader

from exodus_lightning.data import SHDDataModule
from exodus_lightning.data.fabricate import write_shd

pytest.importorskip("litdata")

from exodus_lightning.data.prepare_copy import prepare_copy  # noqa: E402

WORLD_SIZE = 2
# Odd counts, so the parts do not divide evenly between the ranks: 41 - 4 = 37 train samples.
SETTINGS = {"num_time_steps": 20, "bin_width_ms": 50.0, "num_channels": 35, "batch_size": 4}


def sample_ids(loader) -> list[str]:
    """One id per sample read, in order: (label, frames) hashed."""
    ids = []
    for inputs, targets in loader:
        for frames, target in zip(inputs, targets):
            # As the model gets them: a prepared copy's loaders pass uint8 counts.
            digest = hashlib.sha256(frames.float().numpy().tobytes()).hexdigest()[:16]
            ids.append(f"{int(target)}-{digest}")
    return ids


def read_as_rank(rank: int, port: int, root: str, copy: str, results: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD_SIZE,
        timeout=timedelta(seconds=60),  # a rank that never comes fails the test, not hangs it
    )  # fmt: skip
    try:
        datamodule = SHDDataModule(data_dir=root, download=False, streaming=copy, **SETTINGS)
        datamodule.setup("fit")
        datamodule.setup("test")
        train_loader = datamodule.train_dataloader()
        seen = {"train": sample_ids(train_loader), "train, next epoch": sample_ids(train_loader)}
        for part in ("val", "test"):
            # The sampler the DataModule gives evaluation loaders under a DDP Trainer.
            loader = getattr(datamodule, f"{part}_dataloader")()
            sampler = UnrepeatedDistributedSampler(loader.dataset, shuffle=False)
            seen[part] = sample_ids(
                DataLoader(loader.dataset, loader.batch_size, sampler=sampler,
                           collate_fn=loader.collate_fn)
            )  # fmt: skip
        Path(results, f"rank{rank}.json").write_text(json.dumps(seen))
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_each_sample_is_read_once_per_epoch_across_ranks(tmp_path: Path) -> None:
    root = write_shd(tmp_path / "raw", num_train=41, num_test=21)
    copy = tmp_path / "prepared"
    prepare_copy(
        SHDDataModule(data_dir=root, download=False, **SETTINGS), str(copy), progress=False
    )
    # Every sample of each part, read in one process.
    single = SHDDataModule(data_dir=root, download=False, **SETTINGS)
    single.setup("fit")
    single.setup("test")
    everything = {
        "train": sample_ids(single.train_dataloader()),
        "val": sample_ids(single.val_dataloader()),
        "test": sample_ids(single.test_dataloader()),
    }
    assert [len(everything[part]) for part in ("train", "val", "test")] == [37, 4, 21]
    assert all(len(set(ids)) == len(ids) for ids in everything.values())  # ids are unique

    # Forked, not spawned: the ranks need not import torch and lightning again.
    mp.start_processes(
        read_as_rank,
        args=(free_port(), str(root), str(copy), str(tmp_path)),
        nprocs=WORLD_SIZE,
        start_method="fork",
    )
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD_SIZE)]
    for part in ("val", "test"):
        # Evaluation: every sample read exactly once (tests/test_ddp_evaluation.py: the metrics).
        together = ranks[0][part] + ranks[1][part]
        assert sorted(together) == sorted(everything[part])
    # Training: no sample twice in an epoch, and both ranks run as many steps (else DDP's
    # gradient all-reduce would wait forever); litdata drops the remainder to get there.
    for epoch in ("train", "train, next epoch"):
        train = ranks[0][epoch] + ranks[1][epoch]
        assert len(set(train)) == len(train)
        assert set(train) <= set(everything["train"])
        assert len(ranks[0][epoch]) == len(ranks[1][epoch])
        assert len(everything["train"]) - len(train) < WORLD_SIZE * SETTINGS["batch_size"]
    assert ranks[0]["train"] != ranks[0]["train, next epoch"]  # reshuffled
