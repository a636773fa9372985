"""``to_nir``: a trained network as a NIR graph (nodes with shapes, parameters in NIR's units).

The network is exported as a chain of layers: an nn.Sequential, or any other module (our
FeedForwardSNN and ConvSNN, a user's network holding an nn.Sequential or its layers as attributes)
whose forward, measured on the sample input, applies each of its child modules once, each to
the previous one's output, with nothing in between (its input goes to the first, the last one's
output is returned). A forward that does anything else between its layers (an addition, a
reshape that is not a module, a layer called twice) raises :class:`NIRExportError` naming the
module. Dropout and nn.Identity are left out (the graph is the network in eval mode);
TimeFolded layers are exported as the layer they wrap.
A recurrent layer becomes a cycle: neuron -> its rec_connect (Affine) -> neuron. Nodes are
named by the layers' module paths; a layer named like the graph's own "input" or "output" node
gets a "_" appended (more while that name is taken).

Settings NIR cannot express but that change the outputs (multi-spike, a subtract_value,
min_v_mem, and the reset, see below) are kept in the node's metadata under "exodus_lightning",
so ``from_nir`` restores them, and one :class:`NIRLossWarning` names them: other readers run
those neurons without them.

The reset: from nir 1.0.5 on, LIF, CubaLIF and IF have a ``v_reset``, and readers following it
(Norse, snnTorch) set the membrane to v_reset after a spike. With such a nir installed,
``reset="zero"`` is written as v_reset = 0 and is exact for them, and ``reset="subtract"`` (the
default) is the lossy setting. nir <= 1.0.4 has no v_reset and its neurons subtract v_threshold,
while a newer nir reads the missing v_reset as 0: then both settings are lossy for some reader,
and the warning says which. (sinabs ignores v_reset and always subtracts.)

Parameters are also stored with their own shape (a per-channel τ of shape (C, 1, 1) is written
per neuron, (C, H, W), as NIR requires), so ``from_nir`` gives back the same parameter shapes.
Training-only settings (a built-in surrogate,
gradient, train_alphas, train_threshold) are kept the same way, silently: they do not change
what a deployed network computes. A surrogate that is not built in cannot be stored: the
warning names it, and ``from_nir`` uses the default. Layers NIR has no node for (ALIF, learned
delays, a batch norm that follows no conv/linear layer, the Squeeze variants) raise
:class:`NIRExportError`; a batch norm right after a conv or linear layer is folded into its
weights (its eval-mode map with the running statistics: the same outputs up to rounding).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import math
import numbers
import warnings
from collections.abc import Iterator

import nir
import numpy as np
import torch
from torch import Tensor, nn

from exodus_lightning import nn as enn
from exodus_lightning.models import TimeFolded, TimeSharedDropout
from exodus_lightning.nn import surrogate as sg
from exodus_lightning.nn.reshape import SqueezeMixin

from . import convention as cv
from .scale import Scale
from .shapes import declared_output

METADATA_KEY = "exodus_lightning"
# The recurrent weights of a layer named N are the node N + REC_SUFFIX.
REC_SUFFIX = ".rec_connect"
_SKIPPED = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, TimeSharedDropout, nn.Identity)
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
# Layers: one node each (or an error naming them), never walked into, though some hold modules.
_LAYERS = (enn.StatefulLayer, enn.DelayedLinear, TimeFolded, nn.Linear, nn.Conv1d, nn.Conv2d,
           nn.AvgPool2d, nn.LPPool2d, nn.Flatten, Scale, *_BATCH_NORMS, *_SKIPPED)
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
NOT_A_CHAIN_HELP = (
    "to_nir exports nn.Sequential chains, and modules whose forward applies each of their "
    "child modules once, each to the previous one's output, with nothing in between; make the "
    "network an nn.Sequential, or make each step of forward a module of its own (e.g. "
    "nn.Flatten(start_dim=2) for x.flatten(2))")
# nir >= 1.0.5: neurons reset to v_reset after a spike (nir <= 1.0.4 has no such field).
HAS_V_RESET = "v_reset" in {field.name for field in dataclasses.fields(nir.LIF)}


class NIRExportError(ValueError):
    """A layer or setting that NIR 1.0 has no node for; the message says which and what to do."""


class NIRLossWarning(UserWarning):
    """Settings NIR cannot express: kept for exodus_lightning, lost for other readers."""


def check_dt(dt: object) -> None:
    """A step length must be a positive finite number (to_nir's and from_nir's dt)."""
    if isinstance(dt, bool) or not isinstance(dt, numbers.Real) or not 0 < dt < math.inf:
        raise ValueError(f"dt must be a positive number (the step length), got {dt!r}")


def to_nir(model: nn.Module, sample_input: Tensor, dt: float = 1.0) -> nir.NIRGraph:
    """The NIR graph of ``model``, its shapes measured on ``sample_input`` (batch, time, *f).

    dt is the length of one time step in the graph's time unit: a layer's τ (in steps) is
    written as τ·dt (see :mod:`exodus_lightning.nir.convention` for every parameter). The model
    runs once, as a copy in eval mode, so its own states and mode stay as they are.
    """
    check_dt(dt)
    if not isinstance(sample_input, Tensor) or sample_input.dim() < 3:
        got = tuple(sample_input.shape) if isinstance(sample_input, Tensor) else sample_input
        raise ValueError(f"sample_input must be a tensor (batch, time, *features), got {got!r}")
    chain, shapes = _trace(model, sample_input)
    dt = float(dt)
    chain = _fold_batch_norms(chain, shapes)
    names = _node_names(chain)
    nodes: dict[str, nir.NIRNode] = {
        "input": nir.Input(input_type={"input": np.array(sample_input.shape[2:])})}
    edges: list[tuple[str, str]] = []
    losses: list[str] = []
    previous = "input"
    for path, module in chain:
        name = names[path]
        in_shape, out_shape = shapes[path]
        if _changes_nothing(module, in_shape, out_shape):
            # Nothing to flatten (1-d features). Left out: Norse and snnTorch apply a Flatten's
            # start_dim to (batch, ...) tensors and would flatten the batch.
            continue
        node, rec_node, lost = _node(name, module, in_shape, out_shape, dt)
        _set_types(name, node, in_shape, out_shape)
        nodes[name] = node
        edges.append((previous, name))
        if rec_node is not None:
            rec_name = f"{name}{REC_SUFFIX}"
            _set_types(rec_name, rec_node, out_shape, in_shape)
            nodes[rec_name] = rec_node
            edges += [(name, rec_name), (rec_name, name)]
        losses += [f"{name}: {text}" for text in lost]
        previous = name
    final = shapes[chain[-1][0]][1] if chain else tuple(sample_input.shape[2:])
    nodes["output"] = nir.Output(output_type={"output": np.array(final)})
    edges.append((previous, "output"))
    graph = nir.NIRGraph(nodes=nodes, edges=edges,
                         metadata={METADATA_KEY: json.dumps({"dt": dt})})
    if losses:
        warnings.warn(NIRLossWarning(
            "NIR cannot express these settings; they are kept in the nodes' metadata for "
            "exodus_lightning.nir.from_nir, and other NIR readers run without them:\n  "
            + "\n  ".join(losses)), stacklevel=2)
    return graph


def _changes_nothing(module: nn.Module, in_shape: tuple[int, ...],
                     out_shape: tuple[int, ...]) -> bool:
    """A Flatten (also in TimeFolded) whose output has the shape of its input."""
    layer = module.layer if isinstance(module, TimeFolded) else module
    return isinstance(layer, nn.Flatten) and in_shape == out_shape


def _node_names(chain: list[tuple[str, nn.Module]]) -> dict[str, str]:
    """{module path: node name}: the path ("" for a model that is itself one layer: its type
    name); one that would take the graph's "input" or "output" node gets a "_" appended, more
    while it, or its recurrent "<name>.rec_connect" node, is another node's name."""
    taken = {"input", "output"} | {path for path, _ in chain}
    taken |= {f"{name}{REC_SUFFIX}" for name in taken}
    names = {}
    for path, module in chain:
        name = path or type(module).__name__.lower()
        if name in ("input", "output"):
            while name in taken or f"{name}{REC_SUFFIX}" in taken:
                name += "_"
            taken |= {name, f"{name}{REC_SUFFIX}"}
        names[path] = name
    return names


