"""EXODUS custom ops: functional LIF, ALIF, adLIF and leaky integration with fused kernels and
exact gradients.

Lowest Python layer of exodus_lightning: imports nothing from nn/models/data.
"""

from . import surrogate
from ._arguments import broadcasts_to_features, check_choice, check_nonnegative, state_dtype
from ._codes import BACKENDS, GRADIENTS, RESETS
from ._extension import ExtensionBuildError, is_available, try_build_and_load
from ._extension import load as load_extension
from .adlif import adlif
from .alif import alif
from .cpu_memory import keep_freed_memory
from .custom_surrogate import (
    CompiledSurrogate,
    UncompiledSurrogate,
    compiled_surrogate,
    uncompiled_surrogate,
)
from .leaky import leaky_integrate
from .lif import lif
from .recurrent import RecurrentNeuron, recurrent_scan
from .recurrent_adlif import adlif_recurrent
from .recurrent_alif import alif_recurrent
from .recurrent_lif import lif_recurrent
from .reference import (
    adlif_recurrent_reference,
    adlif_reference,
    alif_recurrent_reference,
    alif_reference,
    leaky_integrate_reference,
    lif_recurrent_reference,
    lif_reference,
)

__all__ = [
    "BACKENDS",
    "adlif",
    "adlif_recurrent",
    "adlif_recurrent_reference",
    "adlif_reference",
    "alif",
    "alif_recurrent",
    "alif_recurrent_reference",
    "alif_reference",
    "GRADIENTS",
    "RESETS",
    "broadcasts_to_features",
    "check_choice",
    "check_nonnegative",
    "CompiledSurrogate",
    "compiled_surrogate",
    "ExtensionBuildError",
    "is_available",
    "keep_freed_memory",
    "leaky_integrate",
    "leaky_integrate_reference",
    "lif",
    "lif_recurrent",
    "lif_recurrent_reference",
    "lif_reference",
    "recurrent_scan",
    "RecurrentNeuron",
    "state_dtype",
    "try_build_and_load",
    "UncompiledSurrogate",
    "uncompiled_surrogate",
    "load_extension",
    "surrogate",
]
