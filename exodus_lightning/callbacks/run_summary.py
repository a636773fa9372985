"""Callback: print final metrics, log and checkpoint locations when a run ends, and leave a
readable summary.json (final and best metrics, checkpoints, config) in the run's folder."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from exodus_lightning.callbacks.figures import confusion_matrix_figure, log_figure
from exodus_lightning.callbacks.last_checkpoint import LastCheckpoint
from exodus_lightning.loggers import wandb_files_dir

SUMMARY_FILE_NAME = "summary.json"
# SpikingClassifier's spike rates: spike_rate/<stage>/<layer name>.
SPIKE_RATE_PREFIX = "spike_rate/"


def run_folder(trainer: L.Trainer) -> Path | None:
    """The folder of this run's files: the W&B run's files folder (uploaded with the run),
    else the first logger's log_dir; None without a logger (nothing to attach files to)."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            return wandb_files_dir(logger)
    for logger in trainer.loggers:
        # Not trainer.log_dir: it broadcasts, and callers run on rank zero only.
        log_dir = getattr(logger, "log_dir", None)
        if isinstance(log_dir, (str, Path)):
            return Path(log_dir)
    return None


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    """Epoch-level scalar metrics by name (Lightning's *_step/*_epoch twins left out)."""
    return {
        name: float(value)
        for name, value in sorted(metrics.items())
        if value.numel() == 1 and not name.endswith(("_step", "_epoch"))
    }


def _better(name: str, value: float, best: float) -> bool:
    """Accuracies are best when highest, everything else (losses) when lowest."""
    return value > best if "acc" in name else value < best


class RunSummary(L.Callback):
    """At the end of fit/validate/test: metrics, where logs and checkpoints are, the confusion
    matrix after test (logged as "test/confusion_matrix" when the module computed one).

    Also writes `summary.json` into the run's folder (see `run_folder`), one entry per stage:
    the final metrics, for fit the best value of every validation metric with its epoch (of the
    whole training: a resumed fit restores the best of the epochs before it from the
    checkpoint), the checkpoints, and `config` (the CLI sets it to the resolved configuration).
    W&B offline runs otherwise keep their metrics only in the binary .wandb file.
    """

    def __init__(self) -> None:
        super().__init__()
        self.config: dict[str, Any] | None = None
        self.best: dict[str, dict[str, float]] = {}

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            # Before a resumed fit restores the best of the epochs before it (load_state_dict).
            self.best = {}

    def state_dict(self) -> dict[str, Any]:
        """The best value and epoch of every validation metric so far: saved in checkpoints, so
        that the summary of a resumed fit covers the whole training."""
        return {"best": {name: dict(entry) for name, entry in self.best.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = {name: dict(entry) for name, entry in state_dict.get("best", {}).items()}

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        for name, value in _scalars(trainer.callback_metrics).items():
            if not name.startswith("val/") or math.isnan(value):
                continue
            best = self.best.get(name)
            if best is None or _better(name, value, best["value"]):
                self.best[name] = {"value": value, "epoch": trainer.current_epoch}

    @rank_zero_only
    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "predict" or trainer.sanity_checking:
            return
        stage = getattr(stage, "value", stage)
        lines = [f"\n=== {stage} finished ==="]
        metrics = {name: value for name, value in _scalars(trainer.callback_metrics).items()
                   if not name.startswith(SPIKE_RATE_PREFIX)}
        lines += [f"  {name:<12} {value:.4f}" for name, value in metrics.items()]
        # spike_rate/<stage>/<layer>: after fit, the training epoch's and the validation's.
        rates = {n: float(v) for n, v in trainer.callback_metrics.items()
                 if n.startswith(SPIKE_RATE_PREFIX)}
        if rates:
            lines.append("  spike rates  " + ", ".join(
                f"{n.removeprefix(SPIKE_RATE_PREFIX)}={v:.3f}" for n, v in sorted(rates.items())))
        matrix = getattr(pl_module, "test_confusion_matrix", None)
        if stage == "test" and matrix is not None:
            where = log_figure(trainer, "test/confusion_matrix", confusion_matrix_figure(matrix))
            lines.append(f"  confusion matrix -> {', '.join(where)}")
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                run_dir = str(wandb_files_dir(logger)).removesuffix("/files")
                lines.append(f"  W&B run:     {run_dir}")
            elif isinstance(logger, CSVLogger):
                lines.append(f"  metrics CSV: {logger.log_dir}/metrics.csv")
        checkpoints = {}
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, LastCheckpoint) and stage == "fit" and callback.path:
                lines.append(f"  last checkpoint: {callback.path}")
                checkpoints["last"] = callback.path
            elif isinstance(callback, ModelCheckpoint) and stage == "fit":
                if callback.best_model_path:
                    score = callback.best_model_score
                    shown = f" ({callback.monitor}={float(score):.4f})" if score is not None else ""
                    lines.append(f"  best checkpoint: {callback.best_model_path}{shown}")
                    checkpoints["best"] = callback.best_model_path
                if callback.last_model_path:
                    lines.append(f"  last checkpoint: {callback.last_model_path}")
                    checkpoints["last"] = callback.last_model_path
        folder = run_folder(trainer)
        if folder is not None:
            entry: dict[str, Any] = {"final": {**metrics, **rates}}
            if stage == "fit":
                entry.update(epochs=trainer.current_epoch, global_step=trainer.global_step,
                             best=self.best, checkpoints=checkpoints)
            if self.config is not None:
                entry["config"] = self.config
            path = write_summary(folder, stage, entry)
            lines.append(f"  summary:     {path}")
        print("\n".join(lines), flush=True)


def write_summary(folder: Path, stage: str, entry: dict[str, Any]) -> Path:
    """Set `stage`'s entry of folder/summary.json, keeping other stages' entries."""
    path = folder / SUMMARY_FILE_NAME
    summary = json.loads(path.read_text()) if path.is_file() else {}
    summary[stage] = entry
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return path
