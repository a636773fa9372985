"""Functional adaptive LIF: ``alif(x, alpha, rho, beta, b0, ...) -> (spikes, v_mem, b, v_last,
b_last)``."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from . import _arguments as args
from ._codes import GRADIENTS, RESETS
from ._library import ALIFWithCustomSurrogate, ops
from .lif import is_fused_surrogate
from .reference import alif_reference
from .surrogate import SingleExponential


def alif(
    x: Tensor,
    alpha: float | Tensor,
    rho: float | Tensor,
    beta: float | Tensor,
    b0: float | Tensor,
    v_init: Tensor | None = None,
    b_init: Tensor | None = None,
    *,
    min_v_mem: float | Tensor | None = None,
    max_spikes: int | None = 1,
    surrogate: Callable[[Tensor, Tensor], Tensor] | None = None,
    reset: str = "subtract",
    gradient: str = "exodus",
    backend: str = "auto",
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Adaptive leaky integrate-and-fire over time (sinabs' ALIF), with exact gradients.

    Per neuron, t = 1..T, v⁺₀ = v_init, b₀ = b_init:

        v_t  = α · v⁺_{t−1} + x_t
        θ_t  = b0 + β · b_{t−1}                       (the adaptive threshold)
        s_t  = min(max_spikes, floor(v_t / θ_t)) if v_t ≥ θ_t else 0
        w_t  = v_t − θ_t · s_t   (reset="subtract")   or   0 if s_t > 0   (reset="zero")
        b_t  = ρ · b_{t−1} + (1 − ρ) · s_t
        v⁺_t = max(w_t, min_v_mem)

    Backward is one reverse scan of two adjoints per neuron (docs/alif_math.md), equal to BPTT
    with ds/dv = surrogate(v_t, θ_t) and, as in sinabs, no gradient to θ through the spike (θ
    gets its gradient through the reset). ``gradient="slayer"`` ignores the reset backward.

    Args:
        x: input current, (batch, time, *features); float16/bfloat16 run with float32 state.
        alpha: membrane decay exp(−1/τ_mem) in [0, 1].
        rho: adaptation decay exp(−1/τ_adapt) in [0, 1].
        beta: adaptation scale (sinabs' adapt_scale) ≥ 0.
        b0: base threshold (sinabs' spike_threshold) > 0.
        v_init, b_init: states before the first step, (batch, *features); zeros if None.
        min_v_mem: lower bound of the post-reset state v⁺ (None: unbounded), below b0.
        max_spikes: spikes per step at most; 1 (sinabs' default SingleSpike), None = unbounded.
        surrogate: callable (v_mem, threshold) -> dS/dV; default SingleExponential(). A custom
            callable must be elementwise: it gets the membrane and the threshold trace, both
            (b, T, N) (all batch rows or a block of them, N = prod(features));
            compiled after AUTO_COMPILE_AFTER large backward passes (see lif).
        reset: "subtract" (the current threshold θ_t) or "zero".
        gradient: "exodus" (exact) or "slayer" (reset ignored backward).
        backend: "auto" (extension, else reference), "extension" or "reference" (BPTT loop).

    Returns:
        spikes (x's dtype), the pre-reset membrane v_mem and the adaptation b after each step
        (batch, time, *features), and the last states v_last = v⁺_T and b_last = b_T
        (batch, *features), all but the spikes in the state dtype.
    """
    args.check_input(x)
    tensors = {name: args.parameter(name, value, x)
               for name, value in (("alpha", alpha), ("rho", rho), ("beta", beta), ("b0", b0))}
    args.check_alpha(alpha)
    args.check_alpha(rho, "rho")
    args.check_nonnegative(beta, "beta")
    args.check_threshold(b0, min_v_mem, "b0")
    min_t = None if min_v_mem is None else args.parameter("min_v_mem", min_v_mem, x)
    max_code = args.check_max_spikes(max_spikes)
    surrogate = args.surrogate_or(SingleExponential(), surrogate)
    args.check_choice("reset", reset, RESETS)
    args.check_choice("gradient", gradient, GRADIENTS)
    v0 = args.initial_state("v_init", v_init, x)
    b0_state = args.initial_state("b_init", b_init, x)
    args.check_adaptation(b0_state if b_init is not None else None, tensors["b0"],
                          tensors["beta"])

    if args.resolve_backend(backend, x) == "reference":
        return alif_reference(x, *tensors.values(), v0, b0_state, min_t, max_spikes, surrogate,
                              reset, gradient)

    flat = [args.flat(t, x) for t in tensors.values()]
    min_f = None if min_t is None else args.flat(min_t, x)
    x = x.contiguous()
    codes = (max_code, RESETS[reset], GRADIENTS[gradient])
    if is_fused_surrogate(surrogate):
        return ops.alif_forward(x, v0, b0_state, *flat, min_f, *codes, surrogate.kernel_code,
                                list(surrogate.kernel_params))
    return ALIFWithCustomSurrogate.apply(x, v0, b0_state, *flat, min_f, *codes, surrogate)
