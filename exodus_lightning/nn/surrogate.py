"""Surrogate gradients dS/dV for the spike non-linearity (re-exported from ops.surrogate).

Each is a frozen dataclass called as ``surrogate(v_mem, threshold) -> dS/dV``; the extension
evaluates the built-in ones inside its backward scan. Any other callable with that signature
(a sinabs surrogate, a lambda) works as ``surrogate_grad_fn`` too. The formulas are defined once,
in :mod:`exodus_lightning.ops.surrogate`; see its docstring for them.
"""

from exodus_lightning.ops.surrogate import (
    ArcTan,
    BuiltinSurrogate,
    FastSigmoid,
    Gaussian,
    Heaviside,
    PeriodicExponential,
    SingleExponential,
    SuperSpike,
    Triangle,
)

__all__ = [
    "ArcTan",
    "BuiltinSurrogate",
    "FastSigmoid",
    "Gaussian",
    "Heaviside",
    "PeriodicExponential",
    "SingleExponential",
    "SuperSpike",
    "Triangle",
]
