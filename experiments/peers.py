"""Peer libraries' LIF layers and networks, configured to compute what ours computes.

Benchmarks compare only like with like, so every peer runs the same dynamics as ours (the
list below says where the libraries' conventions differ and how each is set to match):

    v_t = α · v⁺_{t−1} + x_t,   s_t = H(v_t − θ) (one spike per step at most),
    v⁺_t = v_t − θ · s_t        (subtractive reset, its gradient included),   θ = 1

    sinabs        layers.LIF(spike_fn=SingleSpike, norm_input=False)
    snnTorch      Leaky(beta=α, reset_mechanism="subtract", reset_delay=False): the reset
                  spk − reset carries the spike's surrogate gradient; strict v > θ
    SpikingJelly  LIFNode(tau=1/(1−α), decay_input=False, v_reset=None, detach_reset=False):
                  its leak v − v/τ is α·v for τ = 1/(1−α); time-first layout
    Norse         LIFBoxCell with reset_method=reset_subtract, dt·τ_mem⁻¹ = 1 − α, stepped over
                  time: its Euler step v + (1−α)(x' − v) is α·v + x for x' = x / (1 − α);
                  strict v > θ

    "<peer>-compiled"  the same layer with its per-step cell under torch.compile, the speed
                  path Norse 1.1 documents (snnTorch's Leaky compiles too); the compile
                  happens on the first call, which benchmarks run before their timed rounds

Each library keeps its own default surrogate (its fast path); the float64 reference a peer is
checked against (ours, backend="reference") uses the same surrogate formula, so a row's
"spike mismatch" and "input-gradient error" say whether it computes the same thing.
Ties v = θ (where ≥ and > differ) have probability zero for the random inputs used here.
"""

from __future__ import annotations

import copy
import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from exodus_lightning import nn as enn
from exodus_lightning import ops

Surrogate = Callable[[Tensor, Tensor], Tensor]


def _single_exponential(v: Tensor, threshold: Tensor) -> Tensor:
    return enn.surrogate.SingleExponential()(v, threshold)


def _atan(v: Tensor, threshold: Tensor, alpha: float = 2.0) -> Tensor:
    """snnTorch's default ATan: (α/2) / (1 + (π/2 · α · (v − θ))²)."""
    return (alpha / 2) / (1 + (math.pi / 2 * alpha * (v - threshold)) ** 2)


def _superspike(v: Tensor, threshold: Tensor) -> Tensor:
    """Norse's SuperSpike as it computes it: 1 / (|v − θ| + 1)² (its alpha is not used)."""
    return 1 / ((v - threshold).abs() + 1) ** 2


def _sigmoid(v: Tensor, threshold: Tensor, alpha: float = 4.0) -> Tensor:
    """SpikingJelly's default Sigmoid: α · σ(α(v − θ)) · (1 − σ(α(v − θ)))."""
    s = torch.sigmoid(alpha * (v - threshold))
    return alpha * s * (1 - s)


@dataclass(frozen=True)
class Implementation:
    """One way of running the LIF dynamics above; module: what must be importable."""

    name: str
    module: str | None
    surrogate: Surrogate
    surrogate_name: str


IMPLEMENTATIONS = {
    "exodus": Implementation("exodus", None, _single_exponential, "SingleExponential"),
    "bptt": Implementation("bptt", None, _single_exponential, "SingleExponential"),
    "sinabs": Implementation("sinabs", "sinabs", _single_exponential, "SingleExponential"),
    "snntorch": Implementation("snntorch", "snntorch", _atan, "ATan(2)"),
    "spikingjelly": Implementation("spikingjelly", "spikingjelly", _sigmoid, "Sigmoid(4)"),
    "norse": Implementation("norse", "norse", _superspike, "SuperSpike"),
    "snntorch-compiled": Implementation("snntorch-compiled", "snntorch", _atan, "ATan(2)"),
    "norse-compiled": Implementation("norse-compiled", "norse", _superspike, "SuperSpike"),
}
OURS = ("exodus", "bptt")
PEERS = ("sinabs", "snntorch", "spikingjelly", "norse")
COMPILED_PEERS = ("snntorch-compiled", "norse-compiled")
COMPILED_SUFFIX = "-compiled"


