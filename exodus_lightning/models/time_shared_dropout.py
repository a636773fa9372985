"""Dropout whose mask is drawn once per sample and kept over all time steps."""

from __future__ import annotations

from torch import Tensor, nn


class TimeSharedDropout(nn.Module):
    """Dropout on (batch, time, features) with one mask per sample and feature for all steps:

        y[b, t, f] = x[b, t, f] · m[b, f] / (1 − p),   m[b, f] ~ Bernoulli(1 − p)

    A dropped neuron is silent for the whole sequence instead of losing random spikes (as
    spikingjelly's multi-step Dropout, which the DCLS-delays network uses). Identity in eval.
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"p={p} must lie in [0, 1)")
        # Dropout1d zeroes whole channels of (batch, channels, length): features over time.
        self.dropout = nn.Dropout1d(p)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 3:
            raise ValueError(f"{type(self).__name__} expects (batch, time, features), got shape "
                             f"{tuple(x.shape)}")
        return self.dropout(x.transpose(1, 2)).transpose(1, 2)
