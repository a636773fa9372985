"""Callbacks (spike rasters, run summary), figures, and the offline-by-default W&B logger."""

from __future__ import annotations

import functools

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from PIL import Image

from exodus_lightning.callbacks import RunSummary, SpikeRasterLogger, spike_raster_figure
from exodus_lightning.callbacks.figures import MAX_NEURONS_SHOWN, figure_to_image
from exodus_lightning.loggers import WandbLogger, wandb_credentials_found
from exodus_lightning.models import FeedForwardSNN
from exodus_lightning.tasks import SpikingClassifier
from tests.example_datamodule import BurstDataModule


@pytest.fixture
def no_wandb_credentials(tmp_path, monkeypatch):
    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    return tmp_path / "netrc"


def test_credentials_from_environment_or_netrc(no_wandb_credentials, monkeypatch):
    assert not wandb_credentials_found()
    no_wandb_credentials.write_text("machine example.com login user password secret\n")
    assert not wandb_credentials_found()
    no_wandb_credentials.write_text("machine api.wandb.ai login user password 0123456789\n")
    assert wandb_credentials_found()
    no_wandb_credentials.unlink()
    monkeypatch.setenv("WANDB_API_KEY", "0123456789")
    assert wandb_credentials_found()


def test_logger_is_offline_without_credentials(no_wandb_credentials, tmp_path, monkeypatch):
    assert WandbLogger(save_dir=str(tmp_path))._offline is True
    monkeypatch.setenv("WANDB_API_KEY", "0123456789")
    assert WandbLogger(save_dir=str(tmp_path))._offline is False
    assert WandbLogger(save_dir=str(tmp_path), offline=True)._offline is True
    monkeypatch.delenv("WANDB_API_KEY")
    monkeypatch.setenv("WANDB_MODE", "disabled")  # an explicit mode is left to wandb
    assert WandbLogger(save_dir=str(tmp_path))._offline is False


def test_raster_shows_at_most_max_neurons():
    spikes = torch.zeros(10, 1000)
    spikes[3, 999] = 1.0
    figure = spike_raster_figure({"input": torch.ones(10, 4), "big": spikes}, "title")
    axes = figure.axes
    assert len(axes) == 2
    assert axes[1].get_ylim()[1] == pytest.approx(MAX_NEURONS_SHOWN - 0.5)
    points = axes[1].collections[0].get_offsets()
    assert points.tolist() == [[3, MAX_NEURONS_SHOWN - 1]]  # the last neuron is kept
    assert len(axes[0].collections[0].get_offsets()) == 40
    image = figure_to_image(figure)
    assert isinstance(image, Image.Image) and image.size[0] > 100


def fit_burst_task(tmp_path, max_epochs: int, callbacks: list) -> tuple:
    data = BurstDataModule(num_classes=3, num_channels=5, num_time_steps=12, num_samples=32)
    network = FeedForwardSNN(data.input_shape, data.num_classes, hidden_sizes=(8,),
                             spike_threshold=0.3)
    model = SpikingClassifier(network, data.num_classes,
                              optimizer=functools.partial(torch.optim.Adam, lr=0.01))
    trainer = L.Trainer(max_epochs=max_epochs, accelerator="cpu", callbacks=callbacks,
                        logger=CSVLogger(tmp_path), enable_progress_bar=False,
                        enable_model_summary=False, log_every_n_steps=1,
                        default_root_dir=tmp_path)
    trainer.fit(model, data)
    return trainer, model, data


def test_spike_rasters_are_saved_every_n_epochs_without_an_image_logger(tmp_path):
    trainer, _, _ = fit_burst_task(tmp_path, 3, [SpikeRasterLogger(every_n_epochs=2)])
    pngs = sorted(p.name for p in tmp_path.rglob("spike_raster/*.png"))
    assert [name.split("-")[0] for name in pngs] == ["epoch=0", "epoch=2"]
    image = Image.open(next(tmp_path.rglob("spike_raster/*.png")))
    assert image.size[1] > image.size[0] / 4  # two panels: input and the hidden layer


def test_run_summary_prints_metrics_logs_and_checkpoints(tmp_path, capsys):
    checkpoint = ModelCheckpoint(monitor="val/acc", mode="max", save_last=True)
    trainer, model, data = fit_burst_task(tmp_path, 2, [checkpoint, RunSummary()])
    printed = capsys.readouterr().out
    assert "=== fit finished ===" in printed
    assert f"val/acc      {float(trainer.callback_metrics['val/acc']):.4f}" in printed
    assert f"best checkpoint: {checkpoint.best_model_path}" in printed
    assert f"last checkpoint: {checkpoint.last_model_path}" in printed
    assert "metrics.csv" in printed and "spike rates  layers.2=" in printed
    trainer.test(model, data)
    printed = capsys.readouterr().out
    assert "=== test finished ===" in printed and "confusion matrix ->" in printed
    assert list(tmp_path.rglob("test_confusion_matrix/*.png"))


def test_every_n_epochs_must_be_positive():
    with pytest.raises(ValueError, match="every_n_epochs"):
        SpikeRasterLogger(every_n_epochs=0)
