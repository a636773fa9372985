"""NonFiniteGuard stops training at the first NaN/inf, naming the tensor and the step."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.plugins.precision import MixedPrecision
from torch.utils.data import DataLoader, TensorDataset

from exodus_lightning import nn as enn
from exodus_lightning.callbacks import NonFiniteError, NonFiniteGuard


class Tiny(L.LightningModule):
    """Linear → LIF; `poison` says what turns non-finite at training step 3."""

    def __init__(self, poison: str | None = None):
        super().__init__()
        self.fc = torch.nn.Linear(4, 6)
        self.lif = enn.LIF(tau_mem=5.0, spike_threshold=0.5)
        self.poison = poison

    def training_step(self, batch, batch_idx):
        (x,) = batch
        if self.poison == "input" and self.global_step == 3:
            x = x.clone()
            x[0, 0, 0] = float("nan")
        self.lif.reset_states()
        loss = self.lif(self.fc(x)).mean() + self.fc.weight.square().mean()
        if self.global_step == 3:
            with torch.no_grad():
                if self.poison == "parameter":
                    self.fc.bias[2] = float("inf")
                if self.poison == "state":
                    self.lif.v_mem[0, 1] = float("nan")
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def fit(model: L.LightningModule, guard: NonFiniteGuard | None, tmp_path, plugins=None
        ) -> L.Trainer:
    data = DataLoader(TensorDataset(torch.rand(40, 7, 4) * 2), batch_size=4)
    callbacks = [guard] if guard else []
    trainer = L.Trainer(max_epochs=1, callbacks=callbacks, logger=False, plugins=plugins,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, data)
    return trainer


def fp16_mixed_precision() -> MixedPrecision:
    """precision="16-mixed" as on a GPU: Lightning's own plugin and gradient scaler (on the
    CPU, where Lightning would pick bf16 without a scaler)."""
    return MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu"))


class Overflowing(Tiny):
    """Its scaled gradients overflow float16 until the scaler has lowered its scale (65536 at
    first) below about 260; the unscaled ones are small."""

    def training_step(self, batch, batch_idx):
        (x,) = batch
        return self.fc(x).float().mean() * 1000.0


@pytest.mark.parametrize(("poison", "message"), [
    ("input", r"non-finite gradient of 'fc\.weight' at epoch 0, step 3"),
    ("parameter", r"non-finite parameter 'fc\.bias' at epoch 0, step 3"),
    ("state", r"non-finite layer state 'lif\.v_mem' at epoch 0, step 3"),
])
def test_the_first_non_finite_tensor_stops_the_run_by_name(poison, message, tmp_path):
    with pytest.raises(NonFiniteError, match=message):
        fit(Tiny(poison), NonFiniteGuard(), tmp_path)


def test_finite_training_is_untouched_and_the_guard_can_be_off(tmp_path):
    fit(Tiny(), NonFiniteGuard(), tmp_path)
    fit(Tiny("state"), NonFiniteGuard(every_n_steps=0), tmp_path)
    with pytest.raises(ValueError, match="every_n_steps"):
        NonFiniteGuard(every_n_steps=-1)


def test_fp16_mixed_precision_overflow_steps_are_left_to_the_gradient_scaler(tmp_path):
    """The scaler skips the steps whose scaled gradients overflow and lowers its scale; the
    guard must not stop the run there (it did: 'non-finite gradient ... step 0')."""
    model = Overflowing()
    trainer = fit(model, NonFiniteGuard(), tmp_path, plugins=[fp16_mixed_precision()])
    assert trainer.precision_plugin.scaler.get_scale() < 65536.0 / 2**7  # it did overflow
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())


class NaNGradients(Tiny):
    """A finite loss whose backward pass makes NaN gradients at any scale."""

    def training_step(self, batch, batch_idx):
        (x,) = batch
        # sqrt at 0: a finite value (0), an infinite derivative, times the 0 of x · 0: NaN.
        return (self.fc(x).float() * 0.0).abs().sqrt().mean()


def test_fp16_mixed_precision_stops_when_the_scaler_skips_every_step(tmp_path):
    """The scaler would skip every step forever (nothing trains, silently); the guard stops
    the run once its scale has fallen below MIN_GRADIENT_SCALE."""
    data = DataLoader(TensorDataset(torch.rand(200, 7, 4)), batch_size=4)
    trainer = L.Trainer(max_epochs=1, callbacks=[NonFiniteGuard()], logger=False,
                        plugins=[fp16_mixed_precision()], enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path)
    with pytest.raises(NonFiniteError, match=r"the gradient scaler's scale fell to .* step 30:"):
        trainer.fit(NaNGradients(), data)


@pytest.mark.parametrize(("poison", "message"), [
    ("input", r"non-finite training loss at epoch 0, step 3"),
    ("parameter", r"non-finite parameter 'fc\.bias' at epoch 0, step 3"),
])
def test_fp16_mixed_precision_runs_still_stop_at_non_finite_values(poison, message, tmp_path):
    with pytest.raises(NonFiniteError, match=message):
        fit(Tiny(poison), NonFiniteGuard(), tmp_path, plugins=[fp16_mixed_precision()])


def test_the_cli_guards_every_run_by_default(tmp_path, monkeypatch):
    from exodus_lightning.cli import build_cli

    monkeypatch.chdir(tmp_path)
    guards = [c for c in build_cli([], run=False).trainer.callbacks
              if isinstance(c, NonFiniteGuard)]
    assert len(guards) == 1 and guards[0].every_n_steps == 1
    off = build_cli(["--non_finite_guard.every_n_steps", "0"], run=False)
    assert [c.every_n_steps for c in off.trainer.callbacks if isinstance(c, NonFiniteGuard)] == [0]


def test_a_diverging_cli_run_ends_in_one_line(tmp_path, monkeypatch, capsys):
    from exodus_lightning import cli

    monkeypatch.chdir(tmp_path)
    # IAF neurons and a linear readout: no time constant, which a huge learning rate would
    # drive below 0 first (the layer then stops the run with nn.ParameterRangeError).
    monkeypatch.setattr("sys.argv", ["exodus-lightning", "fit", "--trainer.max_epochs", "1",
                                     "--trainer.logger", "false",
                                     "--model.network.init_args.neuron", "iaf",
                                     "--model.network.init_args.readout", "linear",
                                     "--model.optimizer.init_args.lr", "1e30"])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("exodus-lightning fit: error: non-finite ") and "step" in err


def test_a_time_constant_trained_below_zero_ends_the_cli_run_in_one_line(tmp_path, monkeypatch,
                                                                         capsys):
    """A huge learning rate drives tau_mem below 0: one line naming it, exit 1, no traceback."""
    from exodus_lightning import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["exodus-lightning", "fit", "--trainer.max_epochs", "1",
                                     "--trainer.logger", "false",
                                     "--model.optimizer.init_args.lr", "1e30"])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err)
    assert err[-1].startswith("exodus-lightning fit: error: ") and "tau_mem" in err[-1], err[-1]
