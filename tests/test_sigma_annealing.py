"""SigmaAnnealing: σ of every DelayedLinear per training epoch, its epoch count, and warnings."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import pytest

from exodus_lightning import nn as enn
from exodus_lightning.callbacks import SigmaAnnealing
from exodus_lightning.models import DelaySNN, FeedForwardSNN
from exodus_lightning.tasks import SpikingClassifier
from tests.example_datamodule import BurstDataModule


class SigmaRecorder(L.Callback):
    """σ of every DelayedLinear at the first training batch of each epoch."""

    def __init__(self) -> None:
        self.sigmas: list[list[float]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == 0:
            self.sigmas.append([float(m.sigma) for m in pl_module.modules()
                                if isinstance(m, enn.DelayedLinear)])


def fit(network, callbacks, max_epochs, tmp_path):
    data = BurstDataModule(num_samples=16, batch_size=8)
    trainer = L.Trainer(max_epochs=max_epochs, callbacks=callbacks, accelerator="cpu",
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(SpikingClassifier(network, data.num_classes), datamodule=data)
    return trainer


def delay_network(sigma_init=4.0):
    return DelaySNN((8,), 4, hidden_sizes=(6,), max_delay=5, sigma_init=sigma_init,
                    sigma_final=0.25, backend="reference")


@pytest.mark.parametrize(
    ("schedule", "want"),
    [
        ("exponential", [4.0, 1.0, 0.25, 0.25, 0.25]),  # 4 · (1/16)^(e/2)
        ("linear", [4.0, 2.125, 0.25, 0.25, 0.25]),
    ],
)
def test_sigma_follows_the_schedule_over_epochs(schedule, want, tmp_path):
    recorder = SigmaRecorder()
    fit(delay_network(), [SigmaAnnealing(anneal_epochs=2, schedule=schedule), recorder], 5,
        tmp_path)
    for epoch, sigmas in enumerate(recorder.sigmas):
        assert len(sigmas) == 2  # the hidden and the readout delay layer
        assert sigmas == pytest.approx([want[epoch]] * 2), f"epoch {epoch}"


def test_sigma_offset_shrinks_only_the_rest_of_sigma(tmp_path):
    recorder = SigmaRecorder()
    fit(delay_network(), [SigmaAnnealing(anneal_epochs=2, sigma_offset=0.2), recorder], 4,
        tmp_path)
    # 0.2 + 3.8 · (0.05 / 3.8)^(e/2)
    want = [4.0, 0.2 + math.sqrt(3.8 * 0.05), 0.25, 0.25]
    assert [sigmas[0] for sigmas in recorder.sigmas] == pytest.approx(want)


@pytest.mark.parametrize("config", ["shd_delays", "ssc_delays"])
def test_delay_configs_anneal_sigma_as_the_authors(config):
    # SNN-delays' decrease_sig: SIG from max_delay // 2, times (0.23 / SIG_0)^(1/E) after each
    # epoch before E = epochs // 4; their Gaussian's width is SIG + 0.27.
    yaml = pytest.importorskip("yaml")
    path = Path(__file__).resolve().parents[1] / "configs" / f"{config}.yaml"
    settings = yaml.safe_load(path.read_text())
    network_args = settings["model"]["network"]["init_args"]
    (callback,) = settings["trainer"]["callbacks"]
    annealing = SigmaAnnealing(**callback.get("init_args", {}))

    class Trainer:
        max_epochs = settings["trainer"]["max_epochs"]

    max_delay = network_args.get("max_delay", 25)  # DelaySNN's default
    network = DelaySNN((8,), 4, hidden_sizes=(6,), max_delay=max_delay,
                       sigma_init=network_args["sigma_init"], backend="reference")
    layer = next(m for m in network.modules() if isinstance(m, enn.DelayedLinear))
    epochs = annealing.epochs(Trainer())
    sig, alpha = max_delay // 2, (0.23 / (max_delay // 2)) ** (1 / epochs)
    for epoch in range(Trainer.max_epochs):
        ours = layer.anneal_sigma(epoch / epochs, annealing.schedule, annealing.sigma_offset)
        assert ours == pytest.approx(sig + 0.27, rel=1e-12), f"epoch {epoch}"
        if epoch < epochs and sig > 0.23:
            sig *= alpha


def test_by_default_the_first_quarter_of_max_epochs(tmp_path):
    recorder = SigmaRecorder()
    fit(delay_network(sigma_init=2.0), [SigmaAnnealing(), recorder], 8, tmp_path)
    first = [sigmas[0] for sigmas in recorder.sigmas]
    assert first[:3] == pytest.approx([2.0, math.sqrt(2.0 * 0.25), 0.25])  # 8 / 4 = 2 epochs
    assert first[3:] == pytest.approx([0.25] * 5)


def test_the_default_epoch_count_rounds_down_as_the_authors():
    class Trainer:
        max_epochs = 150

    assert SigmaAnnealing().epochs(Trainer()) == 37  # 150 // 4
    assert SigmaAnnealing(fraction=0.5).epochs(Trainer()) == 75
    assert SigmaAnnealing(anneal_epochs=10).epochs(Trainer()) == 10


def test_without_delay_layers_it_warns(tmp_path):
    network = FeedForwardSNN((8,), 4, hidden_sizes=(6,), backend="reference")
    with pytest.warns(UserWarning, match="found no DelayedLinear"):
        fit(network, [SigmaAnnealing(anneal_epochs=1)], 1, tmp_path)


def test_without_max_epochs_it_needs_anneal_epochs(tmp_path):
    data = BurstDataModule(num_samples=16, batch_size=8)
    trainer = L.Trainer(max_epochs=-1, max_steps=2, callbacks=[SigmaAnnealing()],
                        accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, default_root_dir=tmp_path)
    with pytest.raises(ValueError, match="needs anneal_epochs"):
        trainer.fit(SpikingClassifier(delay_network(), data.num_classes), datamodule=data)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(anneal_epochs=-1), "anneal_epochs must be None or an integer >= 0"),
        (dict(anneal_epochs=2.5), "anneal_epochs must be None or an integer >= 0"),
        (dict(fraction=1.5), r"fraction must lie in \[0, 1\]"),
        (dict(schedule="cosine"), "schedule must be one of"),
        (dict(sigma_offset="0.27"), "sigma_offset must be a finite number"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SigmaAnnealing(**kwargs)


def test_a_sigma_offset_above_a_layers_sigma_final_fails_before_training(tmp_path):
    recorder = SigmaRecorder()
    with pytest.raises(ValueError, match="sigma_offset must be a finite number below"):
        fit(delay_network(), [SigmaAnnealing(sigma_offset=0.3), recorder], 2, tmp_path)
    assert recorder.sigmas == []