# --- walking the model -----------------------------------------------------------------------

@dataclasses.dataclass
class _Unit:
    """A module of the network at path: a layer (children None) or a container of units."""

    path: str
    module: nn.Module
    children: list[_Unit] | None


@dataclasses.dataclass
class _Call:
    """One call of a unit in the measured run: its input and output tensors, each with its
    version counter (an in-place change between two layers shows as a newer version)."""

    order: int
    inputs: tuple
    input_version: int
    output: object = None
    output_version: int = -1


def _is_layer(module: nn.Module) -> bool:
    """A module exported as one node (or refused by _node): not walked into."""
    if isinstance(module, _LAYERS) or isinstance(module, SqueezeMixin):
        return True
    if isinstance(module, _CONTAINERS):
        return False
    # PyTorch's other modules (nn.ReLU, nn.LSTM, ...) and modules holding none are layers.
    return type(module).__module__.startswith("torch.") or next(module.children(), None) is None


def _tree(module: nn.Module, path: str, seen: dict[int, str]) -> _Unit:
    """The units of module: its layers, and the containers it is made of, by path."""
    if id(module) in seen:
        raise NIRExportError(f"{_label(path, module)} is also {_label(seen[id(module)], module)} "
                             f"(one module in two places); to_nir exports each layer once")
    seen[id(module)] = path
    if _is_layer(module):
        return _Unit(path, module, None)
    children = []
    for name, child in module.named_children():
        child_path = f"{path}.{name}" if path else name
        if isinstance(child, (nn.ModuleList, nn.ModuleDict)):
            # Not callable: forward calls the layers inside, which are then children of module.
            children += _tree(child, child_path, seen).children
        else:
            children.append(_tree(child, child_path, seen))
    return _Unit(path, module, children)


