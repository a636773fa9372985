"""Callback: print final metrics, log and checkpoint locations when a run ends."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from exodus_lightning.callbacks.figures import confusion_matrix_figure, log_figure


class RunSummary(L.Callback):
    """At the end of fit/validate/test: metrics, where logs and checkpoints are, the confusion
    matrix after test (logged as "test/confusion_matrix" when the module computed one)."""

    @rank_zero_only
    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "predict" or trainer.sanity_checking:
            return
        stage = getattr(stage, "value", stage)
        lines = [f"\n=== {stage} finished ==="]
        metrics = {
            name: float(value)
            for name, value in sorted(trainer.callback_metrics.items())
            if value.numel() == 1 and not name.startswith("spike_rate")
            and not name.endswith(("_step", "_epoch"))
        }
        lines += [f"  {name:<12} {value:.4f}" for name, value in metrics.items()]
        rates = {n: float(v) for n, v in trainer.callback_metrics.items()
                 if n.startswith("spike_rate")}
        if rates:
            lines.append("  spike rates  " + ", ".join(f"{n[11:]}={v:.3f}"
                                                        for n, v in sorted(rates.items())))
        matrix = getattr(pl_module, "test_confusion_matrix", None)
        if stage == "test" and matrix is not None:
            where = log_figure(trainer, "test/confusion_matrix", confusion_matrix_figure(matrix))
            lines.append(f"  confusion matrix -> {', '.join(where)}")
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                run_dir = logger.experiment.dir.removesuffix("/files")
                lines.append(f"  W&B run:     {run_dir}")
            elif isinstance(logger, CSVLogger):
                lines.append(f"  metrics CSV: {logger.log_dir}/metrics.csv")
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and stage == "fit":
                if callback.best_model_path:
                    score = callback.best_model_score
                    shown = f" ({callback.monitor}={float(score):.4f})" if score is not None else ""
                    lines.append(f"  best checkpoint: {callback.best_model_path}{shown}")
                if callback.last_model_path:
                    lines.append(f"  last checkpoint: {callback.last_model_path}")
        print("\n".join(lines), flush=True)
