"""Adaptive LIF layer of SE-adLIF (Baronig et al. 2025) on the fused EXODUS adLIF op."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from exodus_lightning import ops
from exodus_lightning.ops.adlif import AUTHORS_SURROGATE

from . import activation as act
from . import parameters as p
from .stateful import StatefulLayer

SurrogateFn = Callable[[Tensor, Tensor], Tensor]


def _range(name: str, value: Sequence[float], positive: bool = False) -> tuple[float, float]:
    low, high = (float(v) for v in value)
    if not low <= high or (positive and not low > 0):
        need = "0 < low <= high" if positive else "low <= high"
        raise ValueError(f"{name} must be (low, high) with {need}, got {tuple(value)}")
    return low, high


def _within(value: Tensor, low: float, high: float) -> Tensor:
    """value clipped to [low, high] forward, gradient passed through unchanged: inside the range
    (where the authors' projection keeps the parameters) it is value itself, bit for bit, with
    gradient 1 even on the bounds (torch.clamp's would be 0 there and freeze a projected value)."""
    return value + (value.clamp(low, high) - value).detach()


class adLIF(StatefulLayer):
    """Adaptive leaky integrate-and-fire neurons of SE-adLIF (Baronig, Ferrand, Sabathiel &
    Legenstein, Nature Communications 2025), symplectic-Euler discretisation.

    Per neuron and time step t (docs/adlif_math.md), with x_t the input current:

        u_t  = α · u⁺_{t−1} + (1 − α) · (x_t − w_{t−1})
        s_t  = 1[u_t > θ]
        u⁺_t = 0 if s_t > 0 else u_t
        w_t  = β · w_{t−1} + (1 − β) · q · (a · u⁺_t + b · s_t)

    Trainable per-neuron parameters, parametrised as in the authors' code:

        α = exp(−1/τ_u),  τ_u = τ_u,min + κ_u · (τ_u,max − τ_u,min),  κ_u ∈ [0, 1]  (``kappa_u``)
        β = exp(−1/τ_w),  τ_w = τ_w,min + κ_w · (τ_w,max − τ_w,min),  κ_w ∈ [0, 1]  (``kappa_w``)
        a ∈ a_range, b ∈ b_range                                                   (``a``, ``b``)

    initialised uniformly in their ranges. The authors keep them in range by projection: after
    every training batch they clamp κ_u, κ_w, a and b in place. Call
    :meth:`apply_parameter_constraints` (or :func:`apply_parameter_constraints` on a network)
    after each optimizer step to do the same. Forward always uses the values clipped to the
    ranges, with the gradient passed straight through, so it equals the authors' layer whenever
    the parameters are in range and never runs out-of-range dynamics.

    The spike inside the reset is detached (``gradient="slayer"``, the authors' choice; "exodus"
    differentiates it); the default surrogate is theirs, exp(−5·|u − 1|) (SLAYER with α = 5,
    c = 0.4; ``SingleExponential(grad_width=0.2, grad_scale=0.2)`` at θ = 1).

    States: ``u`` (the post-reset membrane u⁺) and ``w``, (batch, *features), zeros at first
    and again on a new batch size (as the authors' layer, which starts every sequence from rest).

    Args:
        num_neurons: the feature shape, an int or a tuple (the input is (batch, time, *shape)).
        tau_u_range: (τ_u,min, τ_u,max), default the authors' (5, 25).
        tau_w_range: (τ_w,min, τ_w,max), default (60, 300).
        a_range, b_range: ranges of a and b, default (0, 1) and (0, 2).
        q: fixed factor of a and b, default 120 (the authors' SE-adLIF configs).
        threshold: θ > 0, default 1 (not trained; a number stays exact through .double()).
        surrogate_grad_fn: callable (u_mem, threshold) -> dS/du.
        gradient: "slayer" (default) or "exodus".
        train_tau_u, train_tau_w, train_a, train_b: which parameters get gradients.
        record_states: keep the (batch, time, *features) traces of the pre-reset membrane and
            of w in ``self.recordings`` ("u_mem", "w").
        backend: "auto", "extension" or "reference" (the autograd loop).
    """

    batch_change = "zeros"

    def __init__(
        self,
        num_neurons: int | Sequence[int],
        tau_u_range: Sequence[float] = (5.0, 25.0),
        tau_w_range: Sequence[float] = (60.0, 300.0),
        a_range: Sequence[float] = (0.0, 1.0),
        b_range: Sequence[float] = (0.0, 2.0),
        q: float = 120.0,
        threshold: float | Tensor = 1.0,
        surrogate_grad_fn: SurrogateFn = AUTHORS_SURROGATE,
        gradient: str = "slayer",
        *,
        train_tau_u: bool = True,
        train_tau_w: bool = True,
        train_a: bool = True,
        train_b: bool = True,
        record_states: bool = False,
        backend: str = "auto",
    ) -> None:
        super().__init__(["u", "w"])
        shape = (num_neurons,) if isinstance(num_neurons, int) else tuple(num_neurons)
        if not shape or any(isinstance(n, bool) or not isinstance(n, int) or n < 1
                            for n in shape):
            raise ValueError(f"num_neurons must be a positive int or a tuple of them (the "
                             f"feature shape), got {num_neurons!r}")
        self.features = shape
        self.tau_u_range = _range("tau_u_range", tau_u_range, positive=True)
        self.tau_w_range = _range("tau_w_range", tau_w_range, positive=True)
        self.a_range = _range("a_range", a_range)
        self.b_range = _range("b_range", b_range)
        q = float(q)
        if not math.isfinite(q):
            raise ValueError(f"q must be finite, got {q}")
        self.q = q
        threshold_t = p.as_tensor("threshold", threshold)
        if torch.isnan(threshold_t).any() or not bool((threshold_t > 0).all()) or bool(
                torch.isinf(threshold_t).any()):
            raise ValueError(f"threshold must be finite and > 0, got {threshold}")
        self.register_buffer("threshold", threshold_t)
        self._keep_exact("threshold", threshold)  # .double() restores a number's digits
        act.check_surrogate(surrogate_grad_fn)
        self.surrogate_grad_fn = surrogate_grad_fn
        ops.check_choice("gradient", gradient, ops.GRADIENTS)
        self.gradient = gradient
        ops.check_choice("backend", backend, ops.BACKENDS)
        self.backend = backend
        self.record_states = bool(record_states)
        self.recordings: dict[str, Tensor] = {}
        self.kappa_u = nn.Parameter(torch.rand(shape), requires_grad=train_tau_u)
        self.kappa_w = nn.Parameter(torch.rand(shape), requires_grad=train_tau_w)
        self.a = nn.Parameter(self._uniform(shape, self.a_range), requires_grad=train_a)
        self.b = nn.Parameter(self._uniform(shape, self.b_range), requires_grad=train_b)

    @staticmethod
    def _uniform(shape: tuple[int, ...], bounds: tuple[float, float]) -> Tensor:
        low, high = bounds
        return torch.rand(shape) * (high - low) + low

    # --- the authors' parametrisation ---------------------------------------------------------

    @property
    def tau_u(self) -> Tensor:
        """Membrane time constant τ_u = τ_min + κ_u · (τ_max − τ_min) (κ_u clipped to [0, 1])."""
        low, high = self.tau_u_range
        kappa = _within(self.kappa_u, 0.0, 1.0)
        return kappa * high + (1 - kappa) * low

    @property
    def tau_w(self) -> Tensor:
        """Adaptation time constant τ_w, as τ_u."""
        low, high = self.tau_w_range
        kappa = _within(self.kappa_w, 0.0, 1.0)
        return kappa * high + (1 - kappa) * low

    @property
    def alpha(self) -> Tensor:
        """Membrane decay α = exp(−1/τ_u)."""
        return torch.exp(-1.0 / self.tau_u)

    @property
    def beta(self) -> Tensor:
        """Adaptation decay β = exp(−1/τ_w)."""
        return torch.exp(-1.0 / self.tau_w)

    @property
    def coupling(self) -> tuple[Tensor, Tensor]:
        """(q · a, q · b) with a, b clipped to their ranges: the couplings the update uses."""
        return (self.q * _within(self.a, *self.a_range),
                self.q * _within(self.b, *self.b_range))

    @torch.no_grad()
    def apply_parameter_constraints(self) -> None:
        """Project κ_u, κ_w into [0, 1] and a, b into their ranges, in place (the authors do
        this after every training batch)."""
        self.kappa_u.clamp_(0.0, 1.0)
        self.kappa_w.clamp_(0.0, 1.0)
        self.a.clamp_(*self.a_range)
        self.b.clamp_(*self.b_range)

    @property
    def does_spike(self) -> bool:
        """True: the layer emits spikes (sinabs' ``does_spike``)."""
        return True

    # --- forward --------------------------------------------------------------------------

    def forward(self, x: Tensor) -> Tensor:
        """(batch, time, *num_neurons) input current -> spikes of the same shape and dtype."""
        p.check_input(type(self).__name__, x, squeeze_hint=False)
        p.check_device(self, x)
        self._check_parameters(x)
        self.prepare_states(x)
        spikes, self.recordings = self._run(x)
        self._last_output = spikes
        return spikes

    def _check_parameters(self, x: Tensor) -> None:
        if tuple(x.shape[2:]) != self.features:
            raise p.ShapeError(f"{type(self).__name__} was built for features {self.features}, "
                               f"got input of shape {tuple(x.shape)} (features "
                               f"{tuple(x.shape[2:])})")

    def _run(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The dynamics on x (batch, time, *features) from the current states, which it
        updates: the spikes and the recordings (empty unless record_states)."""
        a, b = self.coupling
        spikes, u_mem, w, self.u, self.w = ops.adlif(
            x, self.alpha, self.beta, a, b, self.threshold, self.u, self.w,
            surrogate=act.fused_surrogate(self.surrogate_grad_fn), gradient=self.gradient,
            backend=self.backend,
        )
        return spikes, ({"u_mem": u_mem, "w": w} if self.record_states else {})

    def extra_repr(self) -> str:
        parts = [f"num_neurons={self.features}", f"tau_u_range={self.tau_u_range}",
                 f"tau_w_range={self.tau_w_range}", f"a_range={self.a_range}",
                 f"b_range={self.b_range}", f"q={self.q:g}",
                 f"threshold={p.format_value(self.threshold)}",
                 f"surrogate_grad_fn={self.surrogate_grad_fn!r}", f"gradient={self.gradient!r}"]
        if self.backend != "auto":
            parts.append(f"backend={self.backend!r}")
        return ", ".join(parts)


def apply_parameter_constraints(module: nn.Module) -> None:
    """Project the parameters of every layer inside module that keeps its parameters in range by
    projection (a method ``apply_parameter_constraints``, e.g. adLIF) into their ranges."""
    for layer in module.modules():
        project = getattr(layer, "apply_parameter_constraints", None)
        if callable(project):
            project()
