"""Functional adaptive LIF of SE-adLIF: ``adlif(x, alpha, beta, a, b, ...) -> (spikes, u_mem, w,
u_last, w_last)``."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from . import _arguments as args
from ._codes import GRADIENTS
from ._library import AdLIFWithCustomSurrogate, ops
from .lif import is_fused_surrogate
from .reference import adlif_reference
from .surrogate import SingleExponential

# The authors' SLAYER surrogate c·α/2·exp(−α·|u − θ|) with α = 5, c = 0.4, at θ = 1.
AUTHORS_SURROGATE = SingleExponential(grad_width=0.2, grad_scale=0.2)


def adlif(
    x: Tensor,
    alpha: float | Tensor,
    beta: float | Tensor,
    a: float | Tensor,
    b: float | Tensor,
    threshold: float | Tensor = 1.0,
    u_init: Tensor | None = None,
    w_init: Tensor | None = None,
    *,
    surrogate: Callable[[Tensor, Tensor], Tensor] | None = None,
    gradient: str = "slayer",
    backend: str = "auto",
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Adaptive leaky integrate-and-fire of SE-adLIF (Baronig et al. 2025), exact gradients.

    Per neuron, t = 1..T, u⁺₀ = u_init, w₀ = w_init (docs/adlif_math.md):

        u_t  = α · u⁺_{t−1} + (1 − α) · (x_t − w_{t−1})
        s_t  = 1[u_t > θ]
        u⁺_t = 0 if s_t > 0 else u_t
        w_t  = β · w_{t−1} + (1 − β) · (a · u⁺_t + b · s_t)

    Backward is one reverse scan of two adjoints per neuron, equal to BPTT with
    ds/du = surrogate(u_t, θ). With ``gradient="slayer"`` (the authors' choice) the spike inside
    the reset is detached; ``"exodus"`` differentiates it too. The spike driving w always
    carries the surrogate.

    Args:
        x: input current, (batch, time, *features); float16/bfloat16 run with float32 state.
        alpha: membrane decay exp(−1/τ_u) in [0, 1], float or tensor broadcastable to features.
        beta: adaptation decay exp(−1/τ_w) in [0, 1].
        a: coupling of the membrane into w (the authors' q·a, q = 120, a ∈ [0, 1]); finite.
        b: spike-triggered adaptation (the authors' q·b, b ∈ [0, 2]); finite.
        threshold: θ > 0 (the authors: 1).
        u_init, w_init: states before the first step, (batch, *features); zeros if None.
        surrogate: callable (u_mem, threshold) -> dS/du; default: the authors' SLAYER
            surrogate exp(−5·|u − 1|), i.e. SingleExponential(grad_width=0.2, grad_scale=0.2)
            (its width is relative to θ, so it equals theirs at θ = 1). A custom callable
            must be elementwise in u_mem, as for lif (it gets (b, T, N) and the (N,) threshold).
        gradient: "slayer" (reset's spike detached, the authors') or "exodus".
        backend: "auto" (extension, else reference), "extension" or "reference" (BPTT loop).

    Returns:
        spikes (x's dtype), the pre-reset membrane u_mem and the adaptation w after each step
        (batch, time, *features), and the last states u_last = u⁺_T and w_last = w_T
        (batch, *features), all but the spikes in the state dtype.
    """
    args.check_input(x)
    tensors, u0, w0, surrogate = checked_arguments(x, alpha, beta, a, b, threshold, u_init,
                                                   w_init, surrogate, gradient)

    if args.resolve_backend(backend, x) == "reference":
        return adlif_reference(x, *tensors.values(), u0, w0, surrogate, gradient)

    flat = [args.flat(t, x) for t in tensors.values()]
    x = x.contiguous()
    if is_fused_surrogate(surrogate):
        return ops.adlif_forward(x, u0, w0, *flat, GRADIENTS[gradient], surrogate.kernel_code,
                                 list(surrogate.kernel_params))
    return AdLIFWithCustomSurrogate.apply(x, u0, w0, *flat, GRADIENTS[gradient], surrogate)


def checked_arguments(x: Tensor, alpha, beta, a, b, threshold, u_init: Tensor | None,
                      w_init: Tensor | None, surrogate, gradient: str
                      ) -> tuple[dict[str, Tensor], Tensor, Tensor, Callable]:
    """The adLIF ops' arguments checked (errors name them) and as tensors: the parameters
    (alpha, beta, a, b, threshold) by name, the initial states and the surrogate."""
    given = (("alpha", alpha), ("beta", beta), ("a", a), ("b", b), ("threshold", threshold))
    tensors = {name: args.parameter(name, value, x) for name, value in given}
    args.check_alpha(alpha)
    args.check_alpha(beta, "beta")
    args.check_finite(a, "a")
    args.check_finite(b, "b")
    args.check_threshold(threshold, None)
    surrogate = args.surrogate_or(AUTHORS_SURROGATE, surrogate, "u_mem")
    args.check_choice("gradient", gradient, GRADIENTS)
    return (tensors, args.initial_state("u_init", u_init, x),
            args.initial_state("w_init", w_init, x), surrogate)
