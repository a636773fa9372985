"""How our discrete-time layers read as NIR's continuous-time neurons, and back.

NIR writes each neuron as an ODE. We take the input of step t as a current held constant over
the step, (t − dt, t], and solve the ODE exactly over that step (zero-order hold). For a leaky
stage τ·dy/dt = (v_leak − y) + g·u this gives, with a = exp(−dt/τ):

    y_t = a · y_{t−1} + (1 − a) · (v_leak + g · u_t)

and for NIR's integrators (dv/dt = r·I) v_t = v_{t−1} + dt · r · x_t. Our layers match this with
v_leak = 0 and these gains (α = exp(−dt/τ_mem), β = exp(−dt/τ_syn), all per neuron):

    LIF  membrane   v_t = α·v_{t−1} + in_t        r    = 1 (norm_input)  or  1 / (1 − α)
    CubaLIF synapse i_t = β·(i_{t−1} + x_t)       w_in = β / (1 − β)     (decay_early, sinabs')
                    i_t = β·i_{t−1} + x_t         w_in = 1 / (1 − β)     (decay_early=False)
    IF   (IAF)      v_t = v_{t−1} + x_t           r    = 1 / dt
    LI   (ExpLeak)  y_t = α·y_{t−1} + in_t        r    = (1 or 1/(1 − α)) · (α if decay_early)
    I    (ExpLeak, tau_mem = inf)                 r    = 1 / dt

and τ = −dt / ln(α): a layer's τ in time steps is NIR's τ in units of dt. In CubaLIF the synapse
steps first and the membrane sees its new current i_t as the held input: exact for the synapse,
not for NIR's two-state ODE, where the current rises from i_{t−1} to i_t within the step (the
same steady state; docs/nir.md says how far apart they are). sinabs writes the same τ (dt = 1)
and r = 1 for its LIF (its default norm_input=True, which is our r = 1 too). A trained α = 1
(no leak) is τ = inf.

Any r or w_in not in this table is still exact: the reader scales the input by the gain it
implies, (1 − α)·r or (1 − β)·w_in (see ``load``).
"""

from __future__ import annotations

import numpy as np

# Relative tolerance for recognising one of our gains in a graph (float32 parameters written as
# float64 arrays; a foreign graph's values are compared against the same table).
GAIN_RTOL = 1e-6


def decay(tau: np.ndarray, dt: float) -> np.ndarray:
    """a = exp(−dt/τ) (τ = inf gives 1: no leak)."""
    return np.exp(-dt / np.asarray(tau, dtype=np.float64))


def membrane_gain(alpha: np.ndarray, norm_input: bool) -> np.ndarray:
    """NIR's r for our membrane: 1 with norm_input, else 1 / (1 − α) (inf for α = 1)."""
    alpha = np.asarray(alpha, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.ones_like(alpha) if norm_input else 1.0 / (1.0 - alpha)


def synapse_gain(beta: np.ndarray, decay_early: bool) -> np.ndarray:
    """NIR's w_in for our synaptic current: β / (1 − β) (decay_early) or 1 / (1 − β)."""
    beta = np.asarray(beta, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return (beta if decay_early else np.ones_like(beta)) / (1.0 - beta)


def leak_gain(alpha: np.ndarray, norm_input: bool, decay_early: bool) -> np.ndarray:
    """NIR's r for our ExpLeak: the membrane gain, times α when the input decays early."""
    alpha = np.asarray(alpha, dtype=np.float64)
    return membrane_gain(alpha, norm_input) * (alpha if decay_early else 1.0)


def matches(value: np.ndarray, expected: np.ndarray) -> bool:
    """value equals expected everywhere, up to GAIN_RTOL."""
    return bool(np.allclose(value, expected, rtol=GAIN_RTOL, atol=0.0))
