"""Conversion between sinabs / sinabs-exodus layers and ours, anywhere in a module tree.

``from_sinabs(model)`` returns a copy of any ``nn.Module`` in which every sinabs or
sinabs-exodus LIF, IAF, ExpLeak, sinabs ALIF (and their Squeeze and Recurrent variants) is
replaced by the ``exodus_lightning.nn`` layer of the same name; ``to_sinabs(model)`` goes back
(to sinabs', or with ``exodus=True`` to sinabs-exodus' layers), e.g. to export through sinabs'
NIR or DynapCNN tools after training here, and raises :class:`ConversionError` for a layer of
ours that sinabs has no class for (adLIF, adLIFRecurrent, a subclass of ours). Parameters
(with their requires_grad), thresholds, bounds, states, recurrent modules, spike/reset
functions, surrogates and settings are carried over, so the converted model gives the same
outputs and gradients.

sinabs is not imported by ``from_sinabs``: its layers are recognised by module and class name.
``to_sinabs`` imports it (``pip install sinabs``; sinabs-exodus needs CUDA).

What does not carry over exactly:
- from sinabs-exodus: its lower bound ``min_v_mem`` clips before spiking; ours clips the
  post-reset state as sinabs does (same forward for min_v_mem ≤ 0, gradients of clipped steps
  differ; a warning says so). Its ExpLeak ignores ``min_v_mem``; the converted layer does too.
- from sinabs' ALIF: sinabs never carries its ALIF's synaptic current from call to call; the
  converted layer does (see ``exodus_lightning.nn.ALIF``).
- to sinabs: settings sinabs lacks raise :class:`ConversionError` where they change the
  forward pass (decay_early=False, ExpLeak decay_early=True) and warn where they only change
  gradients (gradient="slayer" with a subtracting reset, gradient="exodus" with reset="zero",
  train_threshold, except ALIF's: its b0 and adapt_scale become sinabs parameters). To
  sinabs-exodus: the recurrent and ALIF layers, min_v_mem > 0 and an ExpLeak min_v_mem raise
  (it has no such layer / computes them differently).
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
    "ALIF": enn.ALIF, "ALIFSqueeze": enn.ALIFSqueeze, "ALIFRecurrent": enn.ALIFRecurrent,
}
_EXODUS_LAYERS = ("LIF", "LIFSqueeze", "IAF", "IAFSqueeze", "ExpLeak", "ExpLeakSqueeze")
# Our constructor keywords that sinabs' constructors do not take.
_OUR_KEYWORDS = ("decay_early", "gradient", "backend", "train_threshold", "train_adapt_scale")


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


def _trained(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.requires_grad


def _detached(value: Any) -> Any:
    return value.detach() if isinstance(value, torch.Tensor) else value


def _alif_kwargs(layer: nn.Module, name: str) -> dict[str, Any]:
    """Our constructor arguments for a sinabs ALIF, ALIFSqueeze or ALIFRecurrent, read from its
    attributes: sinabs' arg_dict leaves out norm_input and rec_connect, and with train_alphas
    detaches the layer's α parameters in place (or fails without tau_syn)."""

    def tau(which: str) -> torch.Tensor | None:
        if layer.train_alphas:
            alpha = getattr(layer, f"alpha_{which}", None)
            return None if alpha is None else -1.0 / alpha.detach().log()
        return _detached(getattr(layer, f"tau_{which}", None))

    kwargs = dict(
        tau_mem=tau("mem"), tau_adapt=tau("adapt"), tau_syn=tau("syn"),
        adapt_scale=_detached(layer.adapt_scale), spike_threshold=_detached(layer.b0),
        spike_fn=layer.spike_fn, reset_fn=layer.reset_fn,
        surrogate_grad_fn=layer.surrogate_grad_fn, min_v_mem=_detached(layer.min_v_mem),
        shape=layer.shape, train_alphas=layer.train_alphas, norm_input=layer.norm_input,
        record_states=layer.record_states,
        # A user may make b0 or adapt_scale an nn.Parameter (plain attributes in sinabs).
        train_threshold=_trained(layer.b0), train_adapt_scale=_trained(layer.adapt_scale),
    )
    if name == "ALIFRecurrent":
        kwargs["rec_connect"] = layer.rec_connect
    if name == "ALIFSqueeze":
        kwargs.update(batch_size=layer.batch_size, num_timesteps=layer.num_timesteps)
    return kwargs


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

    Recognised (by module and class name, without importing sinabs): LIF, IAF, ExpLeak, ALIF,
    their Squeeze variants and LIFRecurrent / IAFRecurrent / ALIFRecurrent from
    ``sinabs.layers``, and LIF, IAF, ExpLeak and Squeeze variants from
    ``sinabs.exodus.layers``. Exact classes only: a subclass may change the dynamics, so it is
    left as it is. sinabs surrogates with a fused built-in
    twin are replaced by it. Raises ``UnsupportedActivationError`` (naming the layer) for a
    spike or reset function the fused op cannot reproduce.
    """

    def convert(layer: nn.Module, path: str) -> nn.Module | None:
        source = _source(layer)
        if source is None:
            return None
        library, name = source
        kwargs = _alif_kwargs(layer, name) if name.startswith("ALIF") else dict(layer.arg_dict)
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
    alif = isinstance(layer, enn.ALIF)
    # ALIF's synaptic current is sinabs' ALIF's by construction (no decay_early setting).
    decay_early = True if alif else layer.decay_early
    target = "sinabs-exodus" if exodus else "sinabs"

    def fail(what: str) -> None:
        raise ConversionError(f"{_where(path, layer)}: {what} cannot be converted to {target}")

    if isinstance(layer, (enn.LIFRecurrent, enn.IAFRecurrent)) and exodus:
        fail("a recurrent layer (sinabs-exodus has none; use exodus=False)")
    if alif and exodus:
        fail("an ALIF layer (sinabs-exodus has none; use exodus=False)")
    if alif:
        # sinabs keeps b0 and adapt_scale as plain attributes; a parameter there is trained
        # as ours is (through the subtracting reset), so the trained ones become parameters.
        for key, value in (("spike_threshold", layer.b0), ("adapt_scale", layer.adapt_scale)):
            kwargs[key] = nn.Parameter(value.detach().clone()) if value.requires_grad else value
    elif exodus:
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
        if not alif and layer.spike_threshold.requires_grad:
            warnings.warn(f"{_where(path, layer)}: train_threshold=True: sinabs passes no "
                          f"gradient through its spike function to the threshold",
                          stacklevel=4)
    return kwargs


def _sinabs_class(layers: Any, name: str) -> type[nn.Module]:
    """sinabs' layer class of this name (sinabs 3.1.3 does not export ALIFSqueeze)."""
    if name == "ALIFSqueeze" and not hasattr(layers, name):
        from sinabs.layers.alif import ALIFSqueeze

        return ALIFSqueeze
    return getattr(layers, name)


