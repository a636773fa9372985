"""Callback: sharpen the Gaussian delay kernels of every nn.DelayedLinear during training."""

from __future__ import annotations

import math

import lightning as L
from lightning.pytorch.utilities import rank_zero_warn

from exodus_lightning.nn import DelayedLinear
from exodus_lightning.nn.delay import SIGMA_SCHEDULES
from exodus_lightning.ops import check_choice


class SigmaAnnealing(L.Callback):
    """At the start of every training epoch e, set σ of each DelayedLinear in the model:

        progress = min(1, e / anneal_epochs)
        σ = c + (σ_init − c) · ((σ_final − c) / (σ_init − c))^progress   (schedule="exponential")
        σ = σ_init + (σ_final − σ_init) · progress                       (schedule="linear")

    with each layer's own sigma_init and sigma_final and c = sigma_offset: σ_final is reached at
    epoch anneal_epochs and kept after it. The value depends on the epoch only, so a resumed
    run continues the schedule where it stopped. DCLS delays (Hammouamri et al. 2024) anneal
    over the first quarter of training: anneal_epochs=None takes fraction · max_epochs, rounded
    down (as their epochs // 4). Their code shrinks SIG exponentially and their kernel's width
    is SIG + 0.27: sigma_offset=0.27 gives their width at every epoch.

    Args:
        anneal_epochs: epochs over which σ goes from σ_init to σ_final (0: σ_final at once).
        fraction: with anneal_epochs=None, the fraction of the trainer's max_epochs.
        schedule: "exponential" or "linear".
        sigma_offset: c, the part of σ the exponential schedule leaves alone; below every
            layer's sigma_init and sigma_final (the authors' DCLS kernel: 0.27).
    """

    def __init__(self, anneal_epochs: int | None = None, fraction: float = 0.25,
                 schedule: str = "exponential", sigma_offset: float = 0.0) -> None:
        if anneal_epochs is not None and (isinstance(anneal_epochs, bool)
                                          or int(anneal_epochs) != anneal_epochs
                                          or anneal_epochs < 0):
            raise ValueError(f"anneal_epochs must be None or an integer >= 0, got "
                             f"{anneal_epochs!r}")
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction must lie in [0, 1] (of max_epochs), got {fraction!r}")
        check_choice("schedule", schedule, SIGMA_SCHEDULES)
        self.anneal_epochs = None if anneal_epochs is None else int(anneal_epochs)
        self.fraction = float(fraction)
        self.schedule = schedule
        if (isinstance(sigma_offset, bool) or not isinstance(sigma_offset, (int, float))
                or not math.isfinite(sigma_offset)):
            raise ValueError(f"sigma_offset must be a finite number (below every layer's "
                             f"sigma_final), got {sigma_offset!r}; e.g. 0.27")
        self.sigma_offset = float(sigma_offset)

    def epochs(self, trainer: L.Trainer) -> int:
        """The number of annealing epochs for this trainer."""
        if self.anneal_epochs is not None:
            return self.anneal_epochs
        max_epochs = trainer.max_epochs
        if max_epochs is None or max_epochs < 0:
            raise ValueError("SigmaAnnealing needs anneal_epochs when the trainer has no "
                             "max_epochs; set trainer.max_epochs or the callback's anneal_epochs")
        return math.floor(self.fraction * max_epochs)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epochs(trainer)  # fail before the first epoch, not in it
        layers = [m for m in pl_module.modules() if isinstance(m, DelayedLinear)]
        for layer in layers:
            layer.check_sigma_offset(self.sigma_offset)
        if not layers:
            rank_zero_warn("SigmaAnnealing found no DelayedLinear layer in the model: it does "
                           "nothing; remove the callback or use a network with delays")

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epochs = self.epochs(trainer)
        progress = 1.0 if epochs == 0 else trainer.current_epoch / epochs
        for module in pl_module.modules():
            if isinstance(module, DelayedLinear):
                module.anneal_sigma(progress, self.schedule, self.sigma_offset)
