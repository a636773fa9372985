"""Callback: write what `predict` returns to a CSV file in the run's folder."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import BasePredictionWriter

from exodus_lightning.callbacks.run_summary import run_folder

PREDICTIONS_FILE_NAME = "predictions.csv"
COLUMNS = ("sample", "predicted", "target", "confidence")


class PredictionWriter(BasePredictionWriter):
    """After `predict`: one CSV row per sample, `sample` (its index in the predicted dataset),
    `predicted` (class), `target` (empty when the data has none) and `confidence` (the
    predicted class's softmax probability), in `output_dir` or else the run's folder (or the
    trainer's default_root_dir without a logger). Prints where, with the accuracy when targets
    are known. Under DDP the processes' rows are gathered to global rank 0, which writes the one
    file and the accuracy over the whole split.

    Needs predict_step to return dicts with "predicted", "confidence" and optionally "target"
    tensors, as SpikingClassifier's does.
    """

    def __init__(self, output_dir: str | Path | None = None) -> None:
        super().__init__(write_interval="epoch")
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.path: Path | None = None

    def write_on_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           predictions: Sequence[Any], batch_indices: Sequence[Any]) -> None:
        rows = _rows(predictions, batch_indices)
        if trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
            # Every rank predicted its own share: rank 0 collects them (every rank must call).
            shares = [None] * trainer.world_size if trainer.is_global_zero else None
            dist.gather_object(rows, shares, dst=0)
            if not trainer.is_global_zero:
                return
            # Lightning's predict sampler gives each sample to one rank: nothing repeats.
            rows = None if None in shares else [row for share in shares for row in share]
        if rows is None:
            return  # not a classifier's predictions: nothing we know how to write
        rows.sort(key=lambda row: row["sample"])
        folder = self.output_dir or run_folder(trainer) or Path(trainer.default_root_dir)
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / PREDICTIONS_FILE_NAME
        with open(self.path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        message = f"\n=== predict finished ===\n  {len(rows)} predictions -> {self.path}"
        known = [row for row in rows if row["target"] != ""]
        if known:
            correct = sum(row["predicted"] == row["target"] for row in known)
            message += f"\n  accuracy     {correct / len(known):.4f} ({len(known)} with targets)"
        print(message, flush=True)


def _rows(predictions: Sequence[Any], batch_indices: Sequence[Any]) -> list[dict] | None:
    """One CSV row per predicted sample of this process; None if the batches are not a
    classifier's prediction dicts."""
    # Lightning gives predictions as a flat list of batches for one dataloader (one list
    # per dataloader for several), batch indices always as one list per dataloader.
    if predictions and not isinstance(predictions[0], list):
        predictions = [predictions]
    predictions = [batch for loader in predictions for batch in loader]
    batch_indices = [batch for loader in batch_indices for batch in loader]
    rows = []
    for batch, indices in zip(predictions, batch_indices):
        if not isinstance(batch, dict) or "predicted" not in batch:
            return None
        targets = batch.get("target")
        for position, index in enumerate(indices):
            rows.append({
                "sample": int(index),
                "predicted": int(batch["predicted"][position]),
                "target": "" if targets is None else int(targets[position]),
                "confidence": f"{float(batch['confidence'][position]):.6f}",
            })
    return rows


def predictions_from_csv(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a predictions CSV back as tensors by column (`target` only when every row has one)."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    columns = {
        "sample": torch.tensor([int(r["sample"]) for r in rows]),
        "predicted": torch.tensor([int(r["predicted"]) for r in rows]),
        "confidence": torch.tensor([float(r["confidence"]) for r in rows]),
    }
    if rows and all(r["target"] != "" for r in rows):
        columns["target"] = torch.tensor([int(r["target"]) for r in rows])
    return columns
