"""Validation and normalisation of the functional API's arguments (errors name the argument).

Nothing here synchronises with a GPU: Python numbers are checked as numbers and become tensors
by a fill (not a host-to-device copy), and the values of CUDA tensor arguments are checked only
when ``EXODUS_LIGHTNING_CHECK_VALUES=1`` (a debugging switch: one host sync per check). CPU
tensors are always checked, under torch.compile too (see value_checks.py).
"""

from __future__ import annotations

import math
import numbers
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from . import _extension
from ._codes import BACKENDS
from ._compiler import assume_constant_result
from .value_checks import check_values, value_check

# The kernels hold the spike cap in a 32-bit int.
MAX_SPIKES_LIMIT = 2**31 - 1
_warned_fallback: set[str] = set()
# (file, line, shape, features) of the calls already warned about an ambiguous channel axis.
_warned_channel_axis: set[tuple] = set()
# Frames of these folders are skipped when a warning names the line that caused it.
_LIBRARY_FOLDERS = (str(Path(__file__).resolve().parents[1]), str(Path(torch.__file__).parent))


Number = int | float


def _bounds(value: Number | Tensor) -> tuple[float, float]:
    if isinstance(value, Tensor):
        if value.numel() == 0:  # no values (zero features): (inf, −inf) passes every check
            return math.inf, -math.inf
        return value.min().item(), value.max().item()
    return float(value), float(value)


def check_input(x: Tensor, name: str = "x") -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (batch, time, *features), "
                        f"got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor (float16/bfloat16/float32/float64), "
                        f"got {x.dtype}; convert it with {name}.float()")
    if x.dim() < 2:
        raise ValueError(f"{name} must have shape (batch, time, *features), got {tuple(x.shape)}; "
                         f"add the missing batch or time axis with unsqueeze")


def state_dtype(x: Tensor) -> torch.dtype:
    """Dtype of membrane state and parameters: float32 for half inputs, else x's dtype."""
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype


def parameter(name: str, value: float | Tensor, x: Tensor) -> Tensor:
    """A scalar or a tensor broadcastable to x's feature shape, as a tensor in the state dtype."""
    features = x.shape[2:]
    # numbers.Real: Python's and NumPy's scalars (np.float32 is no float subclass).
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, Tensor)):
        raise TypeError(f"{name} must be a float or a tensor broadcastable to the feature shape "
                        f"{tuple(features)}, got {type(value).__name__}")
    if not isinstance(value, Tensor):
        # A fill, not torch.tensor(value, device=...): that copies from the host and waits.
        return torch.full((), float(value), dtype=state_dtype(x), device=x.device)
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got {value.dtype}")
    if value.device != x.device:
        raise ValueError(f"{name} is on {value.device} but x is on {x.device}; move it with "
                         f"{name}.to(x.device)")
    if not broadcasts_to_features(value.shape, features):
        raise ValueError(f"{name} of shape {tuple(value.shape)} does not broadcast to the feature "
                         f"shape {tuple(features)} of x {tuple(x.shape)}; per-channel values of "
                         f"conv features need shape (C, 1, 1)")
    warn_if_channel_axis_ambiguous(name, value.shape, features)
    if value.dim() > len(features):
        value = value.squeeze(0)  # the batch axis of (1, *features)
    return value.to(state_dtype(x))


def broadcasts_to_features(shape: Sequence[int], features: Sequence[int]) -> bool:
    """True if a parameter of this shape gives one value per feature: it broadcasts to
    ``features``, or to ``(1, *features)`` (a size-1 batch axis, as sinabs' layers allow)."""
    target = (1, *features)
    try:
        return tuple(torch.broadcast_shapes(tuple(shape), target)) == target
    except RuntimeError:
        return False


def channel_axis_ambiguity(name: str, shape: Sequence[int], features: Sequence[int]
                           ) -> str | None:
    """Why a parameter of this shape may not do what was meant on these features, or None.

    A parameter with fewer axes than the features lines up with their last axes (broadcasting),
    so (C,) on conv features (C, H, W) gives one value per column, not per channel. It is
    accepted when W == C (an error otherwise), so a per-channel intent would silently be
    per-column: the case flagged is a parameter with fewer axes than the features whose first
    axis has the size C = features[0] > 1 of the channel axis but lines up with a later axis.
    """
    shape, features = tuple(shape), tuple(features)
    if len(shape) > len(features):
        shape = shape[1:]  # the batch axis of (1, *features)
    axis = len(features) - len(shape)  # the feature axis that shape[0] lines up with
    # An explicit leading 1, as in (1, 1, W), says which axis was meant.
    if not shape or axis < 1 or shape[0] == 1 or shape[0] != features[0]:
        return None
    per_channel = (features[0],) + (1,) * (len(features) - 1)
    as_given = (1,) * axis + shape
    return (f"{name} of shape {shape} on features {features} broadcasts along feature axis "
            f"{axis} (size {features[axis]}), not along the channels (axis 0, also of size "
            f"{features[0]}); for one value per channel give it shape {per_channel}, for what "
            f"it does now write shape {as_given} to silence this warning")


