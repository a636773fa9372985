"""Feed-forward SNN for spike trains over channels (SHD, SSC, Randman)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from torch import Tensor, nn

from exodus_lightning.models.neurons import readout_layer, spiking_layer


class FeedForwardSNN(nn.Module):
    """inputs -> [linear -> spiking neurons -> dropout] x len(hidden_sizes) -> linear -> readout.

    The spiking neurons are LIF, IAF, ALIF (adaptive threshold) or adLIF (SE-adLIF's adaptive
    LIF), each optionally recurrent.

    Input (batch, time, *input_shape), flattened to (batch, time, prod(input_shape));
    output (batch, time, num_classes): readout membranes, spikes or linear outputs over time.
    The EXODUS paper's SHD/SSC network is input_shape=(100,), hidden_sizes=(128, 128).
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        hidden_sizes: Sequence[int] = (128, 128),
        neuron: Literal["lif", "iaf", "alif", "adlif"] = "lif",
        tau_mem: float = 20.0,
        tau_syn: float | None = None,
        spike_threshold: float = 1.0,
        max_spikes_per_step: int | None = None,
        norm_input: bool = False,
        gradient: Literal["exodus", "slayer"] = "exodus",
        backend: Literal["auto", "extension", "reference"] = "auto",
        readout: Literal["exp_leak", "lif", "linear"] = "exp_leak",
        readout_tau_mem: float = 20.0,
        readout_norm_input: bool = False,
        train_readout_tau: bool = True,
        dropout: float = 0.0,
        tau_adapt: float = 200.0,
        adapt_scale: float = 1.8,
        recurrent: bool = False,
    ) -> None:
        """Args: neuron "lif" | "iaf" | "alif" | "adlif" (SE-adLIF, its own parameters in the
        authors' ranges: tau_mem, tau_syn, spike_threshold, max_spikes_per_step and norm_input
        do not apply); max_spikes_per_step None (multi-spike) | 1 | K;
        gradient "exodus" | "slayer"; backend "extension" | "reference" (BPTT) | "auto";
        readout "exp_leak" | "lif" | "linear" (see models.neurons.readout_layer);
        readout_norm_input: scale the readout's input by (1 − α) (a membrane 1/(1 − α) smaller);
        train_readout_tau: train the readout's tau_mem (sinabs' default) or keep it fixed (as
        SE-adLIF's readout);
        tau_adapt, adapt_scale: the ALIF neurons' adaptation; recurrent: every hidden layer
        feeds its spikes back to itself through a linear map at the next step.
        """
        super().__init__()
        if not hidden_sizes:
            raise ValueError("hidden_sizes must name at least one hidden layer, e.g. [128, 128]")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout={dropout} must lie in [0, 1)")
        self.input_shape = tuple(int(n) for n in input_shape)
        layers: list[nn.Module] = [nn.Flatten(start_dim=2)]
        width = math.prod(self.input_shape)
        for size in hidden_sizes:
            layers.append(nn.Linear(width, size))
            layers.append(
                spiking_layer(
                    neuron, tau_mem, tau_syn, spike_threshold, max_spikes_per_step,
                    norm_input, gradient, backend, tau_adapt, adapt_scale,
                    size if recurrent else None, size,
                )
            )
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = size
        layers.append(nn.Linear(width, num_classes))
        layers.append(readout_layer(readout, readout_tau_mem, spike_threshold, gradient, backend,
                                    readout_norm_input, train_readout_tau))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """(batch, time, *input_shape) -> (batch, time, num_classes)."""
        if tuple(x.shape[2:]) != self.input_shape:
            raise ValueError(
                f"{type(self).__name__} expects input (batch, time, *{self.input_shape}), got "
                f"{tuple(x.shape)}; set input_shape to the data's shape"
            )
        return self.layers(x)
