"""Functional leaky integrator: ``leaky_integrate(x, alpha, ...) -> (y, y_last)``."""

from __future__ import annotations

from torch import Tensor

from . import _arguments as args
from ._library import ops
from .reference import leaky_integrate_reference


def leaky_integrate(
    x: Tensor,
    alpha: float | Tensor,
    v_init: Tensor | None = None,
    *,
    backend: str = "auto",
) -> tuple[Tensor, Tensor]:
    """Leaky integration over time: i_t = α · i_{t−1} + x_t, with i_0 = v_init (zeros if None).

    Used for synaptic currents, the ExpLeak layer and non-spiking readouts. The backward is the
    reverse scan μ_t = g_t + α · μ_{t+1}: ∂L/∂x_t = μ_t, ∂L/∂i_0 = α · μ_1,
    ∂L/∂α = Σ_t μ_t · i_{t−1}.

    Args:
        x: (batch, time, *features).
        alpha: decay in [0, 1], float or tensor broadcastable to features.
        v_init: (batch, *features) state before the first step.
        backend: "auto", "extension" or "reference".

    Returns:
        y (batch, time, *features) in x's dtype and y_last = i_T (batch, *features) in the state
        dtype (float32 for half inputs).
    """
    args.check_input(x)
    alpha_t = args.parameter("alpha", alpha, x)
    args.check_alpha(alpha)
    v0 = args.initial_state("v_init", v_init, x)
    if args.resolve_backend(backend, x) == "reference":
        return leaky_integrate_reference(x, alpha_t, v0)
    return ops.leaky_forward(x.contiguous(), v0, args.flat(alpha_t, x))
