"""Evaluation under DDP (2 CPU processes, gloo) scores every validation/test sample exactly once:
the logged accuracy, loss and spike rates equal one process's on the same weights, for splits
that do not divide evenly between the ranks, on the in-memory and the streaming path; `predict`
writes one predictions.csv of the whole split, on rank 0, in the run's folder."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
import torch.multiprocessing as mp

from exodus_lightning.callbacks import PredictionWriter, predictions_from_csv
from exodus_lightning.data import RandmanDataModule, SHDDataModule
from exodus_lightning.data.fabricate import write_shd
from exodus_lightning.loggers import WandbLogger, wandb_files_dir
from exodus_lightning.models import FeedForwardSNN
from exodus_lightning.tasks import SpikingClassifier

WORLD_SIZE = 2
# Odd split sizes, so a padding DistributedSampler would repeat a sample; 25 per batch gives the
# ranks 26 and 25 samples: 2 batches and 1 (unequal batch counts must not hang DDP either).
RANDMAN = {"num_train_samples": 100, "num_val_samples": 51, "num_test_samples": 51,
           "batch_size": 25, "num_time_steps": 20}
# 51 training samples: a 10 % validation split of 5; 21 test samples.
SHD = {"num_time_steps": 20, "bin_width_ms": 50.0, "num_channels": 35, "batch_size": 4}


def randman(folder: Path) -> L.LightningDataModule:
    return RandmanDataModule(**RANDMAN)


def shd_streaming(folder: Path) -> L.LightningDataModule:
    return SHDDataModule(data_dir=folder / "raw", download=False, streaming=str(folder / "copy"),
                         **SHD)


def classifier(datamodule: L.LightningDataModule) -> SpikingClassifier:
    torch.manual_seed(0)
    network = FeedForwardSNN(datamodule.input_shape, datamodule.num_classes, hidden_sizes=[32],
                             spike_threshold=0.3)
    return SpikingClassifier(network, datamodule.num_classes)


def evaluation_metrics(trainer: L.Trainer, stage: str) -> dict[str, float]:
    """The epoch values logged by validate/test (callback_metrics after that call)."""
    return {name: float(value) for name, value in trainer.callback_metrics.items()
            if name.startswith((f"{stage}/", f"spike_rate/{stage}/"))}


def evaluate_as_rank(rank: int, port: int, folder: str, make_data: Callable) -> None:
    """One DDP rank: fit one short epoch (validating at its end), then validate and test."""
    torch.set_num_threads(1)
    # Lightning joins processes started outside it when LOCAL_RANK is set.
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), LOCAL_RANK=str(rank),
                      NODE_RANK="0")
    datamodule = make_data(Path(folder))
    model = classifier(datamodule)
    trainer = L.Trainer(
        accelerator="cpu", devices=WORLD_SIZE, strategy="ddp", max_epochs=1,
        limit_train_batches=2, num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(model, datamodule)
    results = {"fit": evaluation_metrics(trainer, "val")}
    trainer.validate(model, datamodule, verbose=False)
    results["validate"] = evaluation_metrics(trainer, "val")
    trainer.test(model, datamodule, verbose=False)
    results["test"] = evaluation_metrics(trainer, "test")
    if rank == 0:
        torch.save(model.state_dict(), Path(folder, "trained.pt"))
    Path(folder, f"rank{rank}.json").write_text(json.dumps(results))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def one_process(folder: Path, make_data: Callable) -> dict[str, dict[str, float]]:
    """validate and test of the weights the DDP ranks trained, in this process."""
    datamodule = make_data(folder)
    model = classifier(datamodule)
    model.load_state_dict(torch.load(folder / "trained.pt"))
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.validate(model, datamodule, verbose=False)
    results = {"validate": evaluation_metrics(trainer, "val")}
    trainer.test(model, datamodule, verbose=False)
    results["test"] = evaluation_metrics(trainer, "test")
    return results


@pytest.fixture
def shd_copy(tmp_path: Path) -> Path:
    pytest.importorskip("litdata")
    from exodus_lightning.data.prepare_copy import prepare_copy

    write_shd(tmp_path / "raw", num_train=51, num_test=21)
    prepare_copy(SHDDataModule(data_dir=tmp_path / "raw", download=False, **SHD),
                 str(tmp_path / "copy"), progress=False)
    return tmp_path


@pytest.mark.slow
@pytest.mark.parametrize("path", ["in_memory", "streaming"])
def test_ddp_evaluation_equals_one_process(path: str, tmp_path: Path, request) -> None:
    folder = request.getfixturevalue("shd_copy") if path == "streaming" else tmp_path
    make_data = shd_streaming if path == "streaming" else randman
    datamodule = make_data(folder)
    datamodule.setup("fit")
    datamodule.setup("test")
    assert len(datamodule.val_dataset) % 2 == 1 and len(datamodule.test_dataset) % 2 == 1

    # Forked, not spawned: the ranks need not import torch and lightning again.
    mp.start_processes(evaluate_as_rank, args=(free_port(), str(folder), make_data),
                       nprocs=WORLD_SIZE, start_method="fork")
    ranks = [json.loads((folder / f"rank{r}.json").read_text()) for r in range(WORLD_SIZE)]
    assert ranks[0] == ranks[1]  # synced: every rank logs the values of the whole split
    ddp = ranks[0]
    single = one_process(folder, make_data)

    # The validation at the end of the DDP epoch (which picks the best checkpoint) too.
    assert set(ddp["fit"]) == set(single["validate"])
    pairs = [("fit", name, value, single["validate"][name]) for name, value in ddp["fit"].items()]
    for stage in ("validate", "test"):
        assert set(ddp[stage]) == set(single[stage]) and any(
            name.startswith(f"spike_rate/{'val' if stage == 'validate' else stage}/")
            for name in single[stage])
        pairs += [(stage, name, ddp[stage][name], value) for name, value in single[stage].items()]
    differ = [
        (stage, name, two, one) for stage, name, two, one in pairs
        # correct / total over the same samples: exact; means: summed in another order
        if (two != one if name.endswith("/acc") else two != pytest.approx(one, rel=1e-5))
    ]
    assert not differ, "(stage, metric, 2 processes, 1 process):\n" + "\n".join(map(str, differ))


def test_a_split_smaller_than_the_process_count_is_refused() -> None:
    """Without padding, a rank would get no sample and wait forever for the others."""
    datamodule = RandmanDataModule(**{**RANDMAN, "num_val_samples": 3})
    datamodule.setup("fit")
    # What a DDP Trainer with 4 processes tells a DataModule it drives (rank 0's view).
    datamodule.trainer = SimpleNamespace(
        distributed_sampler_kwargs={"num_replicas": 4, "rank": 0},
        _accelerator_connector=SimpleNamespace(use_distributed_sampler=True))
    with pytest.raises(ValueError, match=r"validation split has 3 sample.*4 DDP processes"):
        datamodule.val_dataloader()
    datamodule.trainer.distributed_sampler_kwargs["num_replicas"] = 3
    assert len(datamodule.val_dataloader()) == 1  # one sample each


def predict_as_rank(rank: int, port: int, folder: str, logger_kind: str) -> None:
    """One DDP rank of `predict` with the PredictionWriter and a W&B (offline) or CSV logger."""
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), LOCAL_RANK=str(rank),
                      NODE_RANK="0", WANDB_MODE="offline", WANDB_SILENT="true")
    save_dir = str(Path(folder, "logs"))
    if logger_kind == "wandb":
        logger = WandbLogger(save_dir=save_dir, offline=True)
    else:
        logger = L.pytorch.loggers.CSVLogger(save_dir)
    datamodule = randman(Path(folder))
    trainer = L.Trainer(accelerator="cpu", devices=WORLD_SIZE, strategy="ddp", logger=logger,
                        callbacks=[PredictionWriter()], enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.predict(classifier(datamodule), datamodule, return_predictions=False)
    if logger_kind == "wandb" and rank == 0:
        Path(folder, "run_files.txt").write_text(str(wandb_files_dir(logger)))
        logger.experiment.finish()


@pytest.mark.slow
@pytest.mark.parametrize("logger_kind", ["wandb", "csv"])
def test_ddp_predict_writes_one_file_of_every_sample_in_the_run_folder(
        logger_kind: str, tmp_path: Path, capfd) -> None:
    if logger_kind == "wandb":
        wandb = pytest.importorskip("wandb")
        # A run an earlier test left active in this process would be inherited by the forked
        # ranks, and W&B would then put the ranks' run beside the working folder, not save_dir.
        if wandb.run is not None:
            wandb.finish()
    mp.start_processes(predict_as_rank, args=(free_port(), str(tmp_path), logger_kind),
                       nprocs=WORLD_SIZE, start_method="fork")
    written = sorted(tmp_path.rglob("predictions*.csv"))
    if logger_kind == "wandb":
        run_files = Path((tmp_path / "run_files.txt").read_text())
        assert run_files.parent.name.startswith("offline-run-")
        assert written == [run_files / "predictions.csv"]
    else:
        assert written == [tmp_path / "logs" / "lightning_logs" / "version_0" / "predictions.csv"]
    # Nothing in a folder named after another process's stand-in for the run.
    assert not [path for path in tmp_path.rglob("*") if "Dummy" in path.name]

    # Every test sample once, predicted as one process predicts it.
    datamodule = randman(tmp_path)
    model = classifier(datamodule)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False)
    expected = torch.cat([batch["predicted"] for batch in trainer.predict(model, datamodule)])
    columns = predictions_from_csv(written[0])
    assert columns["sample"].tolist() == list(range(RANDMAN["num_test_samples"]))
    assert torch.equal(columns["predicted"], expected)
    accuracy = (columns["predicted"] == columns["target"]).float().mean().item()
    printed = capfd.readouterr().out
    assert printed.count("=== predict finished ===") == 1
    assert f"{RANDMAN['num_test_samples']} predictions -> {written[0]}" in printed
    assert f"accuracy     {accuracy:.4f} ({RANDMAN['num_test_samples']} with targets)" in printed


def test_wandb_files_dir_refuses_a_process_without_the_run(tmp_path: Path, monkeypatch) -> None:
    """On DDP ranks other than 0, Lightning's W&B logger has a stand-in, not a run."""
    pytest.importorskip("wandb")
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    monkeypatch.setattr(rank_zero_only, "rank", 1)
    logger = WandbLogger(save_dir=str(tmp_path), offline=True)
    with pytest.raises(RuntimeError, match="no run in this process.*rank 0"):
        wandb_files_dir(logger)
    assert list(tmp_path.iterdir()) == []