def _label(path: str, module: nn.Module) -> str:
    return f"'{path}' ({type(module).__name__})" if path else type(module).__name__


def _trace(model: nn.Module, sample_input: Tensor
           ) -> tuple[list[tuple[str, nn.Module]],
                      dict[str, tuple[tuple[int, ...], tuple[int, ...]]]]:
    """(path, layer) of every layer in the order the network applies them, and each one's
    (input features, output features), from a run of an eval copy on sample_input.

    The run is recorded with hooks; every container must be a chain of its children (see
    _check_chain), so the layers in call order are the network, nothing left out.
    """
    tree = _tree(model, "", {})
    network = copy.deepcopy(model).eval()
    enn.reset_states(network)
    calls: dict[str, list[_Call]] = {}
    counter = itertools.count()
    handles = []

    def units(unit: _Unit) -> Iterator[_Unit]:
        yield unit
        for child in unit.children or ():
            yield from units(child)

    for unit in units(tree):
        def before(module: nn.Module, inputs: tuple, path: str = unit.path) -> None:
            version = inputs[0]._version if len(inputs) == 1 and isinstance(
                inputs[0], Tensor) else -1
            calls.setdefault(path, []).append(_Call(-1, inputs, version))

        def after(module: nn.Module, inputs: tuple, output: object, path: str = unit.path
                  ) -> None:
            call = calls[path][-1]
            call.order, call.output = next(counter), output
            call.output_version = output._version if isinstance(output, Tensor) else -1

        module = network.get_submodule(unit.path)
        handles += [module.register_forward_pre_hook(before),
                    module.register_forward_hook(after)]
    try:
        with torch.no_grad():
            network(sample_input)
    finally:
        for handle in handles:
            handle.remove()
    chain: list[tuple[str, nn.Module]] = []
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
    _check_chain(tree, calls, chain, shapes)
    return chain, shapes


