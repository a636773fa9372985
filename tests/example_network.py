"""A user-defined network, plugged in by class path without touching the package:

    exodus-lightning fit --model.network tests.example_network.RecurrentSNN \\
        --model.network.init_args.hidden_size 64

The CLI fills `input_shape` and `num_classes` from the data because the constructor has
arguments of those names; any other arguments come from the config.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from exodus_lightning import nn as enn


class RecurrentSNN(nn.Module):
    """inputs -> linear -> LIF (with one step of recurrent feedback) -> linear -> ExpLeak."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, hidden_size: int = 32,
                 tau_mem: float = 10.0) -> None:
        super().__init__()
        self.encoder = nn.Linear(math.prod(input_shape), hidden_size)
        self.lif = enn.LIF(tau_mem=tau_mem, spike_threshold=0.5, norm_input=False)
        self.feedback = nn.Linear(hidden_size, hidden_size, bias=False)
        self.decoder = nn.Linear(hidden_size, num_classes)
        self.readout = enn.ExpLeak(tau_mem=tau_mem)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        current = self.encoder(x.flatten(2))
        spikes = self.lif(current)
        # A second pass with the first pass's spikes delayed by one step as extra input.
        delayed = torch.nn.functional.pad(spikes, (0, 0, 1, 0))[:, :-1]
        enn.reset_states(self.lif)
        spikes = self.lif(current + self.feedback(delayed))
        return self.readout(self.decoder(spikes))
