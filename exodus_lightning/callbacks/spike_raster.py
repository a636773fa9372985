"""Callback: spike raster of one validation sample, every few epochs, to the logger."""

from __future__ import annotations

import lightning as L
import torch
from torch import Tensor

from exodus_lightning.callbacks.figures import log_figure, spike_raster_figure


class SpikeRasterLogger(L.Callback):
    """Every `every_n_epochs` validation epochs, plot the input spikes and every spiking layer's
    spikes for validation sample `sample_index` of the first batch, and log the PNG as
    "spike_raster" (W&B image; a PNG under the log dir for loggers without images).

    Needs a LightningModule that records `layer_spikes` (name -> (batch, time, *features)) in its
    forward pass, as SpikingClassifier does.
    """

    def __init__(self, every_n_epochs: int = 5, sample_index: int = 0) -> None:
        super().__init__()
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs={every_n_epochs} must be >= 1")
        self.every_n_epochs = every_n_epochs
        self.sample_index = sample_index
        self.sample: Tensor | None = None

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx,
                                dataloader_idx: int = 0) -> None:
        if batch_idx == 0 and dataloader_idx == 0:
            inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
            index = min(self.sample_index, len(inputs) - 1)
            self.sample = inputs[index : index + 1].detach()

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        due = trainer.current_epoch % self.every_n_epochs == 0
        if trainer.sanity_checking or not due or self.sample is None:
            return
        if not hasattr(pl_module, "layer_spikes"):
            return
        if trainer.is_global_zero:
            with torch.no_grad():
                pl_module(self.sample)
            rasters = {"input": self.sample[0]}
            rasters.update({name: spikes[0] for name, spikes in pl_module.layer_spikes.items()})
            figure = spike_raster_figure(rasters, f"epoch {trainer.current_epoch}")
            log_figure(trainer, "spike_raster", figure)
        self.sample = None
