"""Callbacks (spike rasters, spike activity, progress, predictions, run summary), figures, and
the offline-by-default W&B logger."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from unittest import mock

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from PIL import Image

from exodus_lightning import nn as enn
from exodus_lightning.callbacks import (
    LastCheckpoint,
    PredictionWriter,
    ProgressBar,
    RunSummary,
    SpikeActivityCheck,
    SpikeActivityWarning,
    SpikeRasterLogger,
    predictions_from_csv,
    spike_raster_figure,
)
from exodus_lightning.callbacks.figures import (
    MAX_CLASSES_ANNOTATED,
    MAX_NEURONS_SHOWN,
    confusion_matrix_figure,
    figure_to_image,
)
from exodus_lightning.callbacks.spike_activity import saturated_layer_advice, silent_layer_advice
from exodus_lightning.loggers import WandbLogger, wandb_credentials_found, wandb_files_dir
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


@pytest.mark.parametrize("offline", [None, True], ids=["no_key", "offline"])
def test_log_model_offline_warns_and_uploads_nothing(offline, no_wandb_credentials, tmp_path):
    """configs/logger/wandb.yaml offers log_model: true; Lightning refuses it offline, which
    without a key is the default, so it would end the run."""
    with pytest.warns(UserWarning, match="log_model=True is ignored: this run is recorded "
                                         "offline"):
        logger = WandbLogger(save_dir=str(tmp_path), offline=offline, log_model=True)
    assert logger._offline is True and logger._log_model is False


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


def fit_burst_task(tmp_path, max_epochs: int, callbacks: list, lr: float = 0.01) -> tuple:
    data = BurstDataModule(num_classes=3, num_channels=5, num_time_steps=12, num_samples=32)
    network = FeedForwardSNN(data.input_shape, data.num_classes, hidden_sizes=(8,),
                             spike_threshold=0.3)
    model = SpikingClassifier(network, data.num_classes,
                              optimizer=functools.partial(torch.optim.Adam, lr=lr))
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


def test_last_checkpoint_is_the_last_epoch_beside_a_best_that_stopped_improving(tmp_path):
    """lr 0: val/acc never improves after epoch 0. The best stays epoch 0; last.ckpt, in the same
    folder, is epoch 2 (a monitored callback's save_last gives epoch 0 since Lightning 2.6)."""
    best = ModelCheckpoint(tmp_path / "checkpoints", monitor="val/acc", mode="max")
    last = LastCheckpoint(tmp_path / "checkpoints")
    trainer, _, _ = fit_burst_task(tmp_path, 3, [best, last, RunSummary()], lr=0.0)
    assert torch.load(best.best_model_path, weights_only=True)["epoch"] == 0
    assert last.path == str(tmp_path / "checkpoints" / "last.ckpt")
    saved = torch.load(last.path, weights_only=True)
    assert (saved["epoch"], saved["global_step"]) == (2, trainer.global_step)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        Path(best.best_model_path).name, "last.ckpt"]


def test_run_summary_prints_metrics_logs_and_checkpoints(tmp_path, capsys):
    checkpoint = ModelCheckpoint(monitor="val/acc", mode="max", save_last=True)
    trainer, model, data = fit_burst_task(tmp_path, 2, [checkpoint, RunSummary()])
    printed = capsys.readouterr().out
    assert "=== fit finished ===" in printed
    assert f"val/acc      {float(trainer.callback_metrics['val/acc']):.4f}" in printed
    assert f"best checkpoint: {checkpoint.best_model_path}" in printed
    assert f"last checkpoint: {checkpoint.last_model_path}" in printed
    assert "metrics.csv" in printed
    rates = re.search(r"spike rates  (.*)", printed).group(1)
    assert re.fullmatch(r"train/layers\.2=0\.\d{3}, val/layers\.2=0\.\d{3}", rates), rates
    summary = json.loads((Path(trainer.logger.log_dir) / "summary.json").read_text())["fit"]
    assert {"spike_rate/train/layers.2", "spike_rate/val/layers.2"} <= set(summary["final"])
    assert not [name for name in summary["best"] if "spike_rate" in name]
    trainer.test(model, data)
    printed = capsys.readouterr().out
    assert "=== test finished ===" in printed and "confusion matrix ->" in printed
    assert list(tmp_path.rglob("test_confusion_matrix/*.png"))


def test_run_summary_names_the_confusion_matrix_file_that_wandb_wrote(workdir, capsys):
    """With W&B, the test summary gives the PNG in the run's folder, not the logger's name."""
    data = BurstDataModule(num_classes=3, num_channels=5, num_time_steps=12, num_samples=32)
    network = FeedForwardSNN(data.input_shape, data.num_classes, hidden_sizes=(8,))
    model = SpikingClassifier(network, data.num_classes)
    logger = WandbLogger(save_dir=str(workdir), offline=True)
    trainer = L.Trainer(accelerator="cpu", logger=logger, callbacks=[RunSummary()],
                        enable_progress_bar=False, enable_model_summary=False)
    try:
        trainer.test(model, data)
    finally:
        logger.experiment.finish()
    printed = capsys.readouterr().out
    path = Path(re.search(r"confusion matrix -> (.+)", printed).group(1))
    assert path.is_file() and path.suffix == ".png"
    assert path.is_relative_to(wandb_files_dir(logger) / "media" / "images")
    assert path.name.startswith("confusion_matrix_")
    image = figure_to_image(confusion_matrix_figure(model.test_confusion_matrix))
    assert Image.open(path).size == image.size


