"""Resuming on the built-in/tonic path: a run resumed from a checkpoint written inside an epoch
continues with exactly the batches, and ends with exactly the parameters, of the uninterrupted
run; on one process and on 2 DDP processes (CPU, gloo). With random augmentation too: each
sample's draws depend on (seed, epoch, index) only."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from exodus_lightning.callbacks import LastCheckpoint
from exodus_lightning.data import RandmanDataModule, SHDDataModule
from exodus_lightning.data.collate import pad_time_collate
from exodus_lightning.data.sampler import EpochSeededSampler, ResumableDataLoader, ResumeWarning
from exodus_lightning.data.seeded_draws import EpochSeededSubset

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
        devices: int = 1, every_n_train_steps: int = 3, max_steps: int = -1,
        save_last: bool = False) -> Recorder:
    """3 epochs (or `max_steps` steps), every run saving a checkpoint every
    `every_n_train_steps` steps (and with `save_last`, the CLI's last.ckpt after every
    training epoch) into tmp_path/<tag>."""
    L.seed_everything(0)
    data = RandmanDataModule(**DATA, num_workers=num_workers, persistent_workers=False)
    model = Recorder(DATA["num_channels"], data.num_classes)
    if devices > 1:
        model.record_to = str(tmp_path / tag)
        (tmp_path / tag).mkdir()
    saver = ModelCheckpoint(dirpath=tmp_path / tag, filename="{step}", save_top_k=-1,
                            every_n_train_steps=every_n_train_steps)
    trainer = L.Trainer(
        max_epochs=3 if max_steps < 0 else -1, max_steps=max_steps, accelerator="cpu",
        devices=devices,
        strategy="ddp_spawn" if devices > 1 else "auto", logger=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
        limit_val_batches=0, num_sanity_val_steps=0,
        callbacks=[saver, LastCheckpoint(tmp_path / tag)] if save_last else [saver],
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


@pytest.mark.parametrize("part", [6, 9])
def test_a_run_stopped_by_max_steps_resumes_exactly(part: int, tmp_path: Path) -> None:
    """A job of `part` steps (6: one whole epoch; 9: half of the second) writing the CLI's
    last.ckpt, then a job resumed from it: Lightning then passes set_epoch one epoch more
    than the epoch it trains, so the shuffle must follow the Trainer's epoch."""
    straight = fit(tmp_path, "straight", max_steps=18)
    assert len(straight.seen) == 18
    fit(tmp_path, "part", max_steps=part, save_last=True)
    resumed = fit(tmp_path, "resumed", str(tmp_path / "part" / "last.ckpt"), max_steps=18)
    assert resumed.seen == straight.seen[part:]
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


# 40 fabricated SHD training recordings, 36 after the validation split: 6 batches of 6 per epoch.
AUGMENTED = {"num_time_steps": 25, "bin_width_ms": 40.0, "num_channels": 50, "batch_size": 6,
             "augmentations": ["drop_event", "time_jitter"]}


class InputRecorder(L.LightningModule):
    """A linear readout of spike counts that records a digest of every training batch's inputs,
    and a dropout mask drawn at every step."""

    def __init__(self, num_inputs: int, num_classes: int) -> None:
        super().__init__()
        self.readout = torch.nn.Linear(num_inputs, num_classes)
        self.seen: list[str] = []
        self.dropout_masks: list[list[float]] = []

    def training_step(self, batch, batch_index):
        inputs, targets = batch
        self.seen.append(hashlib.sha256(inputs.numpy().tobytes()).hexdigest())
        self.dropout_masks.append(torch.nn.functional.dropout(torch.ones(8), 0.5).tolist())
        return torch.nn.functional.cross_entropy(self.readout(inputs.sum(dim=1)), targets)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit_augmented(shd_root: Path, folder: Path, max_epochs: int, checkpoint: str | None = None,
                  num_workers: int = 0, **saver_settings) -> InputRecorder:
    """A Lightning run on augmented SHD started as LightningCLI starts one (seed_everything(0,
    workers=True)), saving checkpoints into `folder` with `saver_settings`."""
    L.seed_everything(0, workers=True, verbose=False)
    data = SHDDataModule(data_dir=str(shd_root), download=False, num_workers=num_workers,
                         **AUGMENTED)
    model = InputRecorder(AUGMENTED["num_channels"], data.num_classes)
    trainer = L.Trainer(
        max_epochs=max_epochs, accelerator="cpu", logger=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=folder, limit_val_batches=0,
        num_sanity_val_steps=0, callbacks=[ModelCheckpoint(dirpath=folder, **saver_settings)],
    )
    trainer.fit(model, datamodule=data, ckpt_path=checkpoint)
    return model


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resuming_with_augmentation_trains_on_the_same_inputs(
    num_workers: int, shd_root: Path, tmp_path: Path
) -> None:
    straight = fit_augmented(shd_root, tmp_path / "straight", 2, num_workers=num_workers,
                             filename="{step}", save_top_k=-1, every_n_train_steps=9)
    assert len(straight.seen) == 12 and len(set(straight.seen)) == 12  # every batch drew anew
    # Mid-epoch: step 9 is half-way through the second epoch.
    resumed = fit_augmented(shd_root, tmp_path / "resumed", 2,
                            str(tmp_path / "straight" / "step=9.ckpt"), num_workers)
    assert resumed.seen == straight.seen[9:]
    # At an epoch's end (the README's resume): a job of one epoch writes last.ckpt, the next
    # job resumes from it.
    first = fit_augmented(shd_root, tmp_path / "first", 1, num_workers=num_workers,
                          save_last=True)
    assert first.seen == straight.seen[:6]
    resumed = fit_augmented(shd_root, tmp_path / "next", 2, str(tmp_path / "first" / "last.ckpt"),
                            num_workers)
    assert resumed.seen == straight.seen[6:]
    # torch's generator, from which dropout draws its masks, is not in Lightning's checkpoints
    # (2.6): the resumed run starts it again from seed_everything and draws the masks of the
    # run's first steps again, not those the uninterrupted run drew (docs/cli.md says so).
    assert resumed.dropout_masks != straight.dropout_masks[6:]
    assert resumed.dropout_masks == straight.dropout_masks[:6]


