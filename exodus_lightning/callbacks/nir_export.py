"""Callback: at the end of fit, write the best checkpoint's network as model.nir beside it."""

from __future__ import annotations

import copy
import math
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from exodus_lightning.callbacks.last_checkpoint import LastCheckpoint
from exodus_lightning.checkpoint_file import saved_input_shape

NIR_FILE_NAME = "model.nir"


def best_checkpoint_path(trainer: L.Trainer) -> str:
    """The best checkpoint of the trainer's ModelCheckpoint (its last one without a monitored
    metric), else the newest last.ckpt of a LastCheckpoint; "" if none was saved."""
    callbacks = [c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint)]
    # LastCheckpoint last: it is a ModelCheckpoint too, but its file is the latest epoch's.
    callbacks.sort(key=lambda c: isinstance(c, LastCheckpoint))
    for callback in callbacks:
        if callback.best_model_path or callback.last_model_path:
            return callback.best_model_path or callback.last_model_path
    return ""


class NIRExportWarning(UserWarning):
    """The network could not be written as NIR; training itself is unaffected."""


class NIRExport(L.Callback):
    """After `fit`: the network with the best checkpoint's weights (the last checkpoint's
    without a monitored metric) as a NIR graph, ``model.nir`` in the checkpoint's folder, also
    logged as a W&B artifact (type "model") when a WandbLogger is on. Add it with
    ``--trainer.callbacks+=exodus_lightning.callbacks.NIRExport``; needs ``pip install nir``.

    Args:
        dt: the step length in the graph's time unit (see exodus_lightning.nir.to_nir).
        input_shape: the network's input features; by default its ``input_shape`` attribute,
            else the input_shape the checkpoint saved among the network's init_args.

    A network NIR cannot express (ALIF, learned delays), or any other failure to write the
    file, gives a :class:`NIRExportWarning` naming the problem instead of a file: training
    has finished by then, and ``fit`` ends normally. A bad dt is refused here, before training.
    """

    def __init__(self, dt: float = 1.0, input_shape: tuple[int, ...] | None = None) -> None:
        super().__init__()
        # to_nir's own check, made before training (nir is imported only at the end of fit).
        if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not 0 < dt < math.inf:
            raise ValueError(f"NIRExport: dt must be a positive number (the step length in the "
                             f"graph's time unit), got {dt!r}")
        self.dt = dt
        self.input_shape = input_shape
        self.path: Path | None = None

    @rank_zero_only
    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        import nir

        from exodus_lightning.nir import NIRExportError, to_nir

        best = best_checkpoint_path(trainer)
        if not best:
            warnings.warn(NIRExportWarning("NIRExport: no checkpoint was saved, so there is no "
                                           "network to write as NIR"), stacklevel=2)
            return
        network = copy.deepcopy(pl_module.network).cpu()
        checkpoint = torch.load(best, map_location="cpu", weights_only=True)
        network.load_state_dict({key.removeprefix("network."): value
                                 for key, value in checkpoint["state_dict"].items()
                                 if key.startswith("network.")})
        shape = (self.input_shape or getattr(network, "input_shape", None)
                 or saved_input_shape(checkpoint))
        if shape is None:
            warnings.warn(NIRExportWarning(f"NIRExport: {type(network).__name__} has no "
                                           f"input_shape attribute or init argument; give "
                                           f"NIRExport(input_shape=...)"), stacklevel=2)
            return
        path, writing = Path(best).with_name(NIR_FILE_NAME), False
        try:
            graph = to_nir(network, torch.zeros(1, 2, *shape), dt=self.dt)
            writing = True
            nir.write(path, graph)
        except Exception as error:  # training is over: any export problem is a warning
            if writing:
                path.unlink(missing_ok=True)  # no half-written file
            problem = str(error) if isinstance(error, NIRExportError) else (
                f"{type(error).__name__}: {error}")
            warnings.warn(NIRExportWarning(f"NIRExport: no {NIR_FILE_NAME} written: {problem}"),
                          stacklevel=2)
            return
        self.path = path
        print(f"  NIR graph    {self.path}", flush=True)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                import wandb

                artifact = wandb.Artifact(f"nir-{logger.experiment.id}", type="model",
                                          metadata={"checkpoint": str(best), "dt": self.dt})
                artifact.add_file(str(self.path))
                logger.experiment.log_artifact(artifact)
