"""Functional LIF: ``lif(x, alpha, threshold, ...) -> (spikes, v_mem, v_last)``."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from . import _arguments as args
from ._codes import GRADIENTS, RESETS
from ._library import LIFWithCustomSurrogate, ops
from .reference import lif_reference
from .surrogate import (
    ArcTan,
    FastSigmoid,
    Gaussian,
    Heaviside,
    PeriodicExponential,
    SingleExponential,
    Triangle,
)

# Exact types only: a subclass may override __call__, and then only the generic path is right.
_FUSED_SURROGATES = (
    SingleExponential, PeriodicExponential, Heaviside, Gaussian, FastSigmoid, ArcTan, Triangle
)


def is_fused_surrogate(surrogate: object) -> bool:
    """Whether the kernels compute this surrogate themselves (a built-in, not a subclass)."""
    return type(surrogate) in _FUSED_SURROGATES


def lif(
    x: Tensor,
    alpha: float | Tensor,
    threshold: float | Tensor,
    v_init: Tensor | None = None,
    *,
    subtract: float | Tensor | None = None,
    min_v_mem: float | Tensor | None = None,
    max_spikes: int | None = None,
    surrogate: Callable[[Tensor, Tensor], Tensor] | None = None,
    reset: str = "subtract",
    gradient: str = "exodus",
    backend: str = "auto",
) -> tuple[Tensor, Tensor, Tensor]:
    """Leaky integrate-and-fire over time, with exact (EXODUS) or SLAYER gradients.

    Per neuron, t = 1..T, v⁺₀ = v_init:

        v_t  = α · v⁺_{t−1} + x_t
        s_t  = min(max_spikes, floor(v_t / θ)) if v_t ≥ θ else 0
        w_t  = v_t − subtract · s_t   (reset="subtract")   or   0 if s_t > 0   (reset="zero")
        v⁺_t = max(w_t, min_v_mem)    (sinabs' order: the post-reset state is clipped)

    Backward is one reverse scan per neuron, O(T), equal to BPTT through the reset with
    ds/dv = surrogate(v, θ) (``gradient="exodus"``), or with the reset ignored ("slayer").

    Args:
        x: input current, (batch, time, *features); float16/bfloat16 run with float32 state.
        alpha: decay exp(−1/τ) in [0, 1] (1 = IAF), float or tensor broadcastable to features.
        threshold: spike threshold θ > 0, float or tensor broadcastable to features.
        v_init: post-reset membrane before the first step, (batch, *features); zeros if None.
        subtract: amount removed per spike (default: threshold).
        min_v_mem: lower bound of the post-reset state v⁺ (None: unbounded).
        max_spikes: spikes per step at most; None = unbounded multi-spike, 1 = single spike.
        surrogate: callable (v_mem, threshold) -> dS/dV; default SingleExponential(). The
            built-in ones are fused into the kernels. Any other must be elementwise in v_mem:
            it gets v_mem as (b, T, N) (all batch rows or a block of them, N = prod(features))
            with threshold as (N,), and returns a tensor broadcastable to (b, T, N). It runs as
            it is (on blocks of batch rows: the same values as one call on the whole membrane)
            until it has served AUTO_COMPILE_AFTER large backward passes, then compiled with
            torch.compile (faster; may round differently in the last bit). See
            ops/custom_surrogate.py, ``ops.compiled_surrogate`` and ``ops.uncompiled_surrogate``.
        reset: "subtract" or "zero".
        gradient: "exodus" (exact) or "slayer" (reset ignored backward).
        backend: "auto" (extension, else reference), "extension" or "reference" (BPTT loop).

    Returns:
        spikes (batch, time, *features) in x's dtype, the pre-reset membrane v_mem
        (batch, time, *features) and the post-reset state v_last (batch, *features), both in
        the state dtype.
    """
    args.check_input(x)
    alpha_t = args.parameter("alpha", alpha, x)
    args.check_alpha(alpha)
    threshold_t = args.parameter("threshold", threshold, x)
    min_t = None if min_v_mem is None else args.parameter("min_v_mem", min_v_mem, x)
    args.check_threshold(threshold, min_v_mem)
    subtract_t = threshold_t if subtract is None else args.parameter("subtract", subtract, x)
    if subtract is not None:
        args.check_nonnegative(subtract, "subtract")
    max_code = args.check_max_spikes(max_spikes)
    surrogate = args.surrogate_or(SingleExponential(), surrogate)
    args.check_choice("reset", reset, RESETS)
    args.check_choice("gradient", gradient, GRADIENTS)
    v0 = args.initial_state("v_init", v_init, x)

    if args.resolve_backend(backend, x) == "reference":
        return lif_reference(x, alpha_t, threshold_t, v0, subtract_t, min_t, max_spikes,
                             surrogate, reset, gradient)

    alpha_f, threshold_f = args.flat(alpha_t, x), args.flat(threshold_t, x)
    # One tensor for both roles when subtract defaults to the threshold: autograd adds the
    # threshold's two gradient contributions.
    subtract_f = threshold_f if subtract is None else args.flat(subtract_t, x)
    min_f = None if min_t is None else args.flat(min_t, x)
    x = x.contiguous()
    codes = (max_code, RESETS[reset], GRADIENTS[gradient])
    if is_fused_surrogate(surrogate):
        return ops.lif_forward(x, v0, alpha_f, threshold_f, subtract_f, min_f, *codes,
                               surrogate.kernel_code, list(surrogate.kernel_params))
    return LIFWithCustomSurrogate.apply(x, v0, alpha_f, threshold_f,
                                        None if subtract is None else subtract_f, min_f, *codes,
                                        surrogate)
