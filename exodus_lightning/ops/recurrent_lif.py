"""Recurrent LIF as one op over the sequence: ``lif_recurrent(x, weight, bias, alpha, ...)``.

The neuron model of :func:`recurrent_scan` for LIF (docs/exodus_math.md), with the optional
synaptic current and input normalisation of the LIF layer. Per neuron and step, on the input
x̃_t = x_t + W·s_{t−1} + b:

    i_t  = β · (i_{t−1} + x̃_t)   (decay_early)   or   β · i_{t−1} + x̃_t   (with β; else i_t = x̃_t)
    d_t  = (1 − α) · i_t   (norm_input)   or   i_t
    s_t, v_t, v⁺_t = the fused LIF step on d_t from v⁺_{t−1}     (lif_forward with T = 1)

The adjoint step is lif_backward with T = 1 (ρ_t = ∂L/∂v⁺_t in, ρ_{t−1} and λ_t = ∂L/∂d_t out,
the parameter sums of that step), followed by the synaptic current's adjoint:

    ν_t = ∂L/∂i_t = (1 − α) · λ_t (or λ_t) + ∂L/∂i_t (recorded trace) + κ_t
    decay_early:  ∂L/∂x̃_t = β·ν_t,  κ_{t−1} = β·ν_t,  ∂L/∂β += ν_t · (i_{t−1} + x̃_t)
    otherwise:    ∂L/∂x̃_t = ν_t,    κ_{t−1} = β·ν_t,  ∂L/∂β += ν_t · i_{t−1}
    norm_input:   ∂L/∂α += −λ_t · i_t

κ_t = ∂L/∂i_t through step t+1 (κ_T: the gradient of the last state).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from . import _arguments as args
from ._codes import GRADIENTS, RESETS, SURROGATE_GIVEN
from ._library import PARAM_GRAD_BITS, ops
from .custom_surrogate import evaluate
from .lif import _FUSED_SURROGATES
from .recurrent import RecurrentNeuron, recurrent_scan
from .reference import lif_recurrent_reference
from .surrogate import SingleExponential

SurrogateFn = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class LIFSettings:
    """The fixed settings of a recurrent LIF scan (kernel codes, see _codes.py)."""

    max_spikes: int
    reset: int
    gradient: int
    surrogate: int                    # a fused surrogate's kernel code, or SURROGATE_GIVEN
    surrogate_params: tuple[float, ...]
    surrogate_fn: SurrogateFn | None  # evaluated in backward when surrogate is SURROGATE_GIVEN
    norm_input: bool
    decay_early: bool


class LIFNeuron(RecurrentNeuron):
    """LIF without synaptic current: state v⁺, trace v (the pre-reset membrane), internal
    value the input x̃ (= i_t, kept for the norm's ∂L/∂α)."""

    param_names = ("alpha", "threshold", "subtract", "min_v_mem", "beta")
    state_names: tuple[str, ...] = ("v_mem",)
    trace_names: tuple[str, ...] = ("v_mem",)
    internal_names: tuple[str, ...] = ("input",)

    def __init__(self, settings: LIFSettings, params: dict[str, Tensor | None]) -> None:
        super().__init__(settings, params)
        self.alpha = params["alpha"]
        self.threshold = params["threshold"]
        # subtract None: the threshold (its gradient is part of the threshold's).
        self.tied = params["subtract"] is None
        self.subtract = self.threshold if self.tied else params["subtract"]
        self.min_v_mem = params["min_v_mem"]
        self.beta = params["beta"]
        self.scale = 1 - self.alpha if settings.norm_input else None
        self.codes = (settings.max_spikes, settings.reset, settings.gradient)

    # --- forward -------------------------------------------------------------------------

    def current(self, x: Tensor, states: list[Tensor]
                ) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """The current i_t entering the membrane, the synaptic states after step t, and the
        values of the synaptic traces and the internal values at t."""
        return x, [], [x]

    def step(self, x: Tensor, states: list[Tensor]) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        current, syn_states, values = self.current(x, states[1:])
        drive = current if self.scale is None else self.scale * current
        spikes, v_mem, v_plus = ops.lif_forward(
            drive.unsqueeze(1).contiguous(), states[0], self.alpha, self.threshold,
            self.subtract, self.min_v_mem, *self.codes, self.settings.surrogate,
            list(self.settings.surrogate_params))
        return spikes[:, 0], [v_plus, *syn_states], [v_mem[:, 0], *values]

    # --- backward ------------------------------------------------------------------------

    def saved_traces(self, wanted: dict[str, bool]) -> set[str]:
        keep = {"v_mem"}
        if self.scale is not None and wanted["alpha"]:
            keep.add("input")  # i_t = x̃_t, for the norm's ∂L/∂α
        return keep

    def start_backward(self, spikes: Tensor, saved: dict[str, Tensor],
                       init_states: list[Tensor], wanted: dict[str, bool]) -> None:
        self.saved, self.wanted = saved, dict(wanted)
        self.v_init, self.spikes = init_states[0], spikes
        v = saved["v_mem"]
        if self.tied and wanted["threshold"]:
            self.wanted["subtract"] = True
        if self.min_v_mem is None:
            self.wanted["min_v_mem"] = False
        self.mask = sum(bit for name, bit in PARAM_GRAD_BITS.items() if self.wanted[name])
        self.sigma = None
        if self.settings.surrogate == SURROGATE_GIVEN:
            # The custom surrogate, once over all steps (as the LIF op's backward does).
            self.sigma = evaluate(self.settings.surrogate_fn, v, self.threshold)
        self.sums = {name: None for name in self.param_names}

    def _add(self, name: str, value: Tensor) -> None:
        total = self.sums[name]
        self.sums[name] = value if total is None else total + value

    def post_reset(self, t: int) -> Tensor:
        """v⁺_t from v_t and s_t with the kernels' arithmetic (lif_backward with T = 1 needs
        v⁺_{t−1} for ∂L/∂α; one step at a time costs less memory than keeping the trace)."""
        v, s = self.saved["v_mem"][:, t], self.spikes[:, t]
        if self.settings.reset == RESETS["zero"]:
            w = torch.where(s > 0, torch.zeros_like(v), v)
        else:
            w = v - self.subtract * s
        return w if self.min_v_mem is None else torch.where(w <= self.min_v_mem,
                                                            self.min_v_mem, w)

    def membrane_adjoint(self, t: int, grad_spikes: Tensor, grad_v: Tensor | None,
                         rho: Tensor) -> tuple[Tensor, Tensor]:
        """lif_backward over step t alone: λ_t = ∂L/∂d_t and ρ_{t−1} = ∂L/∂v⁺_{t−1}."""
        v = self.saved["v_mem"][:, t:t + 1].contiguous()
        sigma = None if self.sigma is None else self.sigma[:, t:t + 1].contiguous()
        # v_init stands in for v⁺_{t−1} where the op does not read it (no ∂L/∂α wanted).
        v_prev = self.post_reset(t - 1) if self.wanted["alpha"] and t > 0 else self.v_init
        h = None if grad_v is None else grad_v[:, None].contiguous()
        lam, rho, g_alpha, g_threshold, g_subtract, g_min = ops.lif_backward(
            grad_spikes.unsqueeze(1).contiguous(), h, rho.contiguous(), v, sigma, v_prev,
            self.alpha, self.threshold, self.subtract, self.min_v_mem, *self.codes,
            self.settings.surrogate, list(self.settings.surrogate_params), self.mask)
        for name, grad in (("alpha", g_alpha), ("threshold", g_threshold),
                           ("subtract", g_subtract), ("min_v_mem", g_min)):
            if self.wanted[name]:
                self._add(name, grad)
        return lam[:, 0], rho

    def drive_adjoint(self, lam: Tensor, current: Callable[[], Tensor]) -> Tensor:
        """∂L/∂i_t from λ_t through the input normalisation (adding the norm's ∂L/∂α)."""
        if self.scale is None:
            return lam
        if self.wanted["alpha"]:
            self._add("alpha", -lam * current())
        return self.scale * lam

    def adjoint_step(self, t: int, grad_spikes: Tensor, grad_traces: list[Tensor | None],
                     grad_states: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        lam, rho = self.membrane_adjoint(t, grad_spikes, grad_traces[0], grad_states[0])
        return self.drive_adjoint(lam, lambda: self.saved["input"][:, t]), [rho]

    def param_grads(self) -> dict[str, Tensor | None]:
        grads = {name: None if total is None else total.sum(0)
                 for name, total in self.sums.items()}
        if self.tied and grads["subtract"] is not None:
            grads["threshold"] = grads["threshold"] + grads.pop("subtract")
            grads["subtract"] = None
        for name in self.param_names:
            if self.params[name] is not None and self.wanted.get(name) and grads[name] is None:
                grads[name] = torch.zeros_like(self.params[name])  # T = 0
        return grads


class SynapticLIFNeuron(LIFNeuron):
    """LIF with a synaptic current: states v⁺ and i, traces v (pre-reset) and i, internal
    value u_t = i_{t−1} + x̃_t (decay_early: i_t = β·u_t, recomputed bit for bit from it)."""

    state_names = ("v_mem", "i_syn")
    trace_names = ("v_mem", "i_syn")
    internal_names = ("u",)

    def current(self, x: Tensor, states: list[Tensor]
                ) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        (i_prev,) = states
        # The layer's order of operations (synaptic_current in nn/lif.py), bit for bit.
        if self.settings.decay_early:
            u = x + i_prev
            i = self.beta * u
            return i, [i], [i, u]
        i = self.beta * i_prev + x
        return i, [i], [i, i]  # no u without decay_early (never kept)

    def saved_traces(self, wanted: dict[str, bool]) -> set[str]:
        # ∂L/∂β reads u_t (decay_early) or i_{t−1}; the norm's ∂L/∂α reads i_t (= β·u_t).
        keep = {"v_mem"}
        if wanted["beta"] or (self.scale is not None and wanted["alpha"]):
            keep.add("u" if self.settings.decay_early else "i_syn")
        return keep

    def _current_at(self, t: int) -> Tensor:
        if self.settings.decay_early:
            return self.beta * self.saved["u"][:, t]
        return self.saved["i_syn"][:, t]

    def start_backward(self, spikes: Tensor, saved: dict[str, Tensor],
                       init_states: list[Tensor], wanted: dict[str, bool]) -> None:
        super().start_backward(spikes, saved, init_states, wanted)
        self.i_init = init_states[1]

    def adjoint_step(self, t: int, grad_spikes: Tensor, grad_traces: list[Tensor | None],
                     grad_states: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        grad_v, grad_i = grad_traces
        rho, kappa = grad_states
        lam, rho = self.membrane_adjoint(t, grad_spikes, grad_v, rho)
        nu = self.drive_adjoint(lam, lambda: self._current_at(t)) + kappa
        if grad_i is not None:
            nu = nu + grad_i
        if self.wanted["beta"] and self.settings.decay_early:
            self._add("beta", nu * self.saved["u"][:, t])
        elif self.wanted["beta"]:
            self._add("beta", nu * (self.i_init if t == 0 else self.saved["i_syn"][:, t - 1]))
        carried = self.beta * nu
        return (carried if self.settings.decay_early else nu), [rho, carried]


def lif_recurrent(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    alpha: float | Tensor,
    threshold: float | Tensor,
    v_init: Tensor | None = None,
    *,
    beta: float | Tensor | None = None,
    i_init: Tensor | None = None,
    decay_early: bool = True,
    norm_input: bool = False,
    subtract: float | Tensor | None = None,
    min_v_mem: float | Tensor | None = None,
    max_spikes: int | None = None,
    surrogate: SurrogateFn | None = None,
    reset: str = "subtract",
    gradient: str = "exodus",
    backend: str = "auto",
) -> tuple[Tensor, Tensor, Tensor | None, Tensor, Tensor | None]:
    """LIF whose spikes feed back through a linear map at the next step, with exact gradients.

    Per neuron, t = 1..T, on flat features (N = prod of the feature shape):

        x̃_t  = x_t + W · s_{t−1} + b      (x̃_1 = x_1)
        i_t  = β · (i_{t−1} + x̃_t)  (decay_early)  or  β · i_{t−1} + x̃_t   (with beta; else x̃_t)
        v_t  = α · v⁺_{t−1} + (1 − α) · i_t      ((1 − α) only with norm_input)
        s_t, v⁺_t: the spike and reset of :func:`lif` (subtract, min_v_mem, max_spikes, reset)

    One op over the whole sequence (ops/recurrent.py): T fused steps forward,
    T adjoint steps backward, ∂L/∂W as one matmul; the same gradients as BPTT through the loop
    (backend="reference" runs that loop), with much less memory kept for backward.

    Args:
        x: input current (batch, time, *features), float32 or float64.
        weight: recurrent weight (N, N), x's dtype and device; bias: (N,) or None.
        alpha, threshold, v_init, subtract, min_v_mem, max_spikes, surrogate, reset, gradient,
            backend: as in :func:`lif`.
        beta: synaptic decay in [0, 1] (None: no synaptic current); i_init: its state
            (batch, *features), zeros if None.
        decay_early: the synaptic current's form (see above; sinabs' is True).
        norm_input: scale the current by (1 − α).

    Returns:
        spikes and the pre-reset membrane v_mem (batch, time, *features), the synaptic current
        trace i (or None), the post-reset state v_last and i_T (or None) (batch, *features).
    """
    args.check_input(x)
    if x.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"x must be float32 or float64 for lif_recurrent, got {x.dtype}; "
                        f"convert it with x.float()")
    batch, time, features = x.shape[0], x.shape[1], x.shape[2:]
    n = features.numel()
    _check_linear(weight, bias, n, x)
    alpha_t = args.parameter("alpha", alpha, x)
    args.check_alpha(alpha)
    threshold_t = args.parameter("threshold", threshold, x)
    min_t = None if min_v_mem is None else args.parameter("min_v_mem", min_v_mem, x)
    args.check_threshold(threshold, min_v_mem)
    subtract_t = None if subtract is None else args.parameter("subtract", subtract, x)
    if subtract is not None:
        args.check_nonnegative(subtract, "subtract")
    beta_t = None
    if beta is not None:
        beta_t = args.parameter("beta", beta, x)
        args.check_alpha(beta, "beta")
    max_code = args.check_max_spikes(max_spikes)
    surrogate = args.surrogate_or(SingleExponential(), surrogate)
    args.check_choice("reset", reset, RESETS)
    args.check_choice("gradient", gradient, GRADIENTS)
    v0 = args.initial_state("v_init", v_init, x)
    i0 = None if beta is None else args.initial_state("i_init", i_init, x)

    if args.resolve_backend(backend, x) == "reference":
        return lif_recurrent_reference(
            x, weight, bias, alpha_t, threshold_t, v0, threshold_t if subtract_t is None
            else subtract_t, min_t, max_spikes, surrogate, reset, gradient, beta_t, i0,
            decay_early, norm_input)

    fused = type(surrogate) in _FUSED_SURROGATES
    settings = LIFSettings(
        max_code, RESETS[reset], GRADIENTS[gradient],
        surrogate.kernel_code if fused else SURROGATE_GIVEN,
        tuple(surrogate.kernel_params) if fused else (), None if fused else surrogate,
        bool(norm_input), bool(decay_early))
    params = [args.flat(alpha_t, x), args.flat(threshold_t, x),
              None if subtract_t is None else args.flat(subtract_t, x),
              None if min_t is None else args.flat(min_t, x),
              None if beta_t is None else args.flat(beta_t, x)]
    neuron = LIFNeuron if beta is None else SynapticLIFNeuron
    states = [v0.reshape(batch, n)] + ([] if i0 is None else [i0.reshape(batch, n)])
    spikes, traces, last = recurrent_scan(neuron, settings, x.reshape(batch, time, n), weight,
                                          bias, states, params)
    shape = x.shape
    i_trace = None if beta is None else traces[1].reshape(shape)
    i_last = None if beta is None else last[1].reshape(v0.shape)
    return (spikes.reshape(shape), traces[0].reshape(shape), i_trace,
            last[0].reshape(v0.shape), i_last)


def _check_linear(weight: Tensor, bias: Tensor | None, n: int, x: Tensor) -> None:
    if not isinstance(weight, Tensor) or tuple(weight.shape) != (n, n):
        got = tuple(weight.shape) if isinstance(weight, Tensor) else type(weight).__name__
        raise ValueError(f"weight must be a ({n}, {n}) tensor (N = the number of features of x "
                         f"{tuple(x.shape)}), got {got}")
    if bias is not None and (not isinstance(bias, Tensor) or tuple(bias.shape) != (n,)):
        got = tuple(bias.shape) if isinstance(bias, Tensor) else type(bias).__name__
        raise ValueError(f"bias must be None or a ({n},) tensor, got {got}")
    for name, value in (("weight", weight), ("bias", bias)):
        if value is not None and (value.dtype != x.dtype or value.device != x.device):
            raise ValueError(f"{name} is {value.dtype} on {value.device} but x is {x.dtype} on "
                             f"{x.device}; convert it with {name}.to(x)")