def unavailable(name: str) -> str | None:
    """None if the implementation can run here, else why not: not installed (with the install
    command) or failing to import (a broken install: the error, in one line)."""
    module = IMPLEMENTATIONS[name].module
    if module is None:
        return None
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name == module:
            return f"{name} is not installed (pip install {module})"
        return f"{name}: importing {module} failed: {one_line(error)}"
    except Exception as error:  # a broken install raises anything (ImportError, OSError, ...)
        return f"{name}: importing {module} failed: {one_line(error)}"
    return None


def one_line(error: BaseException) -> str:
    """The error as "Type: last line of its message" (isolated.run's carry the child's stderr,
    whose last line is the child's own exception)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    if isinstance(error, RuntimeError) and "failed in its own process" in str(error):
        return f"in its own process: {last}"  # the child's "Type: message" line
    return f"{type(error).__name__}: {last}" if last else type(error).__name__


# ---------------------------------------------------------------------------------------------
# One layer: (batch, time, *features) -> spikes of the same shape


class SnnTorchLIF(nn.Module):
    """snnTorch's Leaky stepped over x.unbind(1) (its usual pattern), on (B, T, ...)."""

    def __init__(self, alpha: float) -> None:
        super().__init__()
        import snntorch

        self.neuron = snntorch.Leaky(
            beta=alpha, threshold=1.0, reset_mechanism="subtract", reset_delay=False
        )

    def forward(self, x: Tensor) -> Tensor:
        membrane = self.neuron.init_leaky()
        spikes = []
        for x_t in x.unbind(1):
            spike, membrane = self.neuron(x_t, membrane)
            spikes.append(spike)
        return torch.stack(spikes, 1)


class SpikingJellyLIF(nn.Module):
    """SpikingJelly's multi-step LIFNode on (B, T, ...), transposed to and from time-first."""

    def __init__(self, alpha: float) -> None:
        super().__init__()
        from spikingjelly.activation_based import neuron

        self.neuron = neuron.LIFNode(
            tau=1.0 / (1.0 - alpha),
            decay_input=False,
            v_threshold=1.0,
            v_reset=None,
            detach_reset=False,
            step_mode="m",
        )

    def forward(self, x: Tensor) -> Tensor:
        self.neuron.reset()
        return self.neuron(x.transpose(0, 1)).transpose(0, 1)


class NorseLIF(nn.Module):
    """Norse's LIFBoxCell (subtractive reset) stepped over x.unbind(1), on (B, T, ...)."""

    DT = 1e-3  # Norse's default time step; τ_mem⁻¹ is set so that dt · τ_mem⁻¹ = 1 − α

    def __init__(self, alpha: float) -> None:
        super().__init__()
        from norse.torch import LIFBoxCell, LIFBoxParameters
        from norse.torch.functional.reset import reset_subtract

        self.leak = 1.0 - alpha
        parameters = LIFBoxParameters(
            tau_mem_inv=torch.tensor(self.leak / self.DT),
            v_th=torch.tensor(1.0),
            v_reset=torch.tensor(0.0),
            method="super",
            reset_method=reset_subtract,
        )
        self.cell = LIFBoxCell(p=parameters, dt=self.DT)

    def forward(self, x: Tensor) -> Tensor:
        state = None
        spikes = []
        for x_t in (x / self.leak).unbind(1):
            spike, state = self.cell(x_t, state)
            spikes.append(spike)
        return torch.stack(spikes, 1)


PEER_LAYERS = {"snntorch": SnnTorchLIF, "spikingjelly": SpikingJellyLIF, "norse": NorseLIF}


def peer_layer(name: str, alpha: float) -> nn.Module:
    """A peer's layer of PEER_LAYERS; for "<peer>-compiled", with its per-step cell compiled."""
    layer = PEER_LAYERS[name.removesuffix(COMPILED_SUFFIX)](alpha)
    if name.endswith(COMPILED_SUFFIX):
        # The cell, not the time loop: compiling the loop unrolls all T steps into one graph.
        if isinstance(layer, NorseLIF):
            layer.cell = torch.compile(layer.cell)
        elif isinstance(layer, SnnTorchLIF):
            layer.neuron = torch.compile(layer.neuron)
        else:
            raise ValueError(f"implementation={name!r}: no compiled variant of this peer")
    return layer