def _check_chain(unit: _Unit, calls: dict[str, list[_Call]], chain: list,
                 shapes: dict) -> None:
    """Append unit's layers to chain in call order, or raise unless the run shows unit as a
    chain: each child called once with one tensor, the first on unit's input, each next one
    on the previous one's output (the same tensor, unchanged), the last one's output returned.
    A Dropout or Identity that does not run is left out (it changes nothing in eval mode)."""
    (own,) = calls[unit.path]  # the model runs once; a child container runs once, checked below
    name = _label(unit.path, unit.module)
    _check_one_tensor(name, own)
    if unit.children is None:
        if not isinstance(unit.module, _SKIPPED):
            chain.append((unit.path, unit.module))
            shapes[unit.path] = (tuple(own.inputs[0].shape[2:]), tuple(own.output.shape[2:]))
        return

    def refuse(reason: str) -> NIRExportError:
        return NIRExportError(f"{name} is not a chain of its layers on "
                              f"sample_input: {reason}. {NOT_A_CHAIN_HELP}")

    ran = []
    for child in unit.children:
        count = len(calls.get(child.path, ()))
        if count == 0 and isinstance(child.module, _SKIPPED):
            continue
        if count != 1:
            raise refuse(f"{_label(child.path, child.module)} "
                         + ("does not run" if count == 0 else f"runs {count} times"))
        ran.append(child)
    ran.sort(key=lambda child: calls[child.path][0].order)
    tensor, version, source = own.inputs[0], own.input_version, "its input"
    for child in ran:
        call = calls[child.path][0]
        _check_one_tensor(_label(child.path, child.module), call)
        if call.inputs[0] is not tensor or call.input_version != version:
            raise refuse(f"{_label(child.path, child.module)} does not take {source} as it is "
                         f"(forward changes it in between, or feeds it something else)")
        tensor, version = call.output, call.output_version
        source = f"the output of {_label(child.path, child.module)}"
    if own.output is not tensor or own.output_version != version:
        raise refuse(f"it does not return {source} as it is (forward changes it after "
                     f"its last layer)")
    for child in ran:
        _check_chain(child, calls, chain, shapes)


def _check_one_tensor(name: str, call: _Call) -> None:
    """Raise unless the call took one tensor (as its only positional argument) and gave one."""
    for values, what in ((call.inputs, "called with"), ((call.output,), "returns")):
        if len(values) != 1 or not isinstance(values[0], Tensor):
            kinds = ", ".join(type(v).__name__ for v in values) or "no positional argument"
            raise NIRExportError(f"{name} is {what} {kinds}, not one tensor: a NIR graph is "
                                 f"a chain of layers, each taking and giving one tensor")


def _set_types(name: str, node: nir.NIRNode, in_shape: tuple[int, ...],
               out_shape: tuple[int, ...]) -> None:
    """Write the measured shapes on the node, after checking the output shape its fields
    imply (a mapping error would show there). A conv's is computed per spatial dim here
    (:mod:`.shapes`): nir 1.0.8 derives it with the first kernel dim for both, wrong for a
    non-square kernel, whose node still gets the right (measured) shapes."""
    derived = declared_output(node)
    if derived is not None and derived != tuple(out_shape):
        raise NIRExportError(f"{name}: the NIR node's output shape {derived} differs "
                             f"from the layer's {out_shape} on sample_input")
    node.input_type = {"input": np.array(in_shape)}
    node.output_type = {"output": np.array(out_shape)}


def _fold_batch_norms(chain: list[tuple[str, nn.Module]],
                      shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]]
                      ) -> list[tuple[str, nn.Module]]:
    """The chain with every batch norm right after a conv or linear layer folded into it (its
    eval-mode affine map, with the running statistics); the pair keeps the first name."""
    folded: list[tuple[str, nn.Module]] = []
    for path, module in chain:
        layer = module.layer if isinstance(module, TimeFolded) else module
        if isinstance(layer, _BATCH_NORMS) and folded:
            previous_path, previous = folded[-1]
            inner = previous.layer if isinstance(previous, TimeFolded) else previous
            if isinstance(inner, (nn.Linear, nn.Conv1d, nn.Conv2d)):
                folded[-1] = (previous_path, _folded(inner, layer, path))
                shapes[previous_path] = (shapes[previous_path][0], shapes[path][1])
                continue
        folded.append((path, module))
    return folded


