"""LightningModules: a spiking network, its readout loss, metrics and logging."""

from exodus_lightning.tasks.classifier import SpikingClassifier
from exodus_lightning.tasks.readout import (
    READOUT_LOSSES,
    check_readout_loss,
    readout_logits,
    readout_loss,
)

__all__ = [
    "READOUT_LOSSES",
    "SpikingClassifier",
    "check_readout_loss",
    "readout_logits",
    "readout_loss",
]