def test_confusion_matrix_figure_writes_counts_while_they_fit():
    axis = confusion_matrix_figure(torch.tensor([[3, 1], [0, 4]])).axes[0]
    assert [text.get_text() for text in axis.texts] == ["3", "1", "0", "4"]
    assert (axis.get_xlabel(), axis.get_ylabel()) == ("Predicted class", "True class")
    many = MAX_CLASSES_ANNOTATED + 1
    assert not confusion_matrix_figure(torch.ones(many, many, dtype=torch.long)).axes[0].texts


def test_every_n_epochs_must_be_positive():
    with pytest.raises(ValueError, match="every_n_epochs"):
        SpikeRasterLogger(every_n_epochs=0)


def burst_classifier(**network_kwargs) -> tuple[BurstDataModule, SpikingClassifier]:
    data = BurstDataModule(num_classes=3, num_channels=5, num_time_steps=12, num_samples=32)
    network = FeedForwardSNN(data.input_shape, data.num_classes, hidden_sizes=(8,),
                             **network_kwargs)
    return data, SpikingClassifier(network, data.num_classes,
                                   optimizer=functools.partial(torch.optim.Adam, lr=0.01))


def fit_quietly(tmp_path, model, data, callbacks, max_epochs: int = 1) -> L.Trainer:
    trainer = L.Trainer(max_epochs=max_epochs, accelerator="cpu", callbacks=callbacks,
                        logger=False, enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, default_root_dir=tmp_path)
    trainer.fit(model, data)
    return trainer


def test_silent_spiking_layer_is_named_with_what_to_change(tmp_path):
    """The README's first network: sinabs' norm_input=True scales the input by 1 - exp(-1/τ)."""
    data, model = burst_classifier(spike_threshold=1.0, norm_input=True, tau_mem=10.0)
    with pytest.warns(SpikeActivityWarning) as warned:
        fit_quietly(tmp_path, model, data, [SpikeActivityCheck()], max_epochs=2)
    ours = [w for w in warned if issubclass(w.category, SpikeActivityWarning)]
    assert len(ours) == 1  # after the first epoch only
    message = str(ours[0].message)
    assert "spiking layer 'layers.2' (LIF) was silent in the first training epoch" in message
    assert "lower spike_threshold (now 1)" in message
    assert "set norm_input=False (it scales the layer's input by 1 - exp(-1/tau_mem) = 0.095)" \
        in message


def test_saturated_spiking_layer_is_named_with_what_to_change(tmp_path):
    data, model = burst_classifier(spike_threshold=1e-3)
    with torch.no_grad():
        model.network.layers[1].bias.fill_(5.0)  # every neuron far above threshold every step
    with pytest.warns(SpikeActivityWarning, match=r"'layers.2' \(LIF\) saturated .* raise "
                                                  r"spike_threshold \(now 0.001\), set "
                                                  r"max_spikes_per_step=1"):
        fit_quietly(tmp_path, model, data, [SpikeActivityCheck()])


def test_an_active_layer_gives_no_spike_activity_warning(tmp_path, recwarn):
    data, model = burst_classifier(spike_threshold=0.3)
    fit_quietly(tmp_path, model, data, [SpikeActivityCheck()])
    assert not [w for w in recwarn if issubclass(w.category, SpikeActivityWarning)]


def test_spike_activity_check_arguments_are_checked():
    with pytest.raises(ValueError, match="min_rate"):
        SpikeActivityCheck(min_rate=-1)
    with pytest.raises(ValueError, match="max_rate"):
        SpikeActivityCheck(min_rate=0.5, max_rate=0.1)


def test_progress_bar_keeps_validation_accuracy_within_80_columns():
    bar = ProgressBar(interactive=True)
    trainer = mock.Mock(progress_bar_metrics={
        "v_num": "abcd", "train/loss_step": 0.01842, "train/loss_epoch": 0.06181,
        "train/acc": 0.98712, "val/loss": 0.06951, "val/acc": 0.98251,
        "spike_rate/train/layers.2": 0.037})
    metrics = bar.get_metrics(trainer, None)
    assert list(metrics)[:4] == ["val/acc", "val/loss", "train/loss", "train/acc"]
    assert "v_num" not in metrics and metrics["train/loss"] == "0.01842"  # the latest step
    tqdm_bar = bar.init_train_tqdm()
    tqdm_bar.dynamic_ncols = lambda stream: (80, 24)  # as if on an 80 x 24 terminal
    tqdm_bar.total = 391
    tqdm_bar.n = 390
    tqdm_bar.set_description("Epoch 10")
    tqdm_bar.set_postfix(metrics, refresh=False)
    line = str(tqdm_bar)
    assert len(line) <= 80 and "val/acc=0.9825" in line, line
    tqdm_bar.close()


