"""Callback: last.ckpt, the state after the latest training epoch, on every Lightning 2.x."""

from __future__ import annotations

import os

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint


class LastCheckpoint(ModelCheckpoint):
    """Writes ``last.ckpt`` after every training epoch (every ``every_n_epochs``), overwriting it:
    the file to resume from, whatever a monitored metric did.

    A ModelCheckpoint without a monitored metric saves at every epoch end in all Lightning 2.x
    versions; ``save_last=True`` of a monitored one does not: since Lightning 2.6 it copies only
    the epochs whose metric improved, so its last.ckpt is the best epoch, not the last.

    Args:
        dirpath: the folder; None: that of the ModelCheckpoint ``beside`` is set to (the CLI
            sets its best checkpoint's, ``--checkpoint.dirpath``), else Lightning's default.
        every_n_epochs: save after every n-th epoch.
    """

    def __init__(self, dirpath: str | os.PathLike | None = None, every_n_epochs: int = 1) -> None:
        if int(every_n_epochs) != every_n_epochs or every_n_epochs < 1:
            raise ValueError(f"every_n_epochs={every_n_epochs} must be a positive integer "
                             "(1: after every epoch)")
        super().__init__(
            dirpath=dirpath,
            filename=self.CHECKPOINT_NAME_LAST,
            monitor=None,
            save_top_k=1,  # without a monitor: keep the newest file only
            save_last=False,
            every_n_epochs=int(every_n_epochs),
            enable_version_counter=False,  # overwrite last.ckpt, never last-v1.ckpt
        )
        self.beside: ModelCheckpoint | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.dirpath is None and self.beside is not None:
            # Its dirpath as configured, or as its own setup resolved it: None resolves the same.
            self.dirpath = self.beside.dirpath
        super().setup(trainer, pl_module, stage)

    @property
    def path(self) -> str:
        """The file written last ("" before the first save); Lightning keeps it as the best
        path of a callback without a monitored metric."""
        return self.best_model_path
