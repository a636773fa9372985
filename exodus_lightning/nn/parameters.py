"""Creation and checks of neuron parameters (time constants, decays, thresholds).

Errors name the constructor argument, so a user sees ``tau_mem`` rather than the op's ``alpha``.
The values are checked when a layer is built and, since training may move them, again in every
forward call (eager and compiled alike; see ops/value_checks.py for which devices).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from exodus_lightning.ops import broadcasts_to_features
from exodus_lightning.ops._arguments import warn_if_channel_axis_ambiguous
from exodus_lightning.ops.value_checks import check_values, value_check

Value = float | Tensor


class ShapeError(ValueError, RuntimeError):
    """Shapes that do not fit: a ValueError like our other argument errors, and a RuntimeError
    like the broadcasting or reshape error sinabs raises in the same place."""


class ParameterRangeError(ValueError):
    """A layer parameter left the range it was checked against when the layer was built:
    training diverged (or a loaded state_dict holds such a value)."""


def as_tensor(name: str, value: Value, dtype: torch.dtype | None = None) -> Tensor:
    """A number, tensor, list or NumPy value as a float32 tensor (float64 kept unless ``dtype``
    says otherwise), detached from any graph.

    Anything ``torch.as_tensor`` reads is accepted, as sinabs accepts it (a list from a YAML
    config, a NumPy array, ``np.float32(0.7)``); integer values too
    (``min_v_mem=torch.tensor(-1)``).
    """
    if isinstance(value, (bool, str)) or value is None:
        raise TypeError(f"{name} must be a float or a floating tensor broadcastable to the "
                        f"feature shape, got {type(value).__name__}")
    if isinstance(value, (int, float)):
        return torch.tensor(float(value), dtype=dtype or torch.float32)
    if not isinstance(value, Tensor):
        try:
            value = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError) as error:
            raise TypeError(f"{name} must be a float or a floating tensor broadcastable to the "
                            f"feature shape, got {type(value).__name__}") from error
    if value.dtype == torch.bool or value.is_complex():
        raise TypeError(f"{name} must be a floating tensor, got {value.dtype}; "
                        f"pass {name}.float()")
    if dtype is None:
        dtype = torch.float64 if value.dtype == torch.float64 else torch.float32
    return value.detach().clone().to(dtype)


def _describe(t: Tensor) -> str:
    return f"{t.item():g}" if t.numel() == 1 else f"values in [{t.min():g}, {t.max():g}]"


def decay_parameter(tau_name: str, alpha_name: str, tau: Value, train_alphas: bool,
                    trainable: bool = True, dtype: torch.dtype | None = None
                    ) -> tuple[str, nn.Parameter]:
    """The trainable form of a time constant: (name, parameter).

    train_alphas=False: the parameter is τ > 0 (math.inf allowed: no leak) and α = exp(−1/τ).
    train_alphas=True:  the parameter is α = exp(−1/τ) itself, in [0, 1].
    ``dtype``: as :func:`as_tensor` (sinabs' LIF family casts τ to float32, its ALIF does not).
    """
    tau_t = as_tensor(tau_name, tau, dtype)
    if torch.isnan(tau_t).any() or not bool((tau_t > 0).all()):
        raise ValueError(f"{tau_name} must be > 0 (a time constant in time steps), got "
                         f"{_describe(tau_t)}")
    if train_alphas:
        return alpha_name, nn.Parameter(torch.exp(-1.0 / tau_t), requires_grad=trainable)
    return tau_name, nn.Parameter(tau_t, requires_grad=trainable)


# Appended to errors about values that were valid when the layer was built.
_MOVED = ("; it was valid when the layer was built, so training (or a loaded state_dict) moved it "
          "there: lower the learning rate, clip the gradients (Trainer(gradient_clip_val=...); "
          "--trainer.gradient_clip_val on the command line) "
          "or freeze it (layer.{parameter}.requires_grad_(False))")


def _moved(name: str) -> str:
    return _MOVED.format(parameter=name.rpartition(".")[2])


@value_check(ParameterRangeError)
def trained_tau_problem(name: str, tau: Tensor) -> str | None:
    """A layer's time constant after training: τ > 0; ``name`` is "Layer.parameter"."""
    if bool((tau > 0).all()):  # NaN compares False: a problem
        return None
    return f"{name} must be > 0 (a time constant in time steps), got {_describe(tau)}" + _moved(
        name)


@value_check(ParameterRangeError)
def trained_alpha_problem(name: str, alpha: Tensor) -> str | None:
    """A layer's decay after training (train_alphas): α in [0, 1]."""
    if bool(((alpha >= 0) & (alpha <= 1)).all()):
        return None
    return f"{name} must lie in [0, 1] (alpha = exp(-1/tau)), got {_describe(alpha)}" + _moved(
        name)


@value_check(ParameterRangeError)
def trained_threshold_problem(name: str, threshold: Tensor, min_v_mem: Tensor | None
                              ) -> str | None:
    """A layer's spike threshold after training: θ > 0 and θ > min_v_mem everywhere."""
    if not bool((threshold > 0).all()):
        return f"{name} must be > 0, got {_describe(threshold)}" + _moved(name)
    if min_v_mem is not None and not bool((threshold > min_v_mem).all()):
        return (f"{name} must be > min_v_mem everywhere, got {_describe(threshold)} and "
                f"min_v_mem {_describe(min_v_mem)}" + _moved(name))
    return None


def check_decay(layer: str, name: str, value: Tensor | None, is_alpha: bool) -> None:
    """The layer's τ or (train_alphas) α parameter ``name`` is still valid."""
    if value is not None:
        problem = trained_alpha_problem if is_alpha else trained_tau_problem
        check_values(problem, f"{layer}.{name}", value.detach())


def check_threshold(layer: str, threshold: Tensor, min_v_mem: Tensor | None) -> None:
    """The layer's spike_threshold is still > 0 and > min_v_mem."""
    check_values(trained_threshold_problem, f"{layer}.spike_threshold", threshold.detach(),
                 min_v_mem)


def threshold_parameter(spike_threshold: Value, min_v_mem: Value | None,
                        trainable: bool) -> tuple[nn.Parameter, Tensor | None]:
    """spike_threshold as a parameter and min_v_mem as a tensor (or None), checked together."""
    threshold = as_tensor("spike_threshold", spike_threshold)
    if torch.isnan(threshold).any() or not bool((threshold > 0).all()):
        raise ValueError(f"spike_threshold must be > 0, got {_describe(threshold)}")
    min_t = None
    if min_v_mem is not None:
        min_t = as_tensor("min_v_mem", min_v_mem)
        try:
            below = bool((min_t < threshold).all())
        except RuntimeError as error:
            raise ValueError(f"min_v_mem of shape {tuple(min_t.shape)} does not broadcast with "
                             f"spike_threshold of shape {tuple(threshold.shape)}") from error
        if not below:
            raise ValueError(f"spike_threshold must be > min_v_mem everywhere (a clipped "
                             f"membrane could never reach it), got spike_threshold "
                             f"{_describe(threshold)} and min_v_mem {_describe(min_t)}; lower "
                             f"min_v_mem or raise spike_threshold")
    return nn.Parameter(threshold, requires_grad=trainable), min_t


def check_broadcast(name: str, value: Tensor | None, x: Tensor) -> None:
    """value must broadcast to the feature shape of x (batch, time, *features), or to
    (1, *features) as sinabs allows (a leading 1 for the batch, e.g. (1, C, 1, 1))."""
    if value is None or value.dim() == 0:
        return
    features = tuple(x.shape[2:])
    if not broadcasts_to_features(value.shape, features):
        raise ShapeError(f"{name} of shape {tuple(value.shape)} does not broadcast to the feature "
                         f"shape {features} of the input {tuple(x.shape)}; use a scalar, one "
                         f"value per neuron {features}, or per channel (C, 1, 1) for conv "
                         f"features")
    # The layer's own name for it (tau_mem, not the op's alpha); the op then stays quiet.
    warn_if_channel_axis_ambiguous(name, value.shape, features)


def check_max_spikes(max_spikes_per_step: int | None) -> None:
    if max_spikes_per_step is None:
        return
    if (isinstance(max_spikes_per_step, bool) or not isinstance(max_spikes_per_step, int)
            or max_spikes_per_step < 1):
        raise ValueError(f"max_spikes_per_step must be None (unbounded multi-spike), 1 (single "
                         f"spike) or an int K >= 1 (at most K), got {max_spikes_per_step!r}")


def check_input(layer: str, x: Tensor, squeeze_hint: bool = True) -> None:
    """x must be a floating (batch, time, *features) tensor."""
    if not isinstance(x, Tensor) or not x.is_floating_point():
        got = x.dtype if isinstance(x, Tensor) else type(x).__name__
        raise TypeError(f"{layer} expects a floating tensor (batch, time, *features), got {got}")
    if x.dim() < 2:
        hint = f"; for (batch*time, *features) use {layer}Squeeze" if squeeze_hint else ""
        raise ValueError(f"{layer} expects input of shape (batch, time, *features), got "
                         f"{tuple(x.shape)}{hint}")


def check_device(layer: nn.Module, x: Tensor) -> None:
    """The layer's parameters and settings (not its states, which follow x) must be on x's
    device: otherwise the op would name its own argument (alpha), not the layer to move."""
    states = set(getattr(layer, "state_names", ()))
    tensors = [*layer.named_parameters(),
               *((name, b) for name, b in layer.named_buffers() if name not in states)]
    for name, tensor in tensors:
        if tensor is not None and tensor.device != x.device:
            owner = type(layer).__name__
            raise ValueError(f"{owner}'s {name} is on {tensor.device} but its input is on "
                             f"{x.device}; move the layer to the input's device "
                             f"(layer.to(x.device)), or the input to the layer's")


def format_value(value: Tensor | None) -> str:
    """Short text of a parameter for repr: the number, or its shape."""
    if value is None:
        return "None"
    if value.numel() == 1 and value.dim() == 0:
        number = value.item()
        return "inf" if math.isinf(number) else f"{number:g}"
    return f"tensor of shape {tuple(value.shape)}"
