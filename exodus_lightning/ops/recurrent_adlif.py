"""Recurrent adLIF (SE-adLIF) as one op: ``adlif_recurrent(x, weight, bias, ...)``.

The neuron model of :func:`recurrent_scan` for the adLIF of SE-adLIF (docs/adlif_math.md), as
the authors' ``SEAdLIF`` with ``use_recurrent``: per neuron and step, on the input
x̃_t = x_t + R·s_{t−1} (+ b),

    u_t  = α · u⁺_{t−1} + (1 − α) · (x̃_t − w_{t−1})
    s_t  = 1[u_t > θ],   u⁺_t = 0 if s_t > 0 else u_t
    w_t  = β · w_{t−1} + (1 − β) · (a · u⁺_t + b · s_t)      (adlif_forward, T = 1)

The adjoint step is adlif_backward with T = 1: ∂L/∂s_t, ∂L/∂u_t, ∂L/∂w_t (recorded traces) and
∂L/∂u⁺_t, ∂L/∂w_t (through the later steps) in; ∂L/∂x̃_t = (1 − α)·λ_t, ∂L/∂u⁺_{t−1},
∂L/∂w_{t−1} and the per-(batch, neuron) parameter sums of step t out. For the parameter sums the
kernel reads u⁺_{t−1} (rebuilt from the u trace one step back by the kernel's select, bit for
bit), w_{t−1} (the w trace) and, for ∂L/∂α only, x̃_t (kept as a (B, T, N) trace then).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from . import _arguments as args
from ._codes import GRADIENTS, SURROGATE_GIVEN
from ._library import ADLIF_PARAM_GRAD_BITS, ops
from .adlif import checked_arguments
from .custom_surrogate import evaluate
from .lif import is_fused_surrogate
from .recurrent import RecurrentNeuron, recurrent_scan
from .recurrent_lif import _check_linear
from .reference import adlif_recurrent_reference

SurrogateFn = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class AdLIFSettings:
    """The fixed settings of a recurrent adLIF scan (kernel codes, see _codes.py)."""

    gradient: int
    surrogate: int                    # a fused surrogate's kernel code, or SURROGATE_GIVEN
    surrogate_params: tuple[float, ...]
    surrogate_fn: SurrogateFn | None  # evaluated in backward when surrogate is SURROGATE_GIVEN


class AdLIFNeuron(RecurrentNeuron):
    """adLIF: states u⁺ and w, traces u (pre-reset) and w, internal value the input x̃ (read
    for ∂L/∂α only)."""

    param_names = ("alpha", "beta", "a", "b", "threshold")
    state_names = ("u", "w")
    trace_names = ("u_mem", "w")
    internal_names = ("input",)

    def __init__(self, settings: AdLIFSettings, params: dict[str, Tensor | None]) -> None:
        super().__init__(settings, params)
        self.values = [params[name] for name in self.param_names]
        self.codes = (settings.gradient, settings.surrogate, list(settings.surrogate_params))

    def step(self, x: Tensor, states: list[Tensor]) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        spikes, u_mem, w, u_last, w_last = ops.adlif_forward(
            x.unsqueeze(1).contiguous(), states[0], states[1], *self.values, *self.codes)
        return spikes[:, 0], [u_last, w_last], [u_mem[:, 0], w[:, 0], x]

    def saved_traces(self, wanted: dict[str, bool]) -> set[str]:
        keep = {"u_mem", "w"}
        if wanted["alpha"]:
            keep.add("input")
        return keep

    def start_backward(self, spikes: Tensor, saved: dict[str, Tensor],
                       init_states: list[Tensor], wanted: dict[str, bool]) -> None:
        self.saved, self.wanted = saved, wanted
        self.u_init, self.w_init = init_states
        self.mask = sum(bit for name, bit in ADLIF_PARAM_GRAD_BITS.items() if wanted[name])
        self.sigma = None
        if self.settings.surrogate == SURROGATE_GIVEN:
            # The custom surrogate once over all steps, as the adLIF op's backward does.
            u = saved["u_mem"]
            self.sigma = evaluate(self.settings.surrogate_fn, u, self.params["threshold"])
        self.sums: dict[str, Tensor | None] = {name: None for name in self.param_names}

    def _before(self, t: int) -> tuple[Tensor, Tensor]:
        """u⁺_{t−1} and w_{t−1}: the kernel's reset of the u trace one step back (0 where it
        spiked), the w trace one step back, or the initial states."""
        if t == 0:
            return self.u_init, self.w_init
        u = self.saved["u_mem"][:, t - 1]
        u_plus = torch.where(u > self.params["threshold"], torch.zeros_like(u), u)
        return u_plus.contiguous(), self.saved["w"][:, t - 1].contiguous()

    def adjoint_step(self, t: int, grad_spikes: Tensor, grad_traces: list[Tensor | None],
                     grad_states: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        step = slice(t, t + 1)
        # The step's own initial states are read only for the parameter sums.
        u_prev, w_prev = self._before(t) if self.mask else (self.u_init, self.w_init)
        x = self.saved["input"][:, step].contiguous() if self.wanted["alpha"] else None
        sigma = None if self.sigma is None else self.sigma[:, step].contiguous()
        h, k = (None if g is None else g[:, None].contiguous() for g in grad_traces)
        grad_x, grad_u, grad_w, *sums = ops.adlif_backward(
            grad_spikes.unsqueeze(1).contiguous(), h, k, grad_states[0].contiguous(),
            grad_states[1].contiguous(), self.saved["u_mem"][:, step].contiguous(),
            self.saved["w"][:, step].contiguous(), x, sigma, u_prev, w_prev, *self.values,
            *self.codes, self.mask)
        for name, total in zip(ADLIF_PARAM_GRAD_BITS, sums):
            if self.wanted[name]:
                known = self.sums[name]
                self.sums[name] = total if known is None else known + total
        return grad_x[:, 0], [grad_u, grad_w]

    def param_grads(self) -> dict[str, Tensor | None]:
        grads = {name: None if total is None else total.sum(0)
                 for name, total in self.sums.items()}
        for name in self.param_names:
            if self.wanted.get(name) and grads[name] is None:
                grads[name] = torch.zeros_like(self.params[name])  # T = 0
        return grads


def adlif_recurrent(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    alpha: float | Tensor,
    beta: float | Tensor,
    a: float | Tensor,
    b: float | Tensor,
    threshold: float | Tensor = 1.0,
    u_init: Tensor | None = None,
    w_init: Tensor | None = None,
    *,
    surrogate: SurrogateFn | None = None,
    gradient: str = "slayer",
    backend: str = "auto",
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """adLIF of SE-adLIF whose spikes feed back through a linear map at the next step, with
    exact gradients.

    Per neuron, t = 1..T, on flat features (N = prod of the feature shape):

        x̃_t  = x_t + W · s_{t−1} + bias      (x̃_1 = x_1)
        u_t  = α · u⁺_{t−1} + (1 − α) · (x̃_t − w_{t−1})
        s_t  = 1[u_t > θ],   u⁺_t = 0 if s_t > 0 else u_t
        w_t  = β · w_{t−1} + (1 − β) · (a · u⁺_t + b · s_t)

    One op over the whole sequence (ops/recurrent.py): T fused steps forward,
    T adjoint steps backward, ∂L/∂W as one matmul; the same gradients as BPTT through the loop
    (backend="reference" runs that loop), keeping only the spikes and the u and w traces (and
    x̃ when α needs a gradient) for backward.

    Args:
        x: input current (batch, time, *features), float32 or float64.
        weight: recurrent weight (N, N), x's dtype and device; bias: (N,) or None (the authors'
            recurrence has none).
        alpha, beta, a, b, threshold, u_init, w_init, surrogate, gradient, backend: as in
            :func:`adlif`.

    Returns:
        spikes, the pre-reset membrane u_mem and the adaptation w (batch, time, *features), the
        last states u_last = u⁺_T and w_last = w_T (batch, *features).
    """
    args.check_input(x)
    if x.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"x must be float32 or float64 for adlif_recurrent, got {x.dtype}; "
                        f"convert it with x.float()")
    batch, time, features = x.shape[0], x.shape[1], x.shape[2:]
    n = features.numel()
    _check_linear(weight, bias, n, x)
    tensors, u0, w0, surrogate = checked_arguments(x, alpha, beta, a, b, threshold, u_init,
                                                   w_init, surrogate, gradient)

    if args.resolve_backend(backend, x) == "reference":
        return adlif_recurrent_reference(x, weight, bias, *tensors.values(), u0, w0, surrogate,
                                         gradient)

    fused = is_fused_surrogate(surrogate)
    settings = AdLIFSettings(
        GRADIENTS[gradient], surrogate.kernel_code if fused else SURROGATE_GIVEN,
        tuple(surrogate.kernel_params) if fused else (), None if fused else surrogate)
    params = [args.flat(t, x) for t in tensors.values()]
    states = [u0.reshape(batch, n).contiguous(), w0.reshape(batch, n).contiguous()]
    spikes, traces, last = recurrent_scan(AdLIFNeuron, settings, x.reshape(batch, time, n),
                                          weight, bias, states, params)
    shape, state_shape = x.shape, u0.shape
    return (spikes.reshape(shape), traces[0].reshape(shape), traces[1].reshape(shape),
            last[0].reshape(state_shape), last[1].reshape(state_shape))
