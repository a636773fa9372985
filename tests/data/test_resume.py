"""Resuming on the built-in/tonic path: a run resumed from a checkpoint written inside an epoch
continues with exactly the batches, and ends with exactly the parameters, of the uninterrupted
run; on one process and on 2 DDP processes (CPU, gloo)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from exodus_lightning.data import RandmanDataModule
from exodus_lightning.data.sampler import EpochSeededSampler, ResumableDataLoader, ResumeWarning

# 60 training samples in batches of 10: 6 batches (steps) per epoch on one process, 3 per
# process on two.
DATA = {"num_train_samples": 60, "num_val_samples": 10, "num_test_samples": 10,
        "batch_size": 10, "num_time_steps": 10, "num_channels": 8, "seed": 3}


class Recorder(L.LightningModule):
    """A linear readout of spike counts that records the batches it trains on."""

    def __init__(self, num_inputs: int, num_classes: int) -> None:
        super().__init__()
        self.readout = torch.nn.Linear(num_inputs, num_classes)
        self.seen: list[list[float]] = []

    def training_step(self, batch, batch_index):
        inputs, targets = batch
        # Spike times: Randman's channels fire once per sample, so counts are all alike.
        times = (inputs * torch.arange(1, inputs.shape[1] + 1).view(1, -1, 1)).sum(dim=1)
        # One number per sample, enough to tell batches apart.
        self.seen.append(times.sum(dim=1).tolist())
        logits = self.readout(times)
        return torch.nn.functional.cross_entropy(logits, targets)

    def on_train_end(self) -> None:
        folder = getattr(self, "record_to", None)
        if folder is not None:  # under ddp_spawn, each process writes what it saw
            Path(folder, f"seen-{self.global_rank}.json").write_text(json.dumps(self.seen))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(tmp_path: Path, tag: str, checkpoint: str | None = None, num_workers: int = 0,
        devices: int = 1, every_n_train_steps: int = 3) -> Recorder:
    """3 epochs, every run saving a checkpoint every `every_n_train_steps` steps into
    tmp_path/<tag>."""
    L.seed_everything(0)
    data = RandmanDataModule(**DATA, num_workers=num_workers, persistent_workers=False)
    model = Recorder(DATA["num_channels"], data.num_classes)
    if devices > 1:
        model.record_to = str(tmp_path / tag)
        (tmp_path / tag).mkdir()
    saver = ModelCheckpoint(dirpath=tmp_path / tag, filename="{step}", save_top_k=-1,
                            every_n_train_steps=every_n_train_steps)
    trainer = L.Trainer(
        max_epochs=3, accelerator="cpu", devices=devices,
        strategy="ddp_spawn" if devices > 1 else "auto", logger=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
        limit_val_batches=0, num_sanity_val_steps=0, callbacks=[saver],
    )
    with warnings.catch_warnings():
        # Lightning's warning for a loader it cannot resume fails the test.
        warnings.filterwarnings("error", message=".*dataloader is not resumable")
        trainer.fit(model, datamodule=data, ckpt_path=checkpoint)
    return model


def assert_same_parameters(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resuming_mid_epoch_continues_exactly(num_workers: int, tmp_path: Path) -> None:
    straight = fit(tmp_path, "straight", num_workers=num_workers)
    assert len(straight.seen) == 18 and straight.seen[:6] != straight.seen[6:12]
    # Step 9: half-way through the second epoch. Step 12: its last batch, saved before the
    # epoch ended (validation, epoch-end hooks): the next epoch follows.
    for step in (9, 12):
        resumed = fit(tmp_path, f"from{step}", str(tmp_path / "straight" / f"step={step}.ckpt"),
                      num_workers=num_workers)
        assert resumed.seen == straight.seen[step:], step
        assert_same_parameters(straight, resumed)


@pytest.mark.slow
def test_resuming_mid_epoch_under_ddp_continues_exactly(tmp_path: Path) -> None:
    straight = fit(tmp_path, "straight", devices=2, every_n_train_steps=2)
    seen = [json.loads((tmp_path / "straight" / f"seen-{r}.json").read_text()) for r in (0, 1)]
    assert all(len(s) == 9 for s in seen)  # 3 steps per epoch on each process
    # Step 4: the second step of the second epoch.
    resumed = fit(tmp_path, "resumed", str(tmp_path / "straight" / "step=4.ckpt"), devices=2,
                  every_n_train_steps=2)
    for rank in (0, 1):
        assert json.loads((tmp_path / "resumed" / f"seen-{rank}.json").read_text()) == (
            seen[rank][4:]), rank
    assert_same_parameters(straight, resumed)


def test_the_loader_state_names_the_epoch_and_the_samples_served() -> None:
    loader = ResumableDataLoader(range(25), batch_size=4, sampler=EpochSeededSampler(25, 1))
    loader.sampler.set_epoch(2)
    batches = iter(loader)
    first = [next(batches) for _ in range(3)]
    assert loader.state_dict() == {"epoch": 2, "samples_served": 12, "num_replicas": 1}
    rest = list(batches)

    resumed = ResumableDataLoader(range(25), batch_size=4, sampler=EpochSeededSampler(25, 1))
    resumed.load_state_dict({"epoch": 2, "samples_served": 12, "num_replicas": 1})
    resumed.sampler.set_epoch(2)  # as Lightning does, after load_state_dict
    assert [b.tolist() for b in resumed] == [b.tolist() for b in rest]
    # Only the interrupted epoch is shortened; the next is whole.
    resumed.sampler.set_epoch(3)
    assert sorted(int(i) for b in resumed for i in b) == list(range(25))
    assert loader.state_dict()["samples_served"] == 25  # complete: its share, not 7 batches x 4
    assert len(first) == 3

    # A checkpoint at the epoch's end: the next epoch is whole, a pass over the same is empty.
    for epoch, batches in ((3, 7), (2, 0)):
        complete = ResumableDataLoader(range(25), batch_size=4, sampler=EpochSeededSampler(25, 1))
        complete.load_state_dict(loader.state_dict())
        complete.sampler.set_epoch(epoch)
        assert len([*complete]) == batches


def test_processes_share_an_epoch_as_torch_distributed_sampler_does() -> None:
    from torch.utils.data import DistributedSampler

    order = list(EpochSeededSampler(11, 4))
    for rank in range(3):
        mine = EpochSeededSampler(11, 4, num_replicas=3, rank=rank)
        torchs = DistributedSampler(order, num_replicas=3, rank=rank, shuffle=False)
        assert list(mine) == [order[i] for i in torchs] and len(mine) == 4


def test_another_number_of_processes_resumes_with_a_warning() -> None:
    loader = ResumableDataLoader(range(24), batch_size=4,
                                 sampler=EpochSeededSampler(24, 0, num_replicas=3, rank=0))
    with pytest.warns(ResumeWarning, match="by 2 process\\(es\\), and this run has 3"):
        loader.load_state_dict({"epoch": 1, "samples_served": 6, "num_replicas": 2})
    # 12 samples of the epoch were served in all: 4 of each of the 3 shares now.
    loader.sampler.set_epoch(1)
    assert loader.sampler.pending_skip() == 4


@pytest.mark.parametrize("arguments, message", [
    ({"num_replicas": 0}, "num_replicas=0 must be a positive integer"),
    ({"num_replicas": 2, "rank": 2}, r"rank=2 must be an integer in \[0, num_replicas=2\)"),
])
def test_a_wrong_share_is_refused(arguments: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EpochSeededSampler(10, 0, **arguments)
