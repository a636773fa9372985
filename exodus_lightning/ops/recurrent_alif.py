"""Recurrent adaptive LIF as one op over the sequence: ``alif_recurrent(x, weight, bias, ...)``.

The neuron model of :func:`recurrent_scan` for sinabs' ALIF (docs/alif_math.md), with the
optional synaptic current of the ALIF layer. Per neuron and step, on the input
x̃_t = x_t + W·s_{t−1} + b:

    u_t  = i_{t−1} + x̃_t,   i_t = c · u_t       (with a synaptic decay c; else i_t = x̃_t)
    d_t  = (1 − α) · i_t   (norm_input)   or   i_t
    s_t, v_t, b_t, v⁺_t = the fused ALIF step on d_t from v⁺_{t−1}, b_{t−1}   (alif_forward, T = 1)

The adjoint step is alif_backward with T = 1: ∂L/∂v⁺_t and ∂L/∂b_t (through the later steps) in,
λ_t = ∂L/∂d_t, ∂L/∂v⁺_{t−1}, ∂L/∂b_{t−1} and the parameter sums of step t out. The kernel reads
b_{t−1} (the b trace one step back, or b_init) for θ_t, and v⁺_{t−1} for ∂L/∂α only; v⁺_{t−1} is
rebuilt from v_{t−1}, s_{t−1} and θ_{t−1} = b0 + β·b_{t−2} with the kernel's arithmetic (one
multiply, one add, one subtract or select, one clip) rather than kept as a fourth (B, T, N)
trace. The synaptic current's adjoint follows:

    ν_t = ∂L/∂i_t = (1 − α) · λ_t (or λ_t) + ∂L/∂i_t (recorded trace) + κ_t
    ∂L/∂x̃_t = c · ν_t,   κ_{t−1} = c · ν_t,   ∂L/∂c += ν_t · u_t
    norm_input:   ∂L/∂α += −λ_t · i_t

κ_t = ∂L/∂i_t through step t+1 (κ_T: the gradient of the last state).

The ALIF layer's synaptic current (sinabs' ALIF keeps the normalised current as its state) is
this with c = α_syn · (1 − α) and norm_input off, c computed by autograd outside the scan.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from . import _arguments as args
from ._codes import GRADIENTS, RESETS, SURROGATE_GIVEN
from ._library import ALIF_PARAM_GRAD_BITS, ops
from .custom_surrogate import evaluate
from .lif import is_fused_surrogate
from .recurrent import RecurrentNeuron, recurrent_scan
from .recurrent_lif import _check_linear
from .reference import alif_recurrent_reference
from .surrogate import SingleExponential

SurrogateFn = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class ALIFSettings:
    """The fixed settings of a recurrent ALIF scan (kernel codes, see _codes.py)."""

    max_spikes: int
    reset: int
    gradient: int
    surrogate: int                    # a fused surrogate's kernel code, or SURROGATE_GIVEN
    surrogate_params: tuple[float, ...]
    surrogate_fn: SurrogateFn | None  # evaluated in backward when surrogate is SURROGATE_GIVEN
    norm_input: bool


class ALIFNeuron(RecurrentNeuron):
    """ALIF without synaptic current: states v⁺ and b, traces v (pre-reset) and b, internal
    value the input x̃ (= i_t, kept for the norm's ∂L/∂α)."""

    param_names = ("alpha", "rho", "beta", "b0", "min_v_mem", "syn_decay")
    state_names: tuple[str, ...] = ("v_mem", "b")
    trace_names: tuple[str, ...] = ("v_mem", "b")
    internal_names: tuple[str, ...] = ("input",)

    def __init__(self, settings: ALIFSettings, params: dict[str, Tensor | None]) -> None:
        super().__init__(settings, params)
        self.alpha, self.rho = params["alpha"], params["rho"]
        self.beta, self.b0 = params["beta"], params["b0"]
        self.min_v_mem = params["min_v_mem"]
        self.syn_decay = params["syn_decay"]
        self.scale = 1 - self.alpha if settings.norm_input else None
        self.codes = (settings.max_spikes, settings.reset, settings.gradient)

    # --- forward -------------------------------------------------------------------------

    def current(self, x: Tensor, states: list[Tensor]
                ) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """The current i_t entering the membrane, the synaptic states after step t, and the
        values of the synaptic traces and the internal values at t."""
        return x, [], [x]

    def step(self, x: Tensor, states: list[Tensor]) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        current, syn_states, values = self.current(x, states[2:])
        drive = current if self.scale is None else self.scale * current
        spikes, v_mem, b, v_plus, b_last = ops.alif_forward(
            drive.unsqueeze(1).contiguous(), states[0], states[1], self.alpha, self.rho,
            self.beta, self.b0, self.min_v_mem, *self.codes, self.settings.surrogate,
            list(self.settings.surrogate_params))
        return spikes[:, 0], [v_plus, b_last, *syn_states], [v_mem[:, 0], b[:, 0], *values]

    # --- backward ------------------------------------------------------------------------

    def saved_traces(self, wanted: dict[str, bool]) -> set[str]:
        keep = {"v_mem", "b"}
        if self.scale is not None and wanted["alpha"]:
            keep.add("input")  # i_t = x̃_t, for the norm's ∂L/∂α
        return keep

    def start_backward(self, spikes: Tensor, saved: dict[str, Tensor],
                       init_states: list[Tensor], wanted: dict[str, bool]) -> None:
        self.saved, self.wanted = saved, dict(wanted)
        self.v_init, self.b_init = init_states[0], init_states[1]
        self.spikes = spikes
        if self.min_v_mem is None:
            self.wanted["min_v_mem"] = False
        self.mask = sum(bit for name, bit in ALIF_PARAM_GRAD_BITS.items() if self.wanted[name])
        self.sigma = None
        if self.settings.surrogate == SURROGATE_GIVEN:
            # The custom surrogate, once over all steps against the threshold trace θ_t (as
            # the ALIF op's backward does).
            v, b = saved["v_mem"], saved["b"]
            b_before = torch.cat([self.b_init.unsqueeze(1), b[:, :-1]], 1)
            threshold = self.b0 + self.beta * b_before
            self.sigma = evaluate(self.settings.surrogate_fn, v, threshold)
        self.sums: dict[str, Tensor | None] = {name: None for name in self.param_names}

    def _add(self, name: str, value: Tensor) -> None:
        total = self.sums[name]
        self.sums[name] = value if total is None else total + value

    def _b_before(self, t: int) -> Tensor:
        """b_{t−1}: the b trace one step back, or b_init."""
        return self.b_init if t == 0 else self.saved["b"][:, t - 1]

    def post_reset(self, t: int) -> Tensor:
        """v⁺_t from v_t, s_t and θ_t = b0 + β·b_{t−1}, with the kernel's arithmetic (no fused
        multiply-add there either), so it equals the forward state bit for bit."""
        v, s = self.saved["v_mem"][:, t], self.spikes[:, t]
        if self.settings.reset == RESETS["zero"]:
            w = torch.where(s > 0, torch.zeros_like(v), v)
        else:
            w = v - (self.b0 + self.beta * self._b_before(t)) * s
        return w if self.min_v_mem is None else torch.where(w <= self.min_v_mem,
                                                            self.min_v_mem, w)

    def membrane_adjoint(self, t: int, grad_spikes: Tensor, grad_v: Tensor | None,
                         grad_b: Tensor | None, grad_v_plus: Tensor, grad_b_state: Tensor
                         ) -> tuple[Tensor, Tensor, Tensor]:
        """alif_backward over step t alone: λ_t = ∂L/∂d_t, ∂L/∂v⁺_{t−1} and ∂L/∂b_{t−1}."""
        v = self.saved["v_mem"][:, t:t + 1].contiguous()
        b = self.saved["b"][:, t:t + 1].contiguous()
        sigma = None if self.sigma is None else self.sigma[:, t:t + 1].contiguous()
        # v_init stands in for v⁺_{t−1} where the op does not read it (no ∂L/∂α wanted).
        v_prev = self.post_reset(t - 1) if self.wanted["alpha"] and t > 0 else self.v_init
        h = None if grad_v is None else grad_v[:, None].contiguous()
        e = None if grad_b is None else grad_b[:, None].contiguous()
        lam, grad_v_prev, grad_b_prev, *sums = ops.alif_backward(
            grad_spikes.unsqueeze(1).contiguous(), h, e, grad_v_plus.contiguous(),
            grad_b_state.contiguous(), v, b, sigma, v_prev.contiguous(),
            self._b_before(t).contiguous(), self.alpha, self.rho, self.beta, self.b0,
            self.min_v_mem, *self.codes, self.settings.surrogate,
            list(self.settings.surrogate_params), self.mask)
        for name, grad in zip(ALIF_PARAM_GRAD_BITS, sums):
            if self.wanted[name]:
                self._add(name, grad)
        return lam[:, 0], grad_v_prev, grad_b_prev

    def drive_adjoint(self, lam: Tensor, current: Callable[[], Tensor]) -> Tensor:
        """∂L/∂i_t from λ_t through the input normalisation (adding the norm's ∂L/∂α)."""
        if self.scale is None:
            return lam
        if self.wanted["alpha"]:
            self._add("alpha", -lam * current())
        return self.scale * lam

    def adjoint_step(self, t: int, grad_spikes: Tensor, grad_traces: list[Tensor | None],
                     grad_states: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        lam, grad_v, grad_b = self.membrane_adjoint(t, grad_spikes, grad_traces[0],
                                                    grad_traces[1], *grad_states)
        return self.drive_adjoint(lam, lambda: self.saved["input"][:, t]), [grad_v, grad_b]

    def param_grads(self) -> dict[str, Tensor | None]:
        grads = {name: None if total is None else total.sum(0)
                 for name, total in self.sums.items()}
        for name in self.param_names:
            if self.params[name] is not None and self.wanted.get(name) and grads[name] is None:
                grads[name] = torch.zeros_like(self.params[name])  # T = 0
        return grads


class SynapticALIFNeuron(ALIFNeuron):
    """ALIF with sinabs' synaptic current i_t = c · (i_{t−1} + x̃_t): states v⁺, b and i,
    traces v (pre-reset), b and i, internal value u_t = i_{t−1} + x̃_t (i_t = c·u_t is
    recomputed bit for bit from it)."""

    state_names = ("v_mem", "b", "i_syn")
    trace_names = ("v_mem", "b", "i_syn")
    internal_names = ("u",)

    def current(self, x: Tensor, states: list[Tensor]
                ) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        (i_prev,) = states
        # The layer's order of operations (synaptic_current in nn/lif.py), bit for bit.
        u = x + i_prev
        i = self.syn_decay * u
        return i, [i], [i, u]

    def saved_traces(self, wanted: dict[str, bool]) -> set[str]:
        # ∂L/∂c and the norm's ∂L/∂α read u_t (i_t = c·u_t).
        keep = {"v_mem", "b"}
        if wanted["syn_decay"] or (self.scale is not None and wanted["alpha"]):
            keep.add("u")
        return keep

    def adjoint_step(self, t: int, grad_spikes: Tensor, grad_traces: list[Tensor | None],
                     grad_states: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        grad_v, grad_b, grad_i = grad_traces
        grad_v_plus, grad_b_state, kappa = grad_states
        lam, grad_v_plus, grad_b_state = self.membrane_adjoint(
            t, grad_spikes, grad_v, grad_b, grad_v_plus, grad_b_state)
        nu = self.drive_adjoint(lam, lambda: self.syn_decay * self.saved["u"][:, t]) + kappa
        if grad_i is not None:
            nu = nu + grad_i
        if self.wanted["syn_decay"]:
            self._add("syn_decay", nu * self.saved["u"][:, t])
        carried = self.syn_decay * nu
        return carried, [grad_v_plus, grad_b_state, carried]


def alif_recurrent(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    alpha: float | Tensor,
    rho: float | Tensor,
    beta: float | Tensor,
    b0: float | Tensor,
    v_init: Tensor | None = None,
    b_init: Tensor | None = None,
    *,
    syn_decay: float | Tensor | None = None,
    i_init: Tensor | None = None,
    norm_input: bool = False,
    min_v_mem: float | Tensor | None = None,
    max_spikes: int | None = 1,
    surrogate: SurrogateFn | None = None,
    reset: str = "subtract",
    gradient: str = "exodus",
    backend: str = "auto",
) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor, Tensor, Tensor | None]:
    """Adaptive LIF whose spikes feed back through a linear map at the next step, with exact
    gradients.

    Per neuron, t = 1..T, on flat features (N = prod of the feature shape):

        x̃_t  = x_t + W · s_{t−1} + b      (x̃_1 = x_1)
        i_t  = c · (i_{t−1} + x̃_t)         (with syn_decay c; else i_t = x̃_t)
        v_t  = α · v⁺_{t−1} + (1 − α) · i_t      ((1 − α) only with norm_input)
        s_t, b_t, v⁺_t: the adaptive threshold θ_t = b0 + β · b_{t−1}, spike, reset, adaptation
            and clip of :func:`alif`

    One op over the whole sequence (ops/recurrent.py): T fused steps forward,
    T adjoint steps backward, ∂L/∂W as one matmul; the same gradients as BPTT through the loop
    (backend="reference" runs that loop), keeping only the spikes and the v and b traces (and u
    or x̃ where a parameter gradient reads them) for backward.

    Args:
        x: input current (batch, time, *features), float32 or float64.
        weight: recurrent weight (N, N), x's dtype and device; bias: (N,) or None.
        alpha, rho, beta, b0, v_init, b_init, min_v_mem, max_spikes, surrogate, reset,
            gradient, backend: as in :func:`alif`.
        syn_decay: synaptic decay c in [0, 1] (None: no synaptic current); i_init: its state
            (batch, *features), zeros if None. sinabs' ALIF with tau_syn and norm_input is
            c = α_syn · (1 − α) with norm_input=False.
        norm_input: scale the current by (1 − α).

    Returns:
        spikes, the pre-reset membrane v_mem and the adaptation b (batch, time, *features), the
        synaptic current trace i (or None), the last states v_last = v⁺_T, b_last = b_T and
        i_T (or None) (batch, *features).
    """
    args.check_input(x)
    if x.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"x must be float32 or float64 for alif_recurrent, got {x.dtype}; "
                        f"convert it with x.float()")
    batch, time, features = x.shape[0], x.shape[1], x.shape[2:]
    n = features.numel()
    _check_linear(weight, bias, n, x)
    tensors = {name: args.parameter(name, value, x)
               for name, value in (("alpha", alpha), ("rho", rho), ("beta", beta), ("b0", b0))}
    args.check_alpha(alpha)
    args.check_alpha(rho, "rho")
    args.check_nonnegative(beta, "beta")
    args.check_threshold(b0, min_v_mem, "b0")
    min_t = None if min_v_mem is None else args.parameter("min_v_mem", min_v_mem, x)
    decay_t = None
    if syn_decay is not None:
        decay_t = args.parameter("syn_decay", syn_decay, x)
        args.check_alpha(syn_decay, "syn_decay")
    max_code = args.check_max_spikes(max_spikes)
    surrogate = args.surrogate_or(SingleExponential(), surrogate)
    args.check_choice("reset", reset, RESETS)
    args.check_choice("gradient", gradient, GRADIENTS)
    v0 = args.initial_state("v_init", v_init, x)
    b_state = args.initial_state("b_init", b_init, x)
    args.check_adaptation(b_state if b_init is not None else None, tensors["b0"],
                          tensors["beta"])
    i0 = None if syn_decay is None else args.initial_state("i_init", i_init, x)

    if args.resolve_backend(backend, x) == "reference":
        return alif_recurrent_reference(
            x, weight, bias, *tensors.values(), v0, b_state, min_t, max_spikes, surrogate,
            reset, gradient, decay_t, i0, norm_input)

    fused = is_fused_surrogate(surrogate)
    settings = ALIFSettings(
        max_code, RESETS[reset], GRADIENTS[gradient],
        surrogate.kernel_code if fused else SURROGATE_GIVEN,
        tuple(surrogate.kernel_params) if fused else (), None if fused else surrogate,
        bool(norm_input))
    params = [args.flat(t, x) for t in tensors.values()]
    params += [None if min_t is None else args.flat(min_t, x),
               None if decay_t is None else args.flat(decay_t, x)]
    neuron = ALIFNeuron if syn_decay is None else SynapticALIFNeuron
    states = [v0.reshape(batch, n).contiguous(), b_state.reshape(batch, n).contiguous()]
    if i0 is not None:
        states.append(i0.reshape(batch, n).contiguous())
    spikes, traces, last = recurrent_scan(neuron, settings, x.reshape(batch, time, n), weight,
                                          bias, states, params)
    shape, state_shape = x.shape, v0.shape
    i_trace = None if i0 is None else traces[2].reshape(shape)
    i_last = None if i0 is None else last[2].reshape(state_shape)
    return (spikes.reshape(shape), traces[0].reshape(shape), traces[1].reshape(shape), i_trace,
            last[0].reshape(state_shape), last[1].reshape(state_shape), i_last)
