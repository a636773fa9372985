"""Surrogate gradients dS/dV for the spike non-linearity.

Each is a small frozen dataclass, callable as ``surrogate(v_mem, threshold) -> dS/dV`` on tensors
(the readable definition, used by the reference backend and for custom surrogates), and carries a
``kernel_code``/``kernel_params`` pair so the extension evaluates the same formula fused inside
its backward scan. Any other callable with that signature works too, if elementwise in v_mem; the
extension then evaluates it on the saved membrane (in blocks of batch rows, or compiled when
wrapped by ops.compiled_surrogate: see custom_surrogate.py) and passes the result in.

Formulas (v = pre-reset membrane, θ = threshold). SingleExponential, PeriodicExponential,
Heaviside and Gaussian (with sinabs' mu = 0) are sinabs' definitions, equal at every threshold.

- SingleExponential:   scale / (θ·w) · exp(−|v − θ| / (θ·w))      (w relative to θ)
- PeriodicExponential: scale · exp(−|d| / w)                       (w absolute, no 1/θ), with
                       d = v − θ below θ and d = θ·(2·frac(v/θ − ½) − 1) from θ on: a peak of
                       height scale at every multiple of θ, twice as narrow above threshold
- Heaviside:           1[v ≥ θ − window] / θ
- Gaussian:            scale · exp(−(v − θ)² / (2σ²)) / (√(2π)·σ)
- FastSigmoid:         scale / (1 + slope·|v − θ|)²            (SuperSpike, Zenke & Ganguli 2018)
- ArcTan:              scale · (α/2) / (1 + (π/2 · α · (v − θ))²)
- Triangle:            scale · max(0, 1 − |v − θ|/w) / w
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

__all__ = [
    "ArcTan",
    "FastSigmoid",
    "Gaussian",
    "Heaviside",
    "PeriodicExponential",
    "SingleExponential",
    "SuperSpike",
    "Triangle",
    "BuiltinSurrogate",
]


def _positive(name: str, value: float, owner: str) -> None:
    if not value > 0:
        raise ValueError(f"{owner}: {name} must be > 0, got {value}")


@dataclass(frozen=True)
class BuiltinSurrogate:
    """Base of the surrogates the extension can evaluate inside its kernels."""

    kernel_code: ClassVar[int] = -1

    @property
    def kernel_params(self) -> tuple[float, float]:
        raise NotImplementedError

    def __call__(self, v_mem: Tensor, threshold: Tensor | float) -> Tensor:
        raise NotImplementedError


@dataclass(frozen=True)
class SingleExponential(BuiltinSurrogate):
    """Exponential peak at threshold; width and scale relative to the threshold (sinabs)."""

    grad_width: float = 0.5
    grad_scale: float = 1.0
    kernel_code: ClassVar[int] = 0

    def __post_init__(self) -> None:
        _positive("grad_width", self.grad_width, "SingleExponential")

    @property
    def kernel_params(self) -> tuple[float, float]:
        return (self.grad_width, self.grad_scale)

    def __call__(self, v_mem: Tensor, threshold: Tensor | float) -> Tensor:
        width = threshold * self.grad_width
        return self.grad_scale / width * torch.exp(-(v_mem - threshold).abs() / width)


@dataclass(frozen=True)
class PeriodicExponential(BuiltinSurrogate):
    """Exponential peaks at every multiple of the threshold, for multi-spike neurons (sinabs').

    Weidel & Sheik 2021. σ = scale · exp(−|d| / w) with an absolute width w and
    d = v − θ for v < θ, d = θ·(2·frac(v/θ − ½) − 1) for v ≥ θ (so |d| ≤ θ and the peaks above
    threshold decay twice as fast as the one below it), exactly as sinabs computes it.
    """

    grad_width: float = 0.5
    grad_scale: float = 1.0
    kernel_code: ClassVar[int] = 1

    def __post_init__(self) -> None:
        _positive("grad_width", self.grad_width, "PeriodicExponential")

    @property
    def kernel_params(self) -> tuple[float, float]:
        return (self.grad_width, self.grad_scale)

    def __call__(self, v_mem: Tensor, threshold: Tensor | float) -> Tensor:
        n = v_mem / threshold - 0.5
        above = threshold * (2 * (n - torch.floor(n)) - 1)
        d = torch.where(v_mem >= threshold, above, v_mem - threshold)
        return self.grad_scale * torch.exp(-d.abs() / self.grad_width)


@dataclass(frozen=True)
class Heaviside(BuiltinSurrogate):
    """Box: 1/θ for v ≥ θ − window, else 0 (sinabs)."""

    window: float = 1.0
    kernel_code: ClassVar[int] = 2

    @property
    def kernel_params(self) -> tuple[float, float]:
        return (self.window, 0.0)

    def __call__(self, v_mem: Tensor, threshold: Tensor | float) -> Tensor:
        return (v_mem >= threshold - self.window).to(v_mem.dtype) / threshold


@dataclass(frozen=True)
class Gaussian(BuiltinSurrogate):
    """Normal density of width sigma centred at threshold."""

    sigma: float = 0.5
    grad_scale: float = 1.0
    kernel_code: ClassVar[int] = 3

    def __post_init__(self) -> None:
        _positive("sigma", self.sigma, "Gaussian")

    @property
    def kernel_params(self) -> tuple[float, float]:
        return (self.sigma, self.grad_scale)

    def __call__(self, v_mem: Tensor, threshold: Tensor | float) -> Tensor:
        d = (v_mem - threshold) / self.sigma
        return self.grad_scale * torch.exp(-d * d / 2) / (math.sqrt(2 * math.pi) * self.sigma)


@dataclass(frozen=True)
class FastSigmoid(BuiltinSurrogate):
    """Derivative of a fast sigmoid, 1 / (1 + slope·|v − θ|)² (SuperSpike)."""

    slope: float = 10.0
    grad_scale: float = 1.0
    kernel_code: ClassVar[int] = 4

    def __post_init__(self) -> None:
        _positive("slope", self.slope, "FastSigmoid")

    @property
    def kernel_params(self) -> tuple[float, float]:
        return (self.slope, self.grad_scale)

    def __call__(self, v_mem: Tensor, threshold: Tensor | float) -> Tensor:
        d = 1 + self.slope * (v_mem - threshold).abs()
        return self.grad_scale / (d * d)


SuperSpike = FastSigmoid


@dataclass(frozen=True)
class ArcTan(BuiltinSurrogate):
    """Derivative of (1/π)·arctan(π/2·α·(v − θ)) (snnTorch's ATan)."""

    alpha: float = 2.0
    grad_scale: float = 1.0
    kernel_code: ClassVar[int] = 5

    def __post_init__(self) -> None:
        _positive("alpha", self.alpha, "ArcTan")

    @property
    def kernel_params(self) -> tuple[float, float]:
        return (self.alpha, self.grad_scale)

    def __call__(self, v_mem: Tensor, threshold: Tensor | float) -> Tensor:
        d = math.pi / 2 * self.alpha * (v_mem - threshold)
        return self.grad_scale * self.alpha / 2 / (1 + d * d)


@dataclass(frozen=True)
class Triangle(BuiltinSurrogate):
    """Triangle of half width w (absolute), peak scale/w at threshold."""

    width: float = 1.0
    grad_scale: float = 1.0
    kernel_code: ClassVar[int] = 6

    def __post_init__(self) -> None:
        _positive("width", self.width, "Triangle")

    @property
    def kernel_params(self) -> tuple[float, float]:
        return (self.width, self.grad_scale)

    def __call__(self, v_mem: Tensor, threshold: Tensor | float) -> Tensor:
        d = 1 - (v_mem - threshold).abs() / self.width
        return self.grad_scale * d.clamp(min=0) / self.width