def test_augmentation_draws_depend_on_seed_epoch_and_index_only(shd_root: Path) -> None:
    def epoch_of(epoch: int, num_workers: int = 0, seed: int = 0, num_replicas: int = 1,
                 rank: int = 0) -> dict[int, tuple[bytes, int]]:  # fmt: skip
        """Index in the split -> (frames, label) of the training samples one process reads in
        `epoch`, through a DataLoader as the training loader's (this process's share)."""
        data = SHDDataModule(data_dir=shd_root, download=False, seed=seed, **AUGMENTED)
        data.setup("fit")
        dataset = data.train_dataset
        assert isinstance(dataset, EpochSeededSubset)
        sampler = EpochSeededSampler(len(dataset), seed, num_replicas, rank, with_epoch=True)
        sampler.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(dataset, batch_size=6, sampler=sampler,
                                             num_workers=num_workers, collate_fn=pad_time_collate)
        np.random.seed(num_workers)  # noqa: NPY002 (the process's own state must not matter)
        frames = [(frame.numpy().tobytes(), int(label))
                  for inputs, targets in loader for frame, label in zip(inputs, targets)]
        indices = [dataset.indices[position] for position, _ in sampler]
        return dict(zip(indices, frames, strict=True))

    epoch_1 = epoch_of(1)
    assert len(epoch_1) == 36
    assert epoch_of(1, num_workers=2) == epoch_1
    # Under DDP each process draws for its share what one process draws for those samples.
    shares = [epoch_of(1, num_replicas=2, rank=rank) for rank in (0, 1)]
    assert {**shares[0], **shares[1]} == epoch_1
    # Another epoch or another seed draws anew.
    epoch_2, other_seed = epoch_of(2), epoch_of(1, seed=1)
    assert all(epoch_2[index] != epoch_1[index] for index in epoch_1)
    assert all(other_seed[index] != epoch_1[index] for index in epoch_1.keys() & other_seed)
    # The caller's own numpy generator is left where it was.
    data = SHDDataModule(data_dir=shd_root, download=False, **AUGMENTED)
    data.setup("fit")
    np.random.seed(5)  # noqa: NPY002
    expected = np.random.random()  # noqa: NPY002
    np.random.seed(5)  # noqa: NPY002
    data.train_dataset[(0, 1)]
    assert np.random.random() == expected  # noqa: NPY002


def test_without_augmentation_training_samples_leave_numpy_alone(shd_root: Path, monkeypatch
                                                                 ) -> None:
    """No random transform: reading a training sample neither seeds nor restores numpy's
    generator (~0.2 ms per sample), and gives the sample as the plain dataset has it."""
    plain = {key: value for key, value in AUGMENTED.items() if key != "augmentations"}
    data = SHDDataModule(data_dir=shd_root, download=False, **plain)
    data.setup("fit")
    dataset = data.train_dataset
    assert isinstance(dataset, EpochSeededSubset) and not dataset.draws

    def no_state_access(*args, **kwargs):
        raise AssertionError("numpy's global generator was touched")

    want = data.make_dataset("train")[dataset.indices[3]]
    monkeypatch.setattr(np.random, "get_state", no_state_access)
    monkeypatch.setattr(np.random, "set_state", no_state_access)
    monkeypatch.setattr(np.random, "seed", no_state_access)
    frames, label = dataset[(3, 2)]
    assert np.array_equal(np.asarray(frames), np.asarray(want[0])) and label == want[1]
    augmented = SHDDataModule(data_dir=shd_root, download=False, **AUGMENTED)
    augmented.setup("fit")
    assert augmented.train_dataset.draws
    with pytest.raises(AssertionError, match="generator was touched"):
        augmented.train_dataset[(3, 2)]
