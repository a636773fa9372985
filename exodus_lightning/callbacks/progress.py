"""Progress reporting: a compact bar on a terminal, one line per epoch in logs."""

from __future__ import annotations

import sys
import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar

# Shown first, so that an 80-column terminal, which cuts the bar's right end, still shows them.
LEADING_METRICS = ("val/acc", "val/loss", "train/loss", "train/acc")


def _epoch_metrics(progress_bar_metrics: dict[str, Any]) -> dict[str, float]:
    """Metric name -> value, epoch means under their plain names (train/loss_epoch ->
    train/loss), per-step values dropped; LEADING_METRICS first, the rest sorted."""
    values = {}
    for name, value in progress_bar_metrics.items():
        if name.endswith("_step") or name == "v_num":
            continue
        values[name.removesuffix("_epoch")] = float(value)
    leading = [name for name in LEADING_METRICS if name in values]
    return {name: values[name] for name in leading + sorted(set(values) - set(leading))}


def _format(value: float) -> str:
    return f"{value:.4g}"


class ProgressBar(TQDMProgressBar):
    """On a terminal: Lightning's tqdm bar with val/acc and val/loss first, no version number
    or step rate, and a 10-character bar, so the metrics fit in 80 columns.

    Elsewhere (stdout redirected to a file: SLURM, nohup, CI) the bars are off, since every
    refresh would become a line of the log; instead each training epoch prints one line:
    "Epoch 3: train/loss=0.1234 train/acc=0.95 val/loss=0.09 val/acc=0.97 (1.6 s)".
    """

    BAR_FORMAT = "{l_bar}{bar:10}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]"

    def __init__(self, refresh_rate: int = 1, interactive: bool | None = None) -> None:
        """interactive: draw bars (True) or print epoch lines (False); None: bars if stdout
        is a terminal."""
        super().__init__(refresh_rate=refresh_rate)
        self.interactive = sys.stdout.isatty() if interactive is None else bool(interactive)
        # None until an epoch starts: a run resumed at an epoch's end only finishes that epoch.
        self._epoch_started: float | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if not self.interactive:
            self.disable()

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        """The bar's metrics: LEADING_METRICS first, the training loss of the latest step."""
        metrics = trainer.progress_bar_metrics
        values = _epoch_metrics(metrics)
        if "train/loss_step" in metrics:  # within an epoch the latest step says more
            values["train/loss"] = float(metrics["train/loss_step"])
        return {name: _format(value) for name, value in values.items()}

    def on_train_epoch_start(self, trainer: L.Trainer, *args: Any) -> None:
        super().on_train_epoch_start(trainer, *args)
        self._epoch_started = time.monotonic()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if not self.interactive and trainer.is_global_zero:
            print(self.epoch_line(trainer), flush=True)

    def epoch_line(self, trainer: L.Trainer) -> str:
        """One log line for the epoch that just ended: its metrics and wall time."""
        metrics = " ".join(f"{name}={_format(value)}"
                           for name, value in _epoch_metrics(trainer.progress_bar_metrics).items())
        if self._epoch_started is None:
            return f"Epoch {trainer.current_epoch}: {metrics}"
        seconds = time.monotonic() - self._epoch_started
        return f"Epoch {trainer.current_epoch}: {metrics} ({seconds:.1f} s)"
