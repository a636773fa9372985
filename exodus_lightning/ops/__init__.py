"""EXODUS custom ops: functional LIF, ALIF, adLIF and leaky integration with fused kernels and
exact gradients.

Lowest Python layer of exodus_lightning: imports nothing from nn/models/data.
"""

from . import surrogate
from ._arguments import check_choice, state_dtype
from ._codes import BACKENDS, GRADIENTS, RESETS
from ._extension import ExtensionBuildError, is_available, try_build_and_load
from ._extension import load as load_extension
from .adlif import adlif
from .alif import alif
from .cpu_memory import keep_freed_memory
from .leaky import leaky_integrate
from .lif import lif
from .reference import (
    adlif_reference,
    alif_reference,
    leaky_integrate_reference,
    lif_reference,
)

__all__ = [
    "BACKENDS",
    "adlif",
    "adlif_reference",
    "alif",
    "alif_reference",
    "GRADIENTS",
    "RESETS",
    "check_choice",
    "ExtensionBuildError",
    "is_available",
    "keep_freed_memory",
    "leaky_integrate",
    "leaky_integrate_reference",
    "lif",
    "lif_reference",
    "state_dtype",
    "try_build_and_load",
    "load_extension",
    "surrogate",
]
