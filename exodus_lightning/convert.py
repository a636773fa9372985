"""Conversion between sinabs / sinabs-exodus layers and ours, anywhere in a module tree.

``from_sinabs(model)`` returns a copy of any ``nn.Module`` in which every sinabs or
sinabs-exodus LIF, IAF, ExpLeak (and their Squeeze and Recurrent variants) is replaced by the
``exodus_lightning.nn`` layer of the same name; ``to_sinabs(model)`` goes back (to sinabs', or
with ``exodus=True`` to sinabs-exodus' layers), e.g. to export through sinabs' NIR or DynapCNN
tools after training here. Parameters (with their requires_grad), thresholds, bounds, states,
recurrent modules, spike/reset functions, surrogates and settings are carried over, so the
converted model gives the same outputs and gradients.

sinabs is not imported by ``from_sinabs``: its layers are recognised by module and class name.
``to_sinabs`` imports it (``pip install sinabs``; sinabs-exodus needs CUDA).

What does not carry over exactly:
- from sinabs-exodus: its lower bound ``min_v_mem`` clips before spiking; ours clips the
  post-reset state as sinabs does (same forward for min_v_mem ≤ 0, gradients of clipped steps
  differ; a warning says so). Its ExpLeak ignores ``min_v_mem``; the converted layer does too.
- to sinabs: settings sinabs lacks raise :class:`ConversionError` where they change the
  forward pass (decay_early=False, ExpLeak decay_early=True) and warn where they only change
  gradients (gradient="slayer" with a subtracting reset, gradient="exodus" with reset="zero",
  train_threshold). To sinabs-exodus: the recurrent layers, min_v_mem > 0 and an ExpLeak
  min_v_mem raise (it has no such layer / computes them differently).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from exodus_lightning import nn as enn
from exodus_lightning.nn import activation as act
from exodus_lightning.ops import surrogate as sg

__all__ = ["ConversionError", "from_sinabs", "to_sinabs"]

_OURS: dict[str, type[nn.Module]] = {
    "LIF": enn.LIF, "LIFSqueeze": enn.LIFSqueeze, "LIFRecurrent": enn.LIFRecurrent,
    "IAF": enn.IAF, "IAFSqueeze": enn.IAFSqueeze, "IAFRecurrent": enn.IAFRecurrent,
    "ExpLeak": enn.ExpLeak, "ExpLeakSqueeze": enn.ExpLeakSqueeze,
}
_EXODUS_LAYERS = ("LIF", "LIFSqueeze", "IAF", "IAFSqueeze", "ExpLeak", "ExpLeakSqueeze")
# Our constructor keywords that sinabs' constructors do not take.
_OUR_KEYWORDS = ("decay_early", "gradient", "backend", "train_threshold")


class ConversionError(ValueError):
    """A layer setting the target library cannot reproduce."""


def _source(module: nn.Module) -> tuple[str, str] | None:
    """("sinabs" | "exodus", class name) for a convertible sinabs / sinabs-exodus layer."""
    cls = type(module)
    where = cls.__module__ or ""
    if where.startswith("sinabs.exodus.layers") and cls.__name__ in _EXODUS_LAYERS:
        return "exodus", cls.__name__
    if where.startswith("sinabs.layers") and cls.__name__ in _OURS:
        return "sinabs", cls.__name__
    return None


def _replace(model: nn.Module, convert: Callable[[nn.Module, str], nn.Module | None]
             ) -> nn.Module:
    """A deep copy of model in which convert(layer, path) replaces each layer it converts.

    The converted layers go into deepcopy's memo, so the layers they replace are never copied
    (sinabs' own deepcopy fails for its recurrent layers).
    """
    memo: dict[int, Any] = {}
    converted: list[str] = []
    for path, module in model.named_modules(remove_duplicate=False):
        if id(module) in memo or any(path.startswith(done + ".") for done in converted):
            continue  # shared, or inside a converted layer (its rec_connect)
        new = convert(module, path)
        if new is None:
            continue
        if not path:
            return new  # model itself is a layer
        memo[id(module)] = new
        converted.append(path)
    return copy.deepcopy(model, memo)


def _reference_tensor(module: nn.Module) -> torch.Tensor | None:
    """A floating parameter or buffer of module: where and in which dtype the copy lives."""
    for tensor in (*module.parameters(recurse=False), *module.buffers(recurse=False)):
        if tensor.is_floating_point():
            return tensor
    return None


def _copy_tensors(source: nn.Module, target: nn.Module, path: str,
                  skip: tuple[str, ...] = ()) -> None:
    """Parameters, buffers, states and submodules by state_dict (same keys by design; names
    in skip left out), then each parameter's requires_grad."""
    reference = _reference_tensor(source)
    if reference is not None:
        target.to(device=reference.device, dtype=reference.dtype)
    state = {key: value for key, value in source.state_dict().items() if key not in skip}
    try:
        target.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ConversionError(f"{_where(path, source)}: could not copy its tensors: "
                              f"{error}") from error
    own = dict(target.named_parameters(recurse=False))
    for name, param in source.named_parameters(recurse=False):
        if name in own:
            own[name].requires_grad_(param.requires_grad)


def _where(path: str, layer: nn.Module) -> str:
    return f"{path or 'the model'} ({type(layer).__module__}.{type(layer).__name__})"


def from_sinabs(model: nn.Module) -> nn.Module:
    """A copy of model with every sinabs / sinabs-exodus spiking layer replaced by ours.

    Recognised (by module and class name, without importing sinabs): LIF, IAF, ExpLeak, their
    Squeeze variants and LIFRecurrent / IAFRecurrent from ``sinabs.layers``, and LIF, IAF,
    ExpLeak and Squeeze variants from ``sinabs.exodus.layers``. Exact classes only: a subclass
    may change the dynamics, so it is left as it is. sinabs surrogates with a fused built-in
    twin are replaced by it. Raises ``UnsupportedActivationError`` (naming the layer) for a
    spike or reset function the fused op cannot reproduce.
    """

    def convert(layer: nn.Module, path: str) -> nn.Module | None:
        source = _source(layer)
        if source is None:
            return None
        library, name = source
        kwargs = dict(layer.arg_dict)
        if "rec_connect" in kwargs:
            kwargs["rec_connect"] = copy.deepcopy(kwargs["rec_connect"])
        skip: tuple[str, ...] = ()
        if library == "exodus":
            kwargs["decay_early"] = bool(getattr(layer, "decay_early", True))
            if kwargs.get("min_v_mem") is not None and name.startswith("ExpLeak"):
                warnings.warn(f"{_where(path, layer)}: sinabs-exodus' ExpLeak ignores "
                              f"min_v_mem; the converted layer does too", stacklevel=3)
                kwargs["min_v_mem"], skip = None, ("min_v_mem",)
            elif kwargs.get("min_v_mem") is not None:
                warnings.warn(f"{_where(path, layer)}: sinabs-exodus clips at min_v_mem before "
                              f"spiking; the converted layer clips the post-reset state as "
                              f"sinabs does (same forward for min_v_mem <= 0, different "
                              f"gradients where the bound is active)", stacklevel=3)
        if "surrogate_grad_fn" in kwargs:
            kwargs["surrogate_grad_fn"] = act.fused_surrogate(kwargs["surrogate_grad_fn"])
        try:
            new = _OURS[name](**kwargs)
        except (ValueError, TypeError) as error:
            raise type(error)(f"{_where(path, layer)}: {error}") from error
        _copy_tensors(layer, new, path, skip)
        return new

    return _replace(model, convert)


def _sinabs_surrogate(surrogate: Any, activation: Any) -> Any:
    """sinabs' twin of one of our fused surrogates (ours have the same formulas), else as is."""
    if type(surrogate) is sg.SingleExponential:
        return activation.SingleExponential(surrogate.grad_width, surrogate.grad_scale)
    if type(surrogate) is sg.PeriodicExponential:
        return activation.PeriodicExponential(surrogate.grad_width, surrogate.grad_scale)
    if type(surrogate) is sg.Heaviside:
        return activation.Heaviside(surrogate.window)
    if type(surrogate) is sg.Gaussian:
        return activation.Gaussian(mu=0.0, sigma=surrogate.sigma, grad_scale=surrogate.grad_scale)
    return surrogate


def _sinabs_kwargs(layer: nn.Module, path: str, exodus: bool, activation: Any
                   ) -> dict[str, Any]:
    """sinabs' constructor arguments for one of our layers; raises or warns where sinabs
    cannot do the same."""
    kwargs = dict(layer.arg_dict)
    for name in _OUR_KEYWORDS:
        kwargs.pop(name, None)
    spiking = layer.does_spike
    decay_early = layer.decay_early
    target = "sinabs-exodus" if exodus else "sinabs"

    def fail(what: str) -> None:
        raise ConversionError(f"{_where(path, layer)}: {what} cannot be converted to {target}")

    if isinstance(layer, (enn.LIFRecurrent, enn.IAFRecurrent)) and exodus:
        fail("a recurrent layer (sinabs-exodus has none; use exodus=False)")
    if exodus:
        kwargs["decay_early"] = decay_early
        bound = layer.min_v_mem
        if bound is not None and not spiking:
            fail("ExpLeak with min_v_mem (sinabs-exodus' ExpLeak ignores it)")
        if bound is not None and bool((bound > 0).any()):
            fail("min_v_mem > 0 (sinabs-exodus clips before spiking, which changes the "
                 "forward pass for a positive bound)")
        if bound is not None:
            warnings.warn(f"{_where(path, layer)}: sinabs-exodus clips at min_v_mem before "
                          f"spiking: same forward for min_v_mem <= 0, different gradients "
                          f"where the bound is active", stacklevel=4)
    elif spiking and not decay_early and layer.tau_syn_calculated is not None:
        fail("decay_early=False (sinabs decays the synaptic input in its own step)")
    elif not spiking and decay_early:
        fail("ExpLeak decay_early=True (sinabs adds the input undecayed)")
    if spiking:
        kwargs["spike_fn"] = {None: activation.MultiSpike, 1: activation.SingleSpike}.get(
            layer.max_spikes_per_step) or activation.MaxSpike(layer.max_spikes_per_step)
        kwargs["reset_fn"] = (activation.MembraneReset() if layer.reset == "zero"
                              else activation.MembraneSubtract(layer.subtract_value))
        kwargs["surrogate_grad_fn"] = _sinabs_surrogate(layer.surrogate_grad_fn, activation)
        sinabs_gradient = "slayer" if layer.reset == "zero" else "exodus"
        if layer.gradient != sinabs_gradient:
            warnings.warn(f"{_where(path, layer)}: gradient={layer.gradient!r} with reset="
                          f"{layer.reset!r} has no sinabs equivalent; the forward pass is the "
                          f"same, sinabs' gradients are its BPTT's", stacklevel=4)
        if layer.spike_threshold.requires_grad:
            warnings.warn(f"{_where(path, layer)}: train_threshold=True: sinabs passes no "
                          f"gradient through its spike function to the threshold",
                          stacklevel=4)
    return kwargs


def to_sinabs(model: nn.Module, *, exodus: bool = False) -> nn.Module:
    """A copy of model with every exodus_lightning spiking layer replaced by sinabs' (or, with
    exodus=True, sinabs-exodus') layer of the same name, with the same tensors and settings.

    Needs sinabs installed (sinabs-exodus: and CUDA). Raises :class:`ConversionError` for a
    setting that would change the forward pass in the target library and warns for one that
    only changes its gradients (see the module docstring).
    """
    try:
        import sinabs.activation as activation

        if exodus:
            import sinabs.exodus.layers as layers
        else:
            import sinabs.layers as layers
    except ImportError as error:
        package = "sinabs-exodus (needs CUDA)" if exodus else "sinabs"
        raise ImportError(f"to_sinabs needs {package}: pip install "
                          f"{'sinabs-exodus' if exodus else 'sinabs'}") from error

    def convert(layer: nn.Module, path: str) -> nn.Module | None:
        name = type(layer).__name__
        if type(layer) is not _OURS.get(name):
            return None
        kwargs = _sinabs_kwargs(layer, path, exodus, activation)
        if "rec_connect" in kwargs:
            kwargs["rec_connect"] = copy.deepcopy(kwargs["rec_connect"])
        new = getattr(layers, name)(**kwargs)
        _copy_tensors(layer, new, path)
        return new

    return _replace(model, convert)