def _folded(layer: nn.Module, norm: nn.Module, name: str) -> nn.Module:
    """A copy of layer computing norm(layer(x)) in eval mode:
    W' = W · γ/√(σ² + ε) per output channel, b' = (b − μ) · γ/√(σ² + ε) + β."""
    if norm.running_mean is None:
        raise NIRExportError(f"{name}: batch norm without running statistics "
                             f"(track_running_stats=False) has no fixed eval-mode map to fold")
    scale = (norm.running_var.double() + norm.eps).rsqrt()
    if norm.affine:
        scale = scale * norm.weight.detach().double()
    shift = -norm.running_mean.double() * scale
    if norm.affine:
        shift = shift + norm.bias.detach().double()
    weight = layer.weight.detach().double()
    bias = torch.zeros(weight.shape[0], dtype=torch.float64) if layer.bias is None \
        else layer.bias.detach().double()
    # A new plain layer: removing a parametrisation (weight_norm) from a deep copy would
    # remove it from the original's class too.
    if isinstance(layer, nn.Linear):
        plain = nn.Linear(layer.in_features, layer.out_features)
    else:
        kind = nn.Conv1d if isinstance(layer, nn.Conv1d) else nn.Conv2d
        plain = kind(layer.in_channels, layer.out_channels, layer.kernel_size,
                     stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
                     groups=layer.groups, padding_mode=layer.padding_mode)
    view = (-1,) + (1,) * (weight.dim() - 1)
    with torch.no_grad():
        plain.weight.copy_(weight * scale.view(view))
        plain.bias.copy_(bias * scale + shift)
    return plain


# --- one node per layer ----------------------------------------------------------------------

def _node(name: str, module: nn.Module, in_shape: tuple[int, ...], out_shape: tuple[int, ...],
          dt: float) -> tuple[nir.NIRNode, nir.NIRNode | None, list[str]]:
    """(node, recurrent node or None, what NIR loses) for one layer."""
    layer = module.layer if isinstance(module, TimeFolded) else module
    if isinstance(layer, SqueezeMixin):
        raise NIRExportError(f"{name}: {type(layer).__name__} takes (batch*time, ...) input; "
                             f"export the network built with the non-Squeeze layer")
    if isinstance(layer, (enn.ALIF, enn.ALIFRecurrent)):
        raise NIRExportError(f"{name}: ALIF has no NIR node (NIR 1.0 has no adaptive "
                             f"threshold); use LIF or IAF neurons to export the network")
    if isinstance(layer, enn.DelayedLinear):
        raise NIRExportError(f"{name}: DelayedLinear (a learned delay per synapse) has no NIR "
                             f"node (nir.Delay delays whole signals, not synapses)")
    if isinstance(layer, _BATCH_NORMS):
        raise NIRExportError(f"{name}: batch norm has no NIR node; it is folded into a conv or "
                             f"linear layer right before it, and this one follows none")
    if isinstance(layer, (enn.LIF, enn.IAF)):
        return _spiking_node(name, layer, out_shape, dt)
    if isinstance(layer, enn.ExpLeak):
        node, lost = _leak_node(name, layer, out_shape, dt)
        return node, None, lost
    if isinstance(layer, nn.Linear):
        if len(in_shape) != 1:
            raise NIRExportError(f"{name}: nn.Linear on features {in_shape}: NIR's Affine maps "
                                 f"vectors; flatten the features first (nn.Flatten(start_dim=2))")
        return _linear_node(layer), None, []
    if isinstance(layer, (nn.Conv1d, nn.Conv2d)):
        return _conv_node(name, layer, in_shape), None, []
    if isinstance(layer, (nn.AvgPool2d, nn.LPPool2d)):
        return _pool_node(name, layer), None, []
    if isinstance(layer, nn.Flatten):
        return _flatten_node(name, layer, in_shape, isinstance(module, TimeFolded)), None, []
    if isinstance(layer, Scale):
        return nir.Scale(scale=_full(layer.scale, in_shape)), None, []
    raise NIRExportError(f"{name}: {type(layer).__name__} has no NIR mapping; supported: "
                         f"LIF, IAF, ExpLeak, LIFRecurrent/IAFRecurrent with an nn.Linear "
                         f"rec_connect, nn.Linear, Conv1d/Conv2d, AvgPool2d, sum pooling "
                         f"(LPPool2d with norm_type=1), Flatten, Dropout and Identity")


