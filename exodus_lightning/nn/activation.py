"""sinabs-style spike and reset functions, and how the layers read sinabs' own.

A sinabs user passes ``spike_fn``, ``reset_fn`` and ``surrogate_grad_fn`` objects to a layer.
The layers accept the ones defined here (same names and fields as ``sinabs.activation``) and
sinabs' own, recognised by module and class name so that sinabs stays optional, and map them
onto the fused op:

    spike_fn   MultiSpike → max_spikes_per_step=None, SingleSpike → 1, MaxSpike(K) → K
    reset_fn   MembraneSubtract(m) → reset="subtract", subtract_value=m (None: the threshold)
               MembraneReset()     → reset="zero" (reset_value must be 0)
    surrogate  SingleExponential, PeriodicExponential, Heaviside, Gaussian(mu=0) → the fused
               built-ins of :mod:`exodus_lightning.ops.surrogate` (re-exported here; our
               Gaussian has no mu); any other callable (MultiGaussian, sinabs' Gaussian with
               mu ≠ 0, your own) is evaluated once per backward pass

Anything else (a custom spike autograd.Function, a reset with a value) raises
:class:`UnsupportedActivationError`. The classes here also work as sinabs' do when called
directly (``MultiSpike.apply(v, θ, surrogate)``, ``MembraneSubtract()(spikes, state, θ)``), so
sinabs' own layers accept them too.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from exodus_lightning.ops import surrogate as sg
from exodus_lightning.ops.surrogate import (
    Gaussian,
    Heaviside,
    PeriodicExponential,
    SingleExponential,
)

__all__ = [
    "Gaussian",
    "Heaviside",
    "MaxSpike",
    "MembraneReset",
    "MembraneSubtract",
    "MultiGaussian",
    "MultiSpike",
    "PeriodicExponential",
    "SingleExponential",
    "SingleSpike",
    "UnsupportedActivationError",
]

SurrogateFn = Callable[[Tensor, Tensor], Tensor]


class UnsupportedActivationError(NotImplementedError, ValueError):
    """A spike_fn / reset_fn the fused op cannot reproduce (NotImplementedError, as
    sinabs-exodus raises; also a ValueError, as our other argument errors)."""


class _SpikeCount(torch.autograd.Function):
    """s = min(K, floor(v/θ)) for v ≥ θ, else 0; ds/dv = surrogate(v, θ); no gradient for θ."""

    @staticmethod
    def forward(ctx, v_mem: Tensor, threshold: Tensor | float, surrogate: SurrogateFn,
                max_spikes: int | None) -> Tensor:
        ctx.save_for_backward(v_mem)
        ctx.threshold = threshold
        ctx.surrogate = surrogate
        spikes = torch.where(v_mem >= threshold, torch.floor(v_mem / threshold),
                             torch.zeros_like(v_mem))
        return spikes if max_spikes is None else spikes.clamp(max=max_spikes)

    @staticmethod
    def backward(ctx, grad_spikes: Tensor):
        (v_mem,) = ctx.saved_tensors
        return grad_spikes * ctx.surrogate(v_mem, ctx.threshold), None, None, None


class MultiSpike:
    """Any number of spikes per step, floor(v/θ) (pass the class itself, as in sinabs)."""

    required_states: ClassVar[list[str]] = ["v_mem"]

    @staticmethod
    def apply(v_mem: Tensor, spike_threshold: Tensor | float, surrogate_grad_fn: SurrogateFn
              ) -> Tensor:
        return _SpikeCount.apply(v_mem, spike_threshold, surrogate_grad_fn, None)


class SingleSpike:
    """At most one spike per step, 1[v ≥ θ] (pass the class itself, as in sinabs)."""

    required_states: ClassVar[list[str]] = ["v_mem"]

    @staticmethod
    def apply(v_mem: Tensor, spike_threshold: Tensor | float, surrogate_grad_fn: SurrogateFn
              ) -> Tensor:
        return _SpikeCount.apply(v_mem, spike_threshold, surrogate_grad_fn, 1)


@dataclass
class MaxSpike:
    """At most max_num_spikes_per_bin spikes per step (an instance, as in sinabs)."""

    max_num_spikes_per_bin: int | None = None
    required_states: ClassVar[list[str]] = ["v_mem"]

    def apply(self, v_mem: Tensor, spike_threshold: Tensor | float,
              surrogate_grad_fn: SurrogateFn) -> Tensor:
        return _SpikeCount.apply(v_mem, spike_threshold, surrogate_grad_fn,
                                 self.max_num_spikes_per_bin)


@dataclass
class MembraneSubtract:
    """Reset by subtraction: v − m·s, with m = subtract_value (None: the threshold)."""

    subtract_value: float | Tensor | None = None

    def __call__(self, spikes: Tensor, state: dict[str, Tensor], spike_threshold: Tensor | float
                 ) -> dict[str, Tensor]:
        amount = spike_threshold if self.subtract_value is None else self.subtract_value
        return {**state, "v_mem": state["v_mem"] - spikes * amount}


@dataclass
class MembraneReset:
    """Reset to zero where a neuron spiked, v·1[s = 0]; no gradient flows through the spike.

    Only reset_value = 0 is supported by the layers (sinabs adds a non-zero reset_value to
    every neuron at every step, not only to those that spiked).
    """

    reset_value: float = 0.0

    def __call__(self, spikes: Tensor, state: dict[str, Tensor], spike_threshold: Tensor | float
                 ) -> dict[str, Tensor]:
        v_mem = state["v_mem"]
        return {**state, "v_mem": torch.where(spikes == 0, v_mem, self.reset_value)}


@dataclass(frozen=True)
class MultiGaussian:
    """Yin et al. 2021's surrogate: a Gaussian with two wide negative side lobes.

        σ = scale · [(1 + h)·N(d; mu, σ²) − h·N(d; σ, (sσ)²) − h·N(d; −σ, (sσ)²)],  d = v − θ

    with N the normal density. Not fused into the kernels: evaluated once per backward pass.
    """

    mu: float = 0.0
    sigma: float = 0.5
    h: float = 0.15
    s: float = 6.0
    grad_scale: float = 1.0

    def __call__(self, v_mem: Tensor, threshold: Tensor | float) -> Tensor:
        d = v_mem - threshold

        def normal(mean: float, std: float) -> Tensor:
            return torch.exp(-((d - mean) ** 2) / (2 * std**2)) / (std * (2 * torch.pi) ** 0.5)

        wide = self.s * self.sigma
        return self.grad_scale * ((1 + self.h) * normal(self.mu, self.sigma)
                                  - self.h * normal(self.sigma, wide)
                                  - self.h * normal(-self.sigma, wide))


# --- recognising sinabs' objects (without importing sinabs) -----------------------------------

def sinabs_name(obj: Any) -> str | None:
    """The class name of a sinabs / sinabs-exodus object or class, None for anything else."""
    cls = obj if isinstance(obj, type) else type(obj)
    module = getattr(cls, "__module__", "") or ""
    return cls.__name__ if module == "sinabs" or module.startswith("sinabs.") else None


def _kind(obj: Any) -> str | None:
    """'MultiSpike', 'MembraneReset', ...: for our classes and sinabs' alike."""
    if obj in (MultiSpike, SingleSpike) or isinstance(obj, (MaxSpike, MembraneSubtract,
                                                            MembraneReset)):
        return obj.__name__ if isinstance(obj, type) else type(obj).__name__
    return sinabs_name(obj)


