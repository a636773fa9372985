"""Feed-forward SNN with learnable synaptic delays: the DCLS-delays network for SHD and SSC."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from exodus_lightning import nn as enn
from exodus_lightning.models.time_folded import TimeFolded
from exodus_lightning.models.time_shared_dropout import TimeSharedDropout
from exodus_lightning.nn.surrogate import ArcTan
from exodus_lightning.ops import check_choice


def tau_from_spikingjelly(tau: float) -> float:
    """Our τ_mem (α = exp(−1/τ_mem)) for spikingjelly's LIF time constant τ (decay 1 − 1/τ).

    spikingjelly without input decay steps v_t = (1 − 1/τ) · v_{t−1} + x_t; our LIF with
    norm_input=False steps v_t = α · v_{t−1} + x_t, so α = 1 − 1/τ, τ_mem = −1 / ln(1 − 1/τ).
    """
    if not tau > 1:
        raise ValueError(f"spikingjelly's tau must be > 1 (decay 1 - 1/tau in (0, 1)), got {tau}")
    return -1.0 / math.log(1.0 - 1.0 / tau)


# The paper's SHD setting: τ = 10.05 ms at 10 ms steps, a decay of 0.005 per step.
PAPER_TAU_MEM = tau_from_spikingjelly(1.005)


class DelaySNN(nn.Module):
    """inputs -> [DelayedLinear -> batch norm -> LIF -> dropout] x len(hidden_sizes)
    -> DelayedLinear -> non-spiking leaky readout.

    The network of Hammouamri, Khalfaoui-Hassani & Masquelier, "Learning Delays in Spiking
    Neural Networks using Dilated Convolutions with Learnable Spacings" (ICLR 2024), built from
    our layers; the defaults are its SHD setting (10 ms steps, 700 channels binned by 5 = 140
    inputs, 2 x 256 hidden, max delay 25 steps; reported 95.1 % on SHD, 80.7 % on SSC with
    3 x 512 and max delay 31). As the authors: every layer, the readout's too, has a learnable
    delay per synapse; no biases; weights Kaiming-uniform for ReLU; delays uniform over the
    window; batch norm with statistics over batch and time; LIF without input scaling, hard
    reset to 0, one spike per step, arctan surrogate; dropout with one mask per sequence; the
    readout is an LIF that never spikes (our ExpLeak). Delays are rounded in eval mode.

    Train with callbacks.SigmaAnnealing, which sharpens the delay kernels (σ from sigma_init to
    sigma_final over the first quarter of the epochs, exponentially; its sigma_offset=0.27
    gives the paper's σ at every epoch).

    extend_time (the authors' right padding): every delay layer gets (max_delay − 1) // 2 zero
    steps appended to its input, so that spikes delayed past the end of the sample still reach
    the readout; the output then has T + (len(hidden_sizes) + 1) · ((max_delay − 1) // 2) steps.

    Input (batch, time, *input_shape), flattened to (batch, time, prod(input_shape)); output
    (batch, time', num_classes): the readout membrane over time.

    Args:
        input_shape, num_classes: from the data.
        hidden_sizes: neurons per hidden layer.
        max_delay: D, delays lie in [0, D − 1] steps (the paper: 250 ms / 10 ms, made odd).
        sigma_init: σ of the delay kernels at the start (None: max_delay / 2; the paper:
            max_delay // 2 + 0.27, its kernel adds 0.27 to the σ it anneals).
        sigma_final: σ at the end of the annealing (the paper: 0.23 + 0.27 = 0.5).
        delay_scale: the delays' learning rate relative to the weights' with Adam (the paper
            trains them at 100 x; see nn.DelayedLinear).
        extend_time: append zero steps for the delays (see above).
        tau_mem: LIF time constant in steps (α = exp(−1/τ_mem)); the default is spikingjelly's
            τ = 1.005 of the paper, see tau_from_spikingjelly.
        spike_threshold: θ of the LIF neurons.
        max_spikes_per_step: 1 (the paper), None (multi-spike) or K.
        reset: "zero" (the paper) or "subtract".
        surrogate_alpha: α of the arctan surrogate (spikingjelly's ATan, the paper: 5).
        gradient: "slayer" (the reset is not differentiated: the authors' detach_reset) or
            "exodus" (exact through the reset).
        backend: "auto", "extension" (fused kernels) or "reference" (BPTT loop).
        readout_tau_mem: time constant of the readout membrane (the paper: as the LIF's).
        batch_norm: batch norm after every hidden delay layer.
        dropout: the probability of silencing a neuron for a whole sequence.
        train_tau: train the time constants of the LIF and readout layers (the paper: fixed).
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        hidden_sizes: Sequence[int] = (256, 256),
        max_delay: int = 25,
        sigma_init: float | None = None,
        sigma_final: float = 0.5,
        delay_scale: float = 100.0,
        extend_time: bool = True,
        tau_mem: float = PAPER_TAU_MEM,
        spike_threshold: float = 1.0,
        max_spikes_per_step: int | None = 1,
        reset: Literal["zero", "subtract"] = "zero",
        surrogate_alpha: float = 5.0,
        gradient: Literal["exodus", "slayer"] = "slayer",
        backend: Literal["auto", "extension", "reference"] = "auto",
        readout_tau_mem: float = PAPER_TAU_MEM,
        batch_norm: bool = True,
        dropout: float = 0.4,
        train_tau: bool = False,
    ) -> None:
        super().__init__()
        if not hidden_sizes:
            raise ValueError("hidden_sizes must name at least one hidden layer, e.g. [256, 256]")
        check_choice("reset", reset, ("zero", "subtract"))
        check_choice("gradient", gradient, ("exodus", "slayer"))
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout={dropout} must lie in [0, 1)")
        self.input_shape = tuple(int(n) for n in input_shape)
        self.pad_steps = (max_delay - 1) // 2 if extend_time else 0

        def delayed(width: int, size: int) -> enn.DelayedLinear:
            layer = enn.DelayedLinear(width, size, max_delay, bias=False, sigma_init=sigma_init,
                                      sigma_final=sigma_final, delay_scale=delay_scale)
            nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu")
            return layer

        layers: list[nn.Module] = [nn.Flatten(start_dim=2)]
        width = math.prod(self.input_shape)
        for size in hidden_sizes:
            layers.append(_PadTime(self.pad_steps))
            layers.append(delayed(width, size))
            if batch_norm:
                layers.append(TimeFolded(nn.BatchNorm1d(size)))
            layers.append(
                enn.LIF(
                    tau_mem=tau_mem,
                    spike_threshold=spike_threshold,
                    surrogate_grad_fn=ArcTan(alpha=surrogate_alpha),
                    norm_input=False,
                    max_spikes_per_step=max_spikes_per_step,
                    reset=reset,
                    gradient=gradient,
                    backend=backend,
                )
            )
            if dropout > 0:
                layers.append(TimeSharedDropout(dropout))
            width = size
        layers.append(_PadTime(self.pad_steps))
        layers.append(delayed(width, num_classes))
        layers.append(enn.ExpLeak(tau_mem=readout_tau_mem, backend=backend))
        self.layers = nn.Sequential(*layers)
        for layer in self.layers:
            if isinstance(layer, (enn.LIF, enn.ExpLeak)):
                layer.tau_mem.requires_grad_(train_tau)

    def forward(self, x: Tensor) -> Tensor:
        """(batch, time, *input_shape) -> (batch, time + extra steps, num_classes)."""
        if tuple(x.shape[2:]) != self.input_shape:
            raise ValueError(
                f"{type(self).__name__} expects input (batch, time, *{self.input_shape}), got "
                f"{tuple(x.shape)}; set input_shape to the data's shape"
            )
        return self.layers(x)


class _PadTime(nn.Module):
    """Append `steps` zero time steps to (batch, time, features)."""

    def __init__(self, steps: int) -> None:
        super().__init__()
        self.steps = steps

    def forward(self, x: Tensor) -> Tensor:
        return F.pad(x, (0, 0, 0, self.steps)) if self.steps else x

    def extra_repr(self) -> str:
        return f"steps={self.steps}"
