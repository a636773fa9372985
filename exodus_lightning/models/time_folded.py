"""Run a stateless per-frame layer (conv, pooling, norm) on every time step at once."""

from __future__ import annotations

from torch import Tensor, nn


class TimeFolded(nn.Module):
    """Applies `layer` to (batch, time, *features) by folding time into the batch.

    (B, T, *f) -> layer((B·T, *f)) -> (B, T, *f'): one call for all steps, so a conv runs as
    one large batched kernel while spiking layers between them see the time axis.
    """

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: Tensor) -> Tensor:
        return self.layer(x.flatten(0, 1)).unflatten(0, x.shape[:2])
