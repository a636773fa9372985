"""What the gradient experiments share: gradient variants, comparisons, calibration, networks.

The three gradient variants of the paper are the same layers with different switches:

    bptt    backend="reference", gradient="exodus"   autograd through a Python loop (ground truth)
    exodus  backend="extension", gradient="exodus"   fused kernels, exact gradient
    slayer  backend="extension", gradient="slayer"   fused kernels, reset ignored backward
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from exodus_lightning import nn as enn
from exodus_lightning.models import TimeFolded

VARIANTS: dict[str, dict[str, str]] = {
    "bptt": {"gradient": "exodus", "backend": "reference"},
    "exodus": {"gradient": "exodus", "backend": "extension"},
    "slayer": {"gradient": "slayer", "backend": "extension"},
}
WEIGHT_LAYERS = (nn.Linear, nn.Conv2d)


# ---------------------------------------------------------------------------------------------
# Variants and gradients


def set_variant(model: nn.Module, variant: str) -> nn.Module:
    """Switch every spiking/leaky layer of model to a variant of VARIANTS, in place."""
    switches = VARIANTS[variant]
    for layer in model.modules():
        if isinstance(layer, enn.LIF):  # IAF and the Squeeze variants are LIFs too
            layer.gradient = switches["gradient"]
            layer.backend = switches["backend"]
        elif isinstance(layer, enn.ExpLeak):
            layer.backend = switches["backend"]
    return model


def variant_copy(model: nn.Module, variant: str) -> nn.Module:
    """A deep copy of model (same weights, fresh states) switched to variant."""
    clone = copy.deepcopy(model)
    enn.reset_states(clone)
    return set_variant(clone, variant)


def parameter_gradients(model: nn.Module) -> dict[str, Tensor]:
    """name -> a detached copy of the gradient, for every parameter that has one."""
    return {
        name: param.grad.detach().clone()
        for name, param in model.named_parameters()
        if param.grad is not None
    }


def relative_error(value: Tensor, reference: Tensor) -> float:
    """‖value − reference‖₂ / ‖reference‖₂ (0 if both are zero, inf if only the reference is)."""
    denominator = reference.double().norm().item()
    numerator = (value.double() - reference.double()).norm().item()
    if denominator == 0.0:
        return 0.0 if numerator == 0.0 else math.inf
    return numerator / denominator


def spiking_layers(model: nn.Module) -> list[nn.Module]:
    """The spiking layers (LIF, IAF and their Squeeze variants) of model, in order."""
    return [layer for layer in model.modules() if isinstance(layer, enn.LIF)]


def weight_layers(model: nn.Module) -> list[nn.Module]:
    """The Linear/Conv2d layers of model, in order."""
    return [layer for layer in model.modules() if isinstance(layer, WEIGHT_LAYERS)]


@torch.no_grad()
def spike_rates(model: nn.Module, x: Tensor) -> list[float]:
    """Mean spikes per neuron and time step of every spiking layer, for input x."""
    rates: list[float] = []

    def record(_module: nn.Module, _inputs: tuple, out: Tensor) -> None:
        rates.append(out.float().mean().item())

    hooks = [layer.register_forward_hook(record) for layer in spiking_layers(model)]
    try:
        enn.reset_states(model)
        model(x)
    finally:
        for hook in hooks:
            hook.remove()
        enn.reset_states(model)
    return rates


@torch.no_grad()
def calibrate_(
    model: nn.Module, x: Tensor, target_rate: float, iterations: int = 16
) -> list[float]:
    """Scale each weight layer in turn so the spiking layer after it fires at target_rate.

    A layer-sequential, data-dependent initialisation (bisection on a log scale of each weight
    tensor, earlier layers already fixed): deep networks then neither go silent nor saturate,
    so the gradients compared are those of a working network. Returns the final rates.
    """
    for index, layer in enumerate(weight_layers(model)[: len(spiking_layers(model))]):
        original = layer.weight.clone()
        low, high = -6.0, 6.0  # log2 of the scale factor
        for _ in range(iterations):
            middle = (low + high) / 2
            layer.weight.copy_(original * 2.0**middle)
            if spike_rates(model, x)[index] < target_rate:
                low = middle
            else:
                high = middle
        layer.weight.copy_(original * 2.0 ** ((low + high) / 2))
    return spike_rates(model, x)


# ---------------------------------------------------------------------------------------------
# Networks
#
# Not models.FeedForwardSNN / ConvSNN: calibrate_ sets each layer's rate by scaling its weights,
# which a bias would undo (a biased neuron fires at any scale), and the claims are about stacks
# of one neuron kind with every setting (min_v_mem, reset, ...) in every layer, output included;
# the models have biases, a separate readout and no min_v_mem or reset arguments.


def dense_snn(sizes: Sequence[int], neuron: Callable[[], nn.Module]) -> nn.Sequential:
    """Bias-free Linear -> neuron(), repeated: sizes = (inputs, hidden..., outputs).

    (batch, time, inputs) -> (batch, time, outputs) spikes; Linear acts on the last axis.
    """
    modules: list[nn.Module] = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        modules += [nn.Linear(fan_in, fan_out, bias=False), neuron()]
    return nn.Sequential(*modules)


def conv_snn(
    input_shape: Sequence[int],
    channels: Sequence[int],
    num_classes: int,
    neuron: Callable[[], nn.Module],
) -> nn.Sequential:
    """(bias-free 3×3 conv -> neuron() -> avg-pool 2) per channels entry -> bias-free linear
    -> neuron(); (batch, time, C, H, W) -> (batch, time, num_classes) spikes.

    Convs and pooling run on folded time (models.TimeFolded), the neurons on (batch, time, ...).
    """
    in_channels, height, width = input_shape
    modules: list[nn.Module] = []
    for out_channels in channels:
        conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        modules += [TimeFolded(conv), neuron(), TimeFolded(nn.AvgPool2d(2))]
        in_channels, height, width = out_channels, height // 2, width // 2
    features = in_channels * height * width
    modules += [nn.Flatten(start_dim=2), nn.Linear(features, num_classes, bias=False), neuron()]
    return nn.Sequential(*modules)