def _full(value: Tensor | float, shape: tuple[int, ...]) -> np.ndarray:
    """A parameter broadcast to the feature shape as float64 (NIR wants one value per neuron)."""
    array = value.detach().cpu().double().numpy() if isinstance(value, Tensor) else value
    return np.broadcast_to(np.asarray(array, dtype=np.float64), shape).copy()


def _tau(layer: nn.Module, tau_name: str, alpha_name: str, shape: tuple[int, ...],
         dt: float) -> tuple[np.ndarray, np.ndarray]:
    """(NIR τ = τ_steps·dt, α) per neuron, from τ or (train_alphas) from α."""
    if layer.train_alphas:
        alpha = _full(getattr(layer, alpha_name), shape)
        with np.errstate(divide="ignore"):  # α = 1 (no leak) is τ = inf
            return np.where(alpha >= 1, np.inf, -dt / np.log(alpha)), alpha
    tau_steps = _full(getattr(layer, tau_name), shape)
    return tau_steps * dt, cv.decay(tau_steps, 1.0)


def _spiking_node(name: str, layer: enn.LIF, shape: tuple[int, ...], dt: float
                  ) -> tuple[nir.NIRNode, nir.NIRNode | None, list[str]]:
    threshold = _full(layer.spike_threshold, shape)
    zeros = np.zeros(shape)
    # Our reset="zero" is NIR's v_reset = 0; "subtract" has no v_reset (kept in the metadata).
    reset = {"v_reset": zeros} if HAS_V_RESET else {}
    has_syn = layer.alpha_syn_calculated is not None
    if isinstance(layer, enn.IAF):
        if has_syn:
            raise NIRExportError(f"{name}: IAF with tau_syn has no NIR node (CubaLIF needs a "
                                 f"finite tau_mem); use LIF, or IAF without tau_syn")
        node = nir.IF(r=np.full(shape, 1.0 / dt), v_threshold=threshold, **reset)
    else:
        tau_mem, alpha = _tau(layer, "tau_mem", "alpha_mem", shape, dt)
        r = cv.membrane_gain(alpha, layer.norm_input)
        if has_syn:
            tau_syn, beta = _tau(layer, "tau_syn", "alpha_syn", shape, dt)
            node = nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, r=r, v_leak=zeros,
                               v_threshold=threshold,
                               w_in=cv.synapse_gain(beta, layer.decay_early), **reset)
        else:
            node = nir.LIF(tau=tau_mem, r=r, v_leak=zeros, v_threshold=threshold, **reset)
    extras, lost = _spiking_extras(layer)
    node.metadata = {METADATA_KEY: json.dumps(extras)}
    rec_node = None
    if isinstance(layer, (enn.LIFRecurrent, enn.IAFRecurrent)):
        rec = layer.rec_connect
        if not isinstance(rec, nn.Linear) or len(shape) != 1:
            raise NIRExportError(f"{name}: a recurrent layer exports with rec_connect an "
                                 f"nn.Linear over 1-d features, got {type(rec).__name__} on "
                                 f"features {shape}")
        rec_node = _linear_node(rec)
    return node, rec_node, lost


def _spiking_extras(layer: enn.LIF) -> tuple[dict, list[str]]:
    """Our settings beyond NIR's neuron (for from_nir), and those that change the outputs."""
    lost = []
    limit = layer.max_spikes_per_step
    if limit != 1:
        lost.append(f"max_spikes_per_step={limit} (NIR neurons spike at most once per step)")
    if layer.reset == "subtract":
        lost.append("reset='subtract' (readers following NIR >= 1.0.5, such as Norse and "
                    "snnTorch, reset the membrane to v_reset = 0 at a spike instead; "
                    "reset='zero' is exact for them)")
    elif not HAS_V_RESET:
        lost.append("reset='zero' (written with nir <= 1.0.4, which has no v_reset: its "
                    "readers, such as sinabs, subtract v_threshold at a spike)")
    subtract = layer.subtract_value
    if subtract is not None:
        lost.append("subtract_value (NIR neurons subtract v_threshold at a spike)")
    if layer.min_v_mem is not None:
        lost.append("min_v_mem (NIR membranes have no lower bound)")
    surrogate = layer.surrogate_grad_fn
    stored = None
    if isinstance(surrogate, sg.BuiltinSurrogate):
        stored = {"name": type(surrogate).__name__, "fields": dataclasses.asdict(surrogate)}
    else:
        lost.append(f"surrogate_grad_fn={surrogate!r} (only the built-in surrogates are "
                    f"stored; from_nir uses the default)")
    extras = {
        "max_spikes_per_step": limit,
        "reset": layer.reset,
        "subtract_value": None if subtract is None else torch.as_tensor(subtract).tolist(),
        "min_v_mem": None if layer.min_v_mem is None else layer.min_v_mem.tolist(),
        "surrogate": stored,
        "gradient": layer.gradient,
        "train_alphas": layer.train_alphas,
        "train_threshold": layer.spike_threshold.requires_grad,
        "shapes": _shapes(layer, ("tau_mem", "tau_syn", "spike_threshold")),
        "decays": _decays(layer),
    }
    return extras, lost