def _describe(obj: Any) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def max_spikes_of(spike_fn: Any) -> int | None:
    """max_spikes_per_step for a spike_fn: MultiSpike → None, SingleSpike → 1, MaxSpike(K) → K."""
    kind = _kind(spike_fn)
    if kind == "MultiSpike" and isinstance(spike_fn, type):
        return None
    if kind == "SingleSpike" and isinstance(spike_fn, type):
        return 1
    if kind == "MaxSpike":
        limit = getattr(spike_fn, "max_num_spikes_per_bin", None)
        if limit is None:
            return None
        # sinabs clamps the spike count with it, so a whole float (MaxSpike(2.0)) works there.
        whole = (isinstance(limit, numbers.Integral)
                 or (isinstance(limit, numbers.Real) and float(limit).is_integer()))
        if isinstance(limit, bool) or not whole or limit < 1:
            raise UnsupportedActivationError(
                f"spike_fn=MaxSpike({limit!r}) is not supported: max_num_spikes_per_bin must be "
                f"None or a whole number >= 1")
        return int(limit)
    if kind in ("MultiSpike", "SingleSpike"):
        raise UnsupportedActivationError(
            f"spike_fn: pass the class {kind} itself, not an instance (as in sinabs)")
    raise UnsupportedActivationError(
        f"spike_fn={_describe(spike_fn)} is not supported by the fused op: use MultiSpike, "
        f"SingleSpike or MaxSpike(K) (from sinabs.activation or "
        f"exodus_lightning.nn.activation), or max_spikes_per_step")