def warn_if_channel_axis_ambiguous(name: str, shape: Sequence[int], features: Sequence[int]
                                   ) -> None:
    """Warn once per calling line of user code (and shape) when ``channel_axis_ambiguity``
    finds the parameter's shape ambiguous."""
    if torch.compiler.is_compiling():
        return
    message = channel_axis_ambiguity(name, shape, features)
    if message is None:
        return
    level = caller_outside_the_libraries()
    frame = sys._getframe(level - 1)
    key = (frame.f_code.co_filename, frame.f_lineno, tuple(shape), tuple(features))
    if key in _warned_channel_axis:
        return  # a layer's own check and its op's see the same parameter
    _warned_channel_axis.add(key)
    warnings.warn(message, stacklevel=level)


def caller_outside_the_libraries() -> int:
    """warnings.warn's stacklevel, seen from the function that calls this one, for the first
    frame outside exodus_lightning and torch: the user's line that called the model, not a
    module's forward."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_LIBRARY_FOLDERS):
        frame, level = frame.f_back, level + 1
    return level


@value_check()
def alpha_problem(name: str, alpha: Number | Tensor) -> str | None:
    """α must lie in [0, 1] (0: no memory, as exp(−1/τ) of a tiny τ rounds to; 1: no leak)."""
    low, high = _bounds(alpha)
    if not (low >= 0 and high <= 1):
        return (f"{name} must lie in [0, 1] (alpha = exp(-1/tau) with tau > 0; 1 = no leak), "
                f"got values in [{low}, {high}]")
    return None


@value_check()
def threshold_problem(name: str, threshold: Number | Tensor) -> str | None:
    """θ must be > 0 and finite."""
    low, high = _bounds(threshold)
    if not low > 0:
        return f"{name} must be > 0, got minimum {low}"
    if not high < math.inf:  # not math.isfinite: Dynamo cannot trace it on a symbolic float
        return (f"{name} must be finite, got {high} (a neuron that never spikes is one with a "
                f"large finite threshold)")
    return None


@value_check()
def below_threshold_problem(name: str, threshold: Number | Tensor,
                            min_v_mem: Number | Tensor) -> str | None:
    """min_v_mem must not be NaN and must lie below θ everywhere."""
    if any(bound != bound for bound in _bounds(min_v_mem)):  # NaN (traceable, unlike isnan)
        return "min_v_mem must not be NaN; pass None for no lower bound"
    if isinstance(threshold, Tensor) or isinstance(min_v_mem, Tensor):
        above = bool((torch.as_tensor(threshold) > torch.as_tensor(min_v_mem)).all())
    else:
        above = threshold > min_v_mem
    if not above:
        return (f"{name} must be > min_v_mem everywhere (a clipped membrane could never reach "
                f"it); lower min_v_mem or raise {name}")
    return None


@value_check()
def nonnegative_problem(name: str, value: Number | Tensor) -> str | None:
    """value must be finite and ≥ 0."""
    low, high = _bounds(value)
    if not (low >= 0 and high < math.inf):
        return f"{name} must be finite and >= 0, got values in [{low}, {high}]"
    return None


@value_check()
def first_threshold_problem(name: str, threshold: Tensor) -> str | None:
    """ALIF's first adaptive threshold b0 + β·b_init must be > 0 (later ones are no lower:
    b decays from b_init towards 0 and spikes only add to it)."""
    low, _ = _bounds(threshold)
    if low <= 0:  # NaN compares False: a NaN state shows in the outputs instead
        return (f"{name} gives a first adaptive threshold b0 + beta * b_init <= 0 (minimum "
                f"{low}), so spike counts would be negative or infinite; b_init is a decaying "
                f"spike trace, >= 0 in the dynamics")
    return None


def check_adaptation(b_init: Tensor | None, b0: Tensor, beta: Tensor,
                     name: str = "b_init") -> None:
    """ALIF's initial adaptation (None: zeros) keeps the threshold b0 + β·b_init > 0 (CPU
    tensors; see value_checks.py)."""
    if b_init is not None and b_init.device.type == "cpu":
        with torch.no_grad():
            check_values(first_threshold_problem, name, b0 + beta * b_init)


def check_nonnegative(value: Number | Tensor, name: str) -> None:
    """A finite value ≥ 0 (numbers or tensors, as the user gave them)."""
    check_values(nonnegative_problem, name, value)


def check_alpha(alpha: Number | Tensor, name: str = "alpha") -> None:
    """α in [0, 1]; pass the user's number (checked while tracing) or the tensor."""
    check_values(alpha_problem, name, alpha)