def _shapes(layer: nn.Module, names: tuple[str, ...]) -> dict[str, list[int]]:
    """The parameters' own shapes (NIR's arrays have one value per neuron; from_nir restores
    a per-channel τ of shape (C, 1, 1) from them). With train_alphas, α's shape is τ's."""
    shapes = {}
    for name in names:
        attribute = name
        if layer.train_alphas and name.startswith("tau_"):
            attribute = name.replace("tau_", "alpha_")
        value = getattr(layer, attribute, None)
        if isinstance(value, Tensor):
            shapes[name] = list(value.shape)
    return shapes


def _decays(layer: nn.Module) -> dict[str, list | float]:
    """The layer's τ (or with train_alphas α) parameters as they are, float64 in their own
    shape: τ_NIR = τ·dt and α = exp(−dt/τ_NIR) do not always come back to the last bit in
    float64, and from_nir takes these where they agree with the node."""
    return {name: value.detach().cpu().double().tolist()
            for name in ("tau_mem", "alpha_mem", "tau_syn", "alpha_syn")
            if isinstance(value := getattr(layer, name, None), Tensor)}


def _leak_node(name: str, layer: enn.ExpLeak, shape: tuple[int, ...], dt: float
               ) -> tuple[nir.NIRNode, list[str]]:
    tau_mem, alpha = _tau(layer, "tau_mem", "alpha_mem", shape, dt)
    if np.isinf(tau_mem).all() and not layer.norm_input and not layer.decay_early:
        node = nir.I(r=np.full(shape, 1.0 / dt))
    elif np.isinf(tau_mem).any():
        raise NIRExportError(f"{name}: ExpLeak with tau_mem=inf exports as nir.I only for "
                             f"every neuron at once and with norm_input=False, "
                             f"decay_early=False")
    else:
        node = nir.LI(tau=tau_mem, r=cv.leak_gain(alpha, layer.norm_input, layer.decay_early),
                      v_leak=np.zeros(shape))
    lost = [] if layer.min_v_mem is None else ["min_v_mem (NIR membranes have no lower bound)"]
    node.metadata = {METADATA_KEY: json.dumps({
        "min_v_mem": None if layer.min_v_mem is None else layer.min_v_mem.tolist(),
        "train_alphas": layer.train_alphas,
        "shapes": _shapes(layer, ("tau_mem",)),
        "decays": _decays(layer)})}
    return node, lost


def _linear_node(layer: nn.Linear) -> nir.NIRNode:
    """nir.Affine, also without a bias (a zero bias, "bias": false in the metadata for
    from_nir): sinabs 3.1 drops nir.Linear nodes without a word, and sinabs, Norse and snnTorch
    all read an Affine."""
    weight = layer.weight.detach().cpu().numpy().copy()
    if layer.bias is None:
        return nir.Affine(weight=weight, bias=np.zeros(weight.shape[0], dtype=weight.dtype),
                          metadata={METADATA_KEY: json.dumps({"bias": False})})
    return nir.Affine(weight=weight, bias=layer.bias.detach().cpu().numpy().copy())


