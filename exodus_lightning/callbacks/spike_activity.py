"""Callback: warn when a spiking layer is silent or saturated during the first training epoch."""

from __future__ import annotations

import math

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn


class SpikeActivityWarning(UserWarning):
    """A spiking layer's activity makes learning unlikely (no spikes, or spikes everywhere)."""


def _value(parameter: Tensor | float | None) -> str:
    """A layer parameter as the user wrote it: one number, or the mean of a per-neuron one."""
    if parameter is None:
        return "None"
    if isinstance(parameter, Tensor):
        if parameter.numel() == 1:
            return f"{float(parameter):g}"
        return f"{float(parameter.detach().float().mean()):g} (mean)"
    return f"{parameter:g}"


def _threshold(layer: nn.Module) -> tuple[str, str]:
    """The argument that sets the layer's threshold, and its value: ALIF's base threshold b0
    (its spike_threshold state is the adapted one), adLIF's threshold."""
    if hasattr(layer, "b0"):
        return "spike_threshold", _value(layer.b0)
    if hasattr(layer, "spike_threshold"):
        return "spike_threshold", _value(layer.spike_threshold)
    return "threshold", _value(getattr(layer, "threshold", None))


def silent_layer_advice(layer: nn.Module) -> str:
    """What to change so that `layer`'s membrane reaches its threshold."""
    name, threshold = _threshold(layer)
    advice = [f"lower {name} (now {threshold})"]
    tau = getattr(layer, "tau_mem", None)
    if getattr(layer, "norm_input", False) and tau is not None:
        scale = 1 - math.exp(-1 / float(torch.as_tensor(tau).detach().float().mean()))
        advice.append(f"set norm_input=False (it scales the layer's input by 1 - exp(-1/tau_mem)"
                      f" = {scale:.3g})")
    advice.append("or scale up the weights or inputs that feed it")
    return ", ".join(advice)


def saturated_layer_advice(layer: nn.Module) -> str:
    """What to change so that `layer` stops firing at (nearly) every step."""
    name, threshold = _threshold(layer)
    advice = [f"raise {name} (now {threshold})"]
    if getattr(layer, "max_spikes_per_step", 1) != 1:
        advice.append("set max_spikes_per_step=1 (one spike per step at most)")
    advice.append("or scale down the weights or inputs that feed it")
    return ", ".join(advice)


class SpikeActivityCheck(L.Callback):
    """After the first training epoch, warn (SpikeActivityWarning) about every spiking layer
    whose mean spike rate (spikes per neuron per step) was below `min_rate` (silent: no
    spikes means the loss barely depends on the layer's input weights, and the network does not
    learn) or above `max_rate` (saturated: every neuron fires at every step). The warning names
    the layer and what to change.

    Needs a LightningModule that records `layer_spikes` (name -> (batch, time, *features)) in
    its forward pass, as SpikingClassifier does. min_rate=0 and max_rate=None turn it off.
    """

    def __init__(self, min_rate: float = 1e-4, max_rate: float | None = 0.9) -> None:
        super().__init__()
        if min_rate < 0:
            raise ValueError(f"min_rate={min_rate} must be >= 0 (0 = never warn of silence)")
        if max_rate is not None and max_rate <= min_rate:
            raise ValueError(f"max_rate={max_rate} must be above min_rate={min_rate} (or None)")
        self.min_rate = min_rate
        self.max_rate = max_rate
        self.spikes: dict[str, float] = {}
        self.elements: dict[str, int] = {}
        self.checked = False

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs,
                           batch, batch_idx: int) -> None:
        if self.checked:
            return
        for name, spikes in getattr(pl_module, "layer_spikes", {}).items():
            self.spikes[name] = self.spikes.get(name, 0.0) + float(spikes.detach().sum())
            self.elements[name] = self.elements.get(name, 0) + spikes.numel()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.checked or not self.elements:
            return
        # Once per fit, resumed ones included: the advice is for how the network starts.
        self.checked = True
        layers = dict(pl_module.named_modules())
        for name, count in self.elements.items():
            rate = self.spikes[name] / count
            layer = layers.get(f"network.{name}", layers.get(name))
            kind = type(layer).__name__ if layer is not None else "spiking layer"
            if rate < self.min_rate:
                what = ("not one spike" if self.spikes[name] == 0
                        else f"{rate:.2g} spikes per neuron per step")
                advice = silent_layer_advice(layer) if layer is not None else ""
                rank_zero_warn(
                    f"spiking layer '{name}' ({kind}) was silent in the first training epoch "
                    f"({what}), so the network can hardly learn through it: {advice}.",
                    category=SpikeActivityWarning)
            elif self.max_rate is not None and rate > self.max_rate:
                advice = saturated_layer_advice(layer) if layer is not None else ""
                rank_zero_warn(
                    f"spiking layer '{name}' ({kind}) saturated in the first training epoch "
                    f"({rate:.3g} spikes per neuron per step; its spikes carry little "
                    f"information): {advice}.", category=SpikeActivityWarning)