def to_sinabs(model: nn.Module, *, exodus: bool = False) -> nn.Module:
    """A copy of model with every exodus_lightning spiking layer replaced by sinabs' (or, with
    exodus=True, sinabs-exodus') layer of the same name, with the same tensors and settings.

    Needs sinabs installed (sinabs-exodus: and CUDA). Raises :class:`ConversionError` for a
    layer of ours the target library has no class for (adLIF, adLIFRecurrent, a subclass of
    ours; with exodus=True also the recurrent and ALIF layers), naming its path, and for a
    setting that would change the forward pass in the target library; warns for one that
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
            if isinstance(layer, enn.StatefulLayer):
                # Returned as it is, it would leave a model sinabs (and sinabs.to_nir) cannot
                # handle, found only later.
                raise ConversionError(
                    f"{_where(path, layer)}: sinabs has no such layer; to_sinabs converts "
                    f"exodus_lightning's {', '.join(_OURS)} (those classes exactly: a subclass "
                    f"may change the dynamics). Replace the layer or keep the model in "
                    f"exodus_lightning")
            return None
        kwargs = _sinabs_kwargs(layer, path, exodus, activation)
        if "rec_connect" in kwargs:
            kwargs["rec_connect"] = copy.deepcopy(kwargs["rec_connect"])
        new = _sinabs_class(layers, name)(**kwargs)
        _copy_tensors(layer, new, path)
        return new

    return _replace(model, convert)