def check_threshold(threshold: Number | Tensor, min_v_mem: Number | Tensor | None,
                    name: str = "threshold") -> None:
    """θ > 0 and θ > min_v_mem everywhere (numbers or tensors, as the user gave them)."""
    check_values(threshold_problem, name, threshold)
    if min_v_mem is not None:
        check_values(below_threshold_problem, name, threshold, min_v_mem)


@value_check()
def finite_problem(name: str, value: Number | Tensor) -> str | None:
    """value must be finite (no NaN, no ±inf)."""
    low, high = _bounds(value)
    if not (-math.inf < low and high < math.inf):  # NaN fails both comparisons
        return f"{name} must be finite, got values in [{low}, {high}]"
    return None


def check_finite(value: Number | Tensor, name: str) -> None:
    """A finite value (numbers or tensors, as the user gave them)."""
    check_values(finite_problem, name, value)


def check_max_spikes(max_spikes: int | None) -> int:
    """max_spikes as the kernels' code: 0 = unbounded."""
    if max_spikes is None:
        return 0
    if (isinstance(max_spikes, bool) or not isinstance(max_spikes, numbers.Integral)
            or not 1 <= max_spikes <= MAX_SPIKES_LIMIT):
        raise ValueError(f"max_spikes must be None (unbounded multi-spike) or an int from 1 "
                         f"(single spike) to {MAX_SPIKES_LIMIT}, got {max_spikes!r}")
    return int(max_spikes)


def surrogate_or(default, surrogate, state: str = "v_mem"):
    """The surrogate to use: ``default`` for None, else the callable (state, threshold) -> dS/d
    state itself; anything else is a TypeError naming the argument."""
    if surrogate is None:
        return default
    if not callable(surrogate):
        derivative = "dS/dV" if state == "v_mem" else "dS/du"
        raise TypeError(f"surrogate must be a callable ({state}, threshold) -> {derivative}, "
                        f"got {type(surrogate).__name__}")
    return surrogate


def check_choice(name: str, value: str, allowed) -> None:
    """value must be one of allowed (a tuple or the keys of a dict); the error lists them."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")


def initial_state(name: str, value: Tensor | None, x: Tensor) -> Tensor:
    """v_init as (batch, *features) in the state dtype; zeros when None."""
    shape = (x.shape[0], *x.shape[2:])
    if value is None:
        return x.new_zeros(shape, dtype=state_dtype(x))
    if not isinstance(value, Tensor) or not value.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor of shape (batch, *features) = {shape}")
    if tuple(value.shape) != shape:
        raise ValueError(f"{name} must have shape (batch, *features) = {shape}, got "
                         f"{tuple(value.shape)}; after a batch-size change start from None")
    if value.device != x.device:
        raise ValueError(f"{name} is on {value.device} but x is on {x.device}")
    return value.to(state_dtype(x))


def flat(p: Tensor, x: Tensor) -> Tensor:
    """Expand a per-feature parameter to one value per feature, shape (N,), for the kernels."""
    return p.expand(x.shape[2:]).reshape(-1).contiguous()


@assume_constant_result
def extension_available(device_type: str) -> bool:
    """Whether the kernels for device_type load (built on first call); torch.compile takes the
    answer as a constant, where a direct try_build_and_load breaks the graph on its lock."""
    return _extension.try_build_and_load(device_type)


def resolve_backend(backend: str, x: Tensor) -> str:
    """'extension' or 'reference'; 'auto' falls back to the reference (with a warning) when the
    extension cannot be built for x's device."""
    check_choice("backend", backend, BACKENDS)
    if backend == "reference":
        return backend
    if extension_available(x.device.type):
        return "extension"
    reason = _extension.failure_reason(x.device.type) or f"no kernels for device {x.device.type}"
    if backend == "extension":
        raise RuntimeError(f"backend='extension' is not available: {reason}")
    if x.device.type not in _warned_fallback:
        _warned_fallback.add(x.device.type)
        import warnings

        warnings.warn(f"exodus_lightning: using the (slower) reference backend on "
                      f"{x.device.type}: {reason}", RuntimeWarning, stacklevel=3)
    return "reference"