class LeakyIntegratorLoop(nn.Module):
    """Non-spiking readout y_t = α · y_{t−1} + x_t as a Python loop (the peers' readout)."""

    def __init__(self, alpha: float) -> None:
        super().__init__()
        self.alpha = alpha

    def forward(self, x: Tensor) -> Tensor:
        state = torch.zeros_like(x[:, 0])
        outputs = []
        for x_t in x.unbind(1):
            state = self.alpha * state + x_t
            outputs.append(state)
        return torch.stack(outputs, 1)


def lif_layer(name: str, alpha: float, device: str = "cpu") -> Callable[[Tensor], Tensor]:
    """The LIF dynamics above in one implementation: x (B, T, ...) -> spikes (B, T, ...)."""
    if name in OURS:
        backend = "extension" if name == "exodus" else "reference"
        return lambda x: ops.lif(x, alpha, 1.0, max_spikes=1, backend=backend)[0]
    if name == "sinabs":
        from sinabs import activation, layers

        layer = layers.LIF(
            tau_mem=-1.0 / math.log(alpha), spike_fn=activation.SingleSpike, norm_input=False
        )
        layer.tau_mem.requires_grad_(False)  # α fixed, as in the other rows
        layer.to(device)

        def forward(x: Tensor) -> Tensor:
            layer.reset_states()
            return layer(x)

        return forward
    if name.removesuffix(COMPILED_SUFFIX) in PEER_LAYERS:
        return peer_layer(name, alpha).to(device)
    raise ValueError(f"implementation={name!r}: choose from {', '.join(IMPLEMENTATIONS)}")


def reference_layer(name: str, alpha: float) -> Callable[[Tensor], Tensor]:
    """Ours, as a float64-capable autograd loop, with implementation name's surrogate."""
    surrogate = IMPLEMENTATIONS[name].surrogate
    return lambda x: ops.lif(
        x, alpha, 1.0, max_spikes=1, surrogate=surrogate, backend="reference"
    )[0]


# ---------------------------------------------------------------------------------------------
# Networks: ours (models.FeedForwardSNN / ConvSNN, single spike) with its LIF layers swapped


def swap_neurons(model: nn.Module, name: str) -> nn.Module:
    """A deep copy of model (same weights) whose LIF and ExpLeak layers run in implementation
    name; the module names stay, so hooks find the same layers in every copy."""
    clone = copy.deepcopy(model)
    enn.reset_states(clone)
    if name in OURS:
        backend = "extension" if name == "exodus" else "reference"
        for layer in clone.modules():
            if isinstance(layer, (enn.LIF, enn.ExpLeak)):
                layer.backend = backend
        return clone
    if name == "sinabs":
        from exodus_lightning.convert import to_sinabs

        return to_sinabs(clone)
    for parent in clone.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, enn.LIF):
                setattr(parent, child_name, peer_layer(name, _scalar_alpha(child)))
            elif isinstance(child, enn.ExpLeak):
                setattr(parent, child_name, LeakyIntegratorLoop(_scalar_alpha(child)))
    return clone


def reference_network(model: nn.Module, name: str) -> nn.Module:
    """A float64 copy of model on the autograd reference, with name's surrogate in every LIF."""
    clone = swap_neurons(model, "bptt").double()
    for layer in clone.modules():
        if isinstance(layer, enn.LIF):
            layer.surrogate_grad_fn = IMPLEMENTATIONS[name].surrogate
    return clone


def _scalar_alpha(layer: nn.Module) -> float:
    alpha = torch.exp(-1.0 / torch.as_tensor(layer.tau_mem, dtype=torch.float64))
    if alpha.numel() != 1:
        raise ValueError("the peer networks take one τ per layer (a scalar tau_mem)")
    return float(alpha)


def spiking_layer_names(model: nn.Module) -> list[str]:
    """Module names of model's LIF layers (the same in every swap_neurons copy)."""
    return [name for name, layer in model.named_modules() if isinstance(layer, enn.LIF)]


def record_spikes(model: nn.Module, names: list[str]) -> tuple[list[Tensor], Callable[[], None]]:
    """Forward hooks that append the output of each named layer; returns (outputs, remove)."""
    outputs: list[Tensor] = []
    modules = dict(model.named_modules())
    hooks = [
        modules[name].register_forward_hook(lambda _m, _i, out: outputs.append(out.detach()))
        for name in names
    ]

    def remove() -> None:
        for hook in hooks:
            hook.remove()

    return outputs, remove