def spike_fn_for(max_spikes: int | None) -> Any:
    """Our spike_fn for a spike limit (the inverse of max_spikes_of)."""
    if max_spikes is None:
        return MultiSpike
    return SingleSpike if max_spikes == 1 else MaxSpike(max_spikes)


def reset_of(reset_fn: Any) -> tuple[str, float | Tensor | None]:
    """(reset, subtract_value) for a reset_fn: MembraneSubtract(m) or MembraneReset()."""
    kind = _kind(reset_fn)
    if kind == "MembraneSubtract":
        return "subtract", getattr(reset_fn, "subtract_value", None)
    if kind == "MembraneReset":
        value = getattr(reset_fn, "reset_value", 0.0)
        if isinstance(value, Tensor):
            value = value.detach()
            zero = bool((value == 0).all())
        else:
            zero = value == 0
        if not zero:
            raise UnsupportedActivationError(
                f"reset_fn=MembraneReset(reset_value={value!r}) is not supported: only "
                f"reset_value=0 (sinabs adds a non-zero value to every neuron at every step)")
        return "zero", None
    raise UnsupportedActivationError(
        f"reset_fn={_describe(reset_fn)} is not supported by the fused op: use "
        f"MembraneSubtract(subtract_value) or MembraneReset() (from sinabs.activation or "
        f"exodus_lightning.nn.activation), or reset='subtract'/'zero'")


def reset_fn_for(reset: str, subtract_value: float | Tensor | None) -> Any:
    """Our reset_fn for a reset mode (the inverse of reset_of)."""
    return MembraneReset() if reset == "zero" else MembraneSubtract(subtract_value)


def _number(value: Any) -> float | None:
    """A float from a float or one-element tensor; None if it is neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, Tensor) and value.numel() == 1 and value.is_floating_point():
        return float(value.item())
    return None


# The fields each sinabs surrogate with a fused twin needs (sinabs' names).
_SURROGATE_FIELDS = {
    "SingleExponential": ("grad_width", "grad_scale"),
    "PeriodicExponential": ("grad_width", "grad_scale"),
    "Heaviside": ("window",),
    "Gaussian": ("mu", "sigma", "grad_scale"),
}


def fused_surrogate(surrogate: SurrogateFn) -> SurrogateFn:
    """The built-in surrogate equal to a sinabs surrogate (fused into the kernels), or the
    callable itself when there is none (it is then evaluated once per backward pass).

    A sinabs surrogate whose fields are not plain numbers (a tensor of several values, a
    subclass's own) is evaluated as given; one whose values the twin rejects (grad_width or
    sigma <= 0: NaN or sign-flipped gradients in sinabs) raises the twin's ValueError.
    """
    name = sinabs_name(surrogate)
    if name not in _SURROGATE_FIELDS:
        return surrogate
    fields = {key: _number(getattr(surrogate, key, None)) for key in _SURROGATE_FIELDS[name]}
    if any(value is None for value in fields.values()):
        return surrogate  # a field we cannot read as a number: evaluate it as given
    try:
        if name == "SingleExponential":
            return sg.SingleExponential(fields["grad_width"], fields["grad_scale"])
        if name == "PeriodicExponential":
            return sg.PeriodicExponential(fields["grad_width"], fields["grad_scale"])
        if name == "Heaviside":
            return sg.Heaviside(fields["window"])
        if name == "Gaussian" and fields["mu"] == 0.0:
            return sg.Gaussian(fields["sigma"], fields["grad_scale"])
    except ValueError as error:
        raise ValueError(f"surrogate_grad_fn={surrogate!r} ({_describe(surrogate)}): "
                         f"{error}") from error
    return surrogate


def check_surrogate(surrogate: Any) -> None:
    """surrogate must be callable, and a sinabs surrogate's values valid (see fused_surrogate)."""
    if not callable(surrogate):
        raise TypeError(f"surrogate_grad_fn must be a callable (v_mem, threshold) -> dS/dV, "
                        f"e.g. nn.surrogate.SingleExponential(), got {type(surrogate).__name__}")
    fused_surrogate(surrogate)