def test_progress_without_a_terminal_is_one_line_per_epoch(tmp_path, capsys):
    data, model = burst_classifier(spike_threshold=0.3)
    trainer = L.Trainer(max_epochs=3, accelerator="cpu", logger=False,
                        callbacks=[ProgressBar(interactive=False)], enable_model_summary=False,
                        enable_checkpointing=False, default_root_dir=tmp_path)
    trainer.fit(model, data)
    output = capsys.readouterr().out
    lines = output.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["Epoch 0", "Epoch 1", "Epoch 2"], output
    assert "\r" not in output
    last = {name: float(value) for name, value in
            (item.split("=") for item in lines[-1].split(": ", 1)[1].split(" (")[0].split())}
    assert last["val/acc"] == pytest.approx(float(trainer.callback_metrics["val/acc"]), abs=1e-4)
    assert last["train/loss"] == pytest.approx(
        float(trainer.callback_metrics["train/loss_epoch"]), rel=1e-3)


def test_run_summary_writes_final_and_best_metrics_to_the_run_folder(tmp_path):
    data, model = burst_classifier(spike_threshold=0.3)
    summary = RunSummary()
    summary.config = {"model": {"lr": 0.01}}
    val_acc = []

    class Record(L.Callback):
        def on_validation_epoch_end(self, trainer, pl_module):
            if not trainer.sanity_checking:
                val_acc.append(float(trainer.callback_metrics["val/acc"]))

    trainer = L.Trainer(max_epochs=3, accelerator="cpu", logger=CSVLogger(tmp_path),
                        callbacks=[Record(), summary], enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False,
                        default_root_dir=tmp_path)
    trainer.fit(model, data)
    path = Path(trainer.logger.log_dir) / "summary.json"
    fit = json.loads(path.read_text())["fit"]
    assert fit["final"]["val/acc"] == pytest.approx(val_acc[-1])
    assert fit["best"]["val/acc"] == {"value": pytest.approx(max(val_acc)),
                                      "epoch": val_acc.index(max(val_acc))}
    assert fit["epochs"] == 3 and fit["config"] == {"model": {"lr": 0.01}}
    trainer.test(model, data)
    both = json.loads(path.read_text())
    assert set(both) == {"fit", "test"} and "test/acc" in both["test"]["final"]


def test_prediction_writer_needs_a_run_folder_or_uses_the_root(tmp_path, capsys):
    data, model = burst_classifier(spike_threshold=0.3)
    writer = PredictionWriter()
    trainer = L.Trainer(accelerator="cpu", logger=False, callbacks=[writer],
                        enable_progress_bar=False, default_root_dir=tmp_path)
    trainer.predict(model, data)
    assert writer.path == tmp_path / "predictions.csv"
    columns = predictions_from_csv(writer.path)
    assert len(columns["sample"]) == 32 and torch.equal(columns["target"],
                                                        torch.arange(32) % 3)
    assert "32 predictions ->" in capsys.readouterr().out


def test_importing_the_callbacks_leaves_the_matplotlib_backend_alone():
    import subprocess
    import sys

    code = ("import matplotlib; matplotlib.use('svg'); import exodus_lightning.callbacks; "
            "from exodus_lightning.callbacks import figures; import torch; "
            "figures.figure_to_image(figures.spike_raster_figure({'l': torch.ones(4, 3)})); "
            "print(matplotlib.get_backend())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "svg"


def test_activity_advice_names_the_threshold_argument_of_each_layer():
    """ALIF's spike_threshold state is the adapted threshold; adLIF's argument is threshold."""
    alif = enn.ALIF(tau_mem=5.0, tau_adapt=10.0, spike_threshold=0.5)
    assert silent_layer_advice(alif).startswith("lower spike_threshold (now 0.5)")
    adlif = enn.adLIF(4, threshold=2.0)
    assert saturated_layer_advice(adlif).startswith("raise threshold (now 2), or scale down")


def test_nir_export_takes_the_best_checkpoint_not_last_ckpt(tmp_path):
    from types import SimpleNamespace

    from exodus_lightning.callbacks.nir_export import best_checkpoint_path

    last, best = LastCheckpoint(dirpath=tmp_path), ModelCheckpoint(monitor="val/acc", mode="max")
    last.best_model_path, best.best_model_path = str(tmp_path / "last.ckpt"), "epoch=0.ckpt"
    trainer = SimpleNamespace(checkpoint_callbacks=[last, best])
    assert best_checkpoint_path(trainer) == "epoch=0.ckpt"
    trainer.checkpoint_callbacks = [last]  # no monitored callback: the last epoch's
    assert best_checkpoint_path(trainer) == str(tmp_path / "last.ckpt")