def _conv_node(name: str, layer: nn.Conv1d | nn.Conv2d, in_shape: tuple[int, ...]
               ) -> nir.NIRNode:
    if layer.padding_mode != "zeros":
        raise NIRExportError(f"{name}: padding_mode={layer.padding_mode!r}; NIR convolutions "
                             f"pad with zeros")
    weight = layer.weight.detach().cpu().numpy().copy()
    bias = (np.zeros(weight.shape[0], dtype=weight.dtype) if layer.bias is None
            else layer.bias.detach().cpu().numpy().copy())
    padding = _numeric_padding(name, layer)
    if isinstance(layer, nn.Conv1d):
        return nir.Conv1d(input_shape=int(in_shape[1]), weight=weight,
                          stride=layer.stride[0], padding=padding[0],
                          dilation=layer.dilation[0], groups=layer.groups, bias=bias)
    return nir.Conv2d(input_shape=tuple(in_shape[1:]), weight=weight, stride=layer.stride,
                      padding=padding, dilation=layer.dilation, groups=layer.groups, bias=bias)


def _numeric_padding(name: str, layer: nn.Conv1d | nn.Conv2d) -> tuple[int, ...]:
    """The padding per spatial dim as numbers: 'valid' is 0, 'same' is d·(k − 1)/2 per side
    (PyTorch pads an odd total d·(k − 1) with one more on the right, which NIR cannot say)."""
    if layer.padding == "valid":
        return (0,) * len(layer.kernel_size)
    if layer.padding != "same":
        return tuple(layer.padding)
    totals = [d * (k - 1) for d, k in zip(layer.dilation, layer.kernel_size, strict=True)]
    if any(total % 2 for total in totals):
        raise NIRExportError(f"{name}: padding='same' with kernel_size={layer.kernel_size} and "
                             f"dilation={layer.dilation} pads one more on one side, which NIR's "
                             f"symmetric padding cannot express; use an odd kernel size (or "
                             f"dilation) or a numeric padding")
    return tuple(total // 2 for total in totals)


def _pair(value: int | tuple[int, ...]) -> np.ndarray:
    return np.array((value, value) if isinstance(value, int) else tuple(value))


def _pool_node(name: str, layer: nn.AvgPool2d | nn.LPPool2d) -> nir.NIRNode:
    if layer.ceil_mode:
        raise NIRExportError(f"{name}: ceil_mode=True; NIR pooling rounds the output size down")
    kernel = _pair(layer.kernel_size)
    stride = kernel if layer.stride is None else _pair(layer.stride)
    if isinstance(layer, nn.LPPool2d):
        if layer.norm_type != 1:
            raise NIRExportError(f"{name}: LPPool2d with norm_type={layer.norm_type}; only "
                                 f"norm_type=1 (sum pooling, nir.SumPool2d) has a NIR node")
        return nir.SumPool2d(kernel_size=kernel, stride=stride, padding=np.array((0, 0)))
    padding = _pair(layer.padding)
    if layer.divisor_override is not None or (padding.any() and not layer.count_include_pad):
        raise NIRExportError(f"{name}: AvgPool2d with divisor_override or "
                             f"count_include_pad=False; NIR averages over the whole kernel")
    return nir.AvgPool2d(kernel_size=kernel, stride=stride, padding=padding)


def _flatten_node(name: str, layer: nn.Flatten, in_shape: tuple[int, ...], folded: bool
                  ) -> nir.NIRNode:
    """NIR's Flatten counts feature dims only. Ours sees (batch, time, *features), or in
    TimeFolded (batch·time, *features), whose first dim it cannot flatten (TimeFolded could
    not unfold it): dims are shifted by 2 (or 1), a negative dim counts from the end."""
    leading = 1 if folded else 2
    rank = leading + len(in_shape)
    dims = []
    for dim in (layer.start_dim, layer.end_dim):
        if (dim if dim >= 0 else rank + dim) < leading:
            raise NIRExportError(f"{name}: nn.Flatten(start_dim={layer.start_dim}, "
                                 f"end_dim={layer.end_dim}) on {rank}-d input flattens batch "
                                 f"or time; use start_dim=2 to flatten the features of (batch, "
                                 f"time, ...)")
        dims.append(dim - leading if dim >= 0 else dim)
    return nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=dims[0],
                       end_dim=dims[1])
