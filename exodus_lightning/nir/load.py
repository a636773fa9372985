"""``from_nir``: a NIR graph (or .nir file) as a network of our layers.

The graph must be a chain from its Input to its Output node, where a neuron may also feed
itself through an Affine/Linear node (a recurrent layer: LIFRecurrent / IAFRecurrent); nested
subgraphs are spliced in first (snnTorch writes a recurrent layer as one). Each
node becomes a layer on (batch, time, *features); parameters are read with the convention of
:mod:`exodus_lightning.nir.convention`. A graph written by ``to_nir`` carries our settings
beyond NIR in its nodes' metadata, and they are restored; any other graph's neurons follow
NIR's own semantics: one spike per step at most, no bound, and the reset of the nir version
that made the node: to v_reset (nir >= 1.0.5; we run v_reset = 0 as reset="zero" and raise for
any other value), else by subtracting v_threshold (nir <= 1.0.4, no v_reset).

A foreign graph has no stored dt, and dt defaults to 1 (τ in steps, as sinabs writes it). A
graph whose τ are in seconds (Norse, snnTorch) needs ``dt=``: without it, a τ below one step
warns (:class:`NIRImportWarning`), and one whose decay exp(−dt/τ) is 0 in float32 raises.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import nir
import numpy as np
import torch
from torch import Tensor, nn

from exodus_lightning import nn as enn
from exodus_lightning.models import TimeFolded
from exodus_lightning.nn import surrogate as sg

from . import convention as cv
from .export import METADATA_KEY
from .network import NIRNetwork
from .scale import Scale

_NEURONS = (nir.LIF, nir.CubaLIF, nir.IF)
# nir >= 1.0.6 type-checks a graph it reads, and derives a grouped conv's input channels as
# weight.shape[1] (in / groups), so it rejects a correct grouped conv; our layers check shapes.
_READ_TYPE_CHECK = "type_check" in inspect.signature(nir.read).parameters


class NIRImportError(ValueError):
    """A NIR graph or node that our layers cannot run; the message names the node."""


class NIRImportWarning(UserWarning):
    """A graph that reads, but probably not as meant (e.g. τ in seconds read with dt = 1)."""


def from_nir(graph_or_path: nir.NIRGraph | str | os.PathLike, dt: float | None = None,
             backend: str = "auto") -> NIRNetwork:
    """Our network for a NIR graph or .nir file: (batch, time, *input) -> (batch, time, *out).

    dt: the step length in the graph's time unit (None: the dt ``to_nir`` stored, else 1, as
    sinabs). backend: the spiking layers' backend ("auto", "extension" or "reference").
    """
    graph = graph_or_path
    if isinstance(graph_or_path, (str, os.PathLike)):
        graph = _read(graph_or_path)
    if not isinstance(graph, nir.NIRGraph):
        raise TypeError(f"graph_or_path must be a nir.NIRGraph or the path of a .nir file, got "
                        f"{type(graph_or_path).__name__}")
    dt_known = dt is not None or "dt" in _extras(graph)
    if dt is None:
        dt = float(_extras(graph).get("dt", 1.0))
    if not 0 < dt < math.inf:
        raise ValueError(f"dt must be a positive number (the step length), got {dt!r}")
    chain, recurrent, nodes = _walk(graph)
    for name in chain:
        _check_time_constants(name, nodes[name], dt, dt_known)
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for name in chain:
        rec = recurrent.get(name)
        for suffix, module in _modules(name, nodes[name], dt, backend,
                                       None if rec is None else nodes[rec]):
            layers[_module_name(name + suffix, layers)] = module
    (input_node,) = graph.inputs.values()
    input_shape = np.asarray(input_node.input_type["input"]).tolist()
    return NIRNetwork(input_shape, nn.Sequential(layers))


def _read(path: str | os.PathLike) -> nir.NIRGraph:
    """nir.read, a file the installed nir cannot parse as an NIRImportError saying which nir
    wrote it (a neuron with v_reset needs nir >= 1.0.5)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no NIR file at {os.fspath(path)!r}")
    try:
        return nir.read(path, type_check=False) if _READ_TYPE_CHECK else nir.read(path)
    except Exception as error:  # nir raises TypeError, KeyError, ValueError, OSError, ...
        written = _file_version(path)
        raise NIRImportError(
            f"nir {nir.version} cannot read {os.fspath(path)!r} (written by nir "
            f"{written or 'of unknown version'}): {type(error).__name__}: {error}. Install the "
            f"nir that wrote it or newer: pip install -U 'nir>={written or '1.0.5'}' (a "
            f"neuron with v_reset, as Norse, snnTorch and sinabs write them today, needs nir "
            f">= 1.0.5)") from error


def _file_version(path: str | os.PathLike) -> str | None:
    """The nir version stored in a .nir file (None when it has none or is not HDF5)."""
    import h5py  # nir's own dependency

    try:
        with h5py.File(path, "r") as file:
            version = file["version"][()]
    except Exception:  # not HDF5, or no version: the caller says "unknown"
        return None
    return version.decode("utf8") if isinstance(version, bytes) else str(version)


def _check_time_constants(name: str, node: nir.NIRNode, dt: float, dt_known: bool) -> None:
    """Without a known dt (neither passed nor stored), a τ below one step warns and one whose
    decay exp(−dt/τ) is 0 in float32 raises: the graph's τ are probably in another unit
    (seconds). With a known dt such a decay is a neuron without memory (α = 0), as the layers
    allow."""
    tau = getattr(node, "tau_mem", getattr(node, "tau", None))
    if not isinstance(node, (nir.LIF, nir.CubaLIF, nir.LI)) or tau is None:
        return
    taus = [np.asarray(tau, dtype=np.float64)]
    if isinstance(node, nir.CubaLIF):
        taus.append(np.asarray(node.tau_syn, dtype=np.float64))
    shortest = min(float(t.min()) for t in taus)
    hint = ("pass the step length in the graph's time unit, from_nir(..., dt=<seconds per "
            "step>) for a graph whose τ are in seconds (Norse's default step is 1e-3, "
            "snnTorch's 1e-4)")
    if dt_known:
        return
    if np.float32(cv.decay(shortest, dt)) == 0:
        raise NIRImportError(f"node {name!r}: τ = {shortest:g} with dt = {dt:g} gives a decay "
                             f"exp(−dt/τ) of 0 in float32 (the neuron forgets everything each "
                             f"step); {hint}")
    if shortest < dt:
        warnings.warn(NIRImportWarning(
            f"node {name!r}: τ = {shortest:g} is below one step (dt = {dt:g}, the default: the "
            f"graph stores no dt); {hint}"), stacklevel=3)


def _extras(node: nir.NIRNode) -> dict[str, Any]:
    """Our settings stored by to_nir in the node's metadata ({} for other graphs)."""
    text = (getattr(node, "metadata", None) or {}).get(METADATA_KEY)
    if text is None:
        return {}
    if isinstance(text, bytes):
        text = text.decode("utf8")
    return json.loads(str(text))


def _module_name(name: str, taken: dict[str, nn.Module]) -> str:
    """A module name from a node name: no dots (torch's path separator), unique."""
    base = name.replace(".", "_") or "node"
    candidate, count = base, 1
    while candidate in taken:
        candidate, count = f"{base}_{count}", count + 1
    return candidate


def _flatten(nodes: dict[str, nir.NIRNode], edges: Sequence[tuple[str, str]]
             ) -> tuple[dict[str, nir.NIRNode], list[tuple[str, str]]]:
    """The graph with every nested subgraph S spliced in, its nodes named "S.name": an edge into
    S reaches what S's Input feeds, an edge out of S leaves from what feeds S's Output (snnTorch
    writes a recurrent layer so). Edges may also name "S.name" directly."""
    flat_nodes: dict[str, nir.NIRNode] = {}
    flat_edges: list[tuple[str, str]] = []
    entry, exit_ = {}, {}
    for name, node in nodes.items():
        if not isinstance(node, nir.NIRGraph):
            flat_nodes[name] = node
            continue
        inner_nodes, inner_edges = _flatten(node.nodes, node.edges)
        inputs = [n for n, v in inner_nodes.items() if isinstance(v, nir.Input)]
        outputs = [n for n, v in inner_nodes.items() if isinstance(v, nir.Output)]
        if len(inputs) != 1 or len(outputs) != 1:
            raise NIRImportError(f"subgraph {name!r} has inputs {inputs} and outputs "
                                 f"{outputs}; from_nir reads subgraphs with one of each")
        flat_nodes.update({f"{name}.{n}": v for n, v in inner_nodes.items()})
        flat_edges += [(f"{name}.{a}", f"{name}.{b}") for a, b in inner_edges]
        entry[name], exit_[name] = f"{name}.{inputs[0]}", f"{name}.{outputs[0]}"
    flat_edges += [(exit_.get(a, a), entry.get(b, b)) for a, b in edges]
    for port in [*entry.values(), *exit_.values()]:  # the subgraphs' own Input/Output nodes
        sources = [a for a, b in flat_edges if b == port]
        targets = [b for a, b in flat_edges if a == port]
        flat_edges = [(a, b) for a, b in flat_edges if port not in (a, b)]
        flat_edges += [(a, b) for a in sources for b in targets]
        del flat_nodes[port]
    return flat_nodes, flat_edges


def _walk(graph: nir.NIRGraph) -> tuple[list[str], dict[str, str], dict[str, nir.NIRNode]]:
    """The node names from input to output, {neuron: its recurrent Affine/Linear node}, and
    the nodes by name (nested subgraphs spliced in)."""
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise NIRImportError(f"from_nir reads graphs with one Input and one Output node, got "
                             f"inputs {list(graph.inputs)} and outputs {list(graph.outputs)}")
    nodes, edges = _flatten(graph.nodes, graph.edges)
    successors: dict[str, list[str]] = {name: [] for name in nodes}
    predecessors: dict[str, list[str]] = {name: [] for name in nodes}
    for source, target in edges:
        for name in (source, target):
            if name not in nodes:
                raise NIRImportError(f"edge ({source!r}, {target!r}) names no node {name!r}")
        successors[source].append(target)
        predecessors[target].append(source)
    recurrent = {}
    for name, node in nodes.items():
        if not isinstance(node, _NEURONS):
            continue
        for source in predecessors[name]:
            if (isinstance(nodes[source], (nir.Affine, nir.Linear))
                    and predecessors[source] == [name] and successors[source] == [name]):
                recurrent[name] = source
    loops = set(recurrent.values())
    (current,) = graph.inputs
    (output,) = graph.outputs
    chain, seen = [], {current}
    while current != output:
        following = [n for n in successors[current] if n not in loops]
        if len(following) != 1:
            raise NIRImportError(f"node {current!r} feeds {following}: from_nir reads chains "
                                 f"(each node one successor) with self-recurrent neurons")
        current = following[0]
        inputs = [n for n in predecessors[current] if n not in loops]
        if len(inputs) != 1 or current in seen:
            raise NIRImportError(f"node {current!r} has inputs {inputs}: from_nir reads chains "
                                 f"(each node one input) with self-recurrent neurons")
        seen.add(current)
        if current != output:
            chain.append(current)
    unused = set(nodes) - seen - loops
    if unused:
        raise NIRImportError(f"nodes {sorted(unused)} are not on the path from input to output")
    return chain, recurrent, nodes


# --- one node as modules ---------------------------------------------------------------------

def _modules(name: str, node: nir.NIRNode, dt: float, backend: str,
             rec: nir.NIRNode | None) -> list[tuple[str, nn.Module]]:
    """[(name suffix, module)] for one node: usually one, a neuron may need an input gain."""
    if isinstance(node, nir.Affine):
        return [("", _linear(node.weight, node.bias))]
    if isinstance(node, nir.Linear):
        return [("", _linear(node.weight, None))]
    if isinstance(node, (nir.Conv1d, nir.Conv2d)):
        return [("", TimeFolded(_conv(node)))]
    if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
        return [("", TimeFolded(_pool(name, node)))]
    if isinstance(node, nir.Flatten):
        dims = [int(d) + 2 if int(d) >= 0 else int(d) for d in (node.start_dim, node.end_dim)]
        return [("", nn.Flatten(*dims))]
    if isinstance(node, nir.Scale):
        return [("", Scale(torch.as_tensor(np.asarray(node.scale))))]
    if isinstance(node, _NEURONS):
        return _spiking(name, node, dt, backend, rec)
    if isinstance(node, (nir.LI, nir.I)):
        return _leak(name, node, dt, backend)
    raise NIRImportError(f"node {name!r}: nir.{type(node).__name__} has no layer here; "
                         f"supported: Affine, Linear, Conv1d, Conv2d, AvgPool2d, SumPool2d, "
                         f"Flatten, Scale, LIF, CubaLIF, IF, LI, I")


def _tensor(array: Any) -> Tensor:
    return torch.as_tensor(np.asarray(array, dtype=np.float32))


def _linear(weight: np.ndarray, bias: np.ndarray | None) -> nn.Linear:
    weight = np.asarray(weight)
    if weight.ndim != 2:
        raise NIRImportError(f"Affine/Linear weight of shape {weight.shape}: only 2-d weights "
                             f"(out, in) are supported")
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(_tensor(weight))
        if bias is not None:
            layer.bias.copy_(_tensor(bias))
    return layer


def _ints(value: Any, count: int) -> tuple[int, ...] | int:
    values = np.atleast_1d(np.asarray(value)).astype(int).tolist()
    if len(values) == 1:
        values = values * count
    return values[0] if count == 1 else tuple(values)


def _conv(node: nir.Conv1d | nir.Conv2d) -> nn.Module:
    weight = np.asarray(node.weight)
    dims = weight.ndim - 2
    padding = node.padding
    if isinstance(padding, bytes):
        padding = padding.decode("utf8")
    if not isinstance(padding, str):
        padding = _ints(padding, dims)
    conv = (nn.Conv1d if dims == 1 else nn.Conv2d)(
        int(weight.shape[1]) * int(node.groups), int(weight.shape[0]),
        _ints(weight.shape[2:], dims), stride=_ints(node.stride, dims), padding=padding,
        dilation=_ints(node.dilation, dims), groups=int(node.groups), bias=True)
    with torch.no_grad():
        conv.weight.copy_(_tensor(weight))
        conv.bias.copy_(_tensor(node.bias))
    return conv


def _pool(name: str, node: nir.AvgPool2d | nir.SumPool2d) -> nn.Module:
    kernel, stride = _ints(node.kernel_size, 2), _ints(node.stride, 2)
    padding = _ints(node.padding, 2)
    if isinstance(node, nir.AvgPool2d):
        return nn.AvgPool2d(kernel, stride, padding)
    if any(padding):
        raise NIRImportError(f"node {name!r}: SumPool2d with padding {padding} is not "
                             f"supported (only 0)")
    return nn.LPPool2d(1, kernel, stride)


def _value(array: np.ndarray, shape: Sequence[int] | None = None) -> float | Tensor:
    """A per-neuron parameter as the layer takes it: in its own shape where to_nir stored one
    (e.g. a per-channel (C, 1, 1) that NIR holds as (C, H, W)), else one float when all neurons
    share it, else a float32 tensor of the node's shape."""
    array = np.asarray(array, dtype=np.float64)
    if shape is not None:
        own = _own_shape(array, tuple(int(n) for n in shape))
        if own is not None:
            return _tensor(own)
    if array.size and (array == array.flat[0]).all():
        return float(array.flat[0])
    return _tensor(array)


def _own_shape(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """array (the parameter broadcast to the features) back in the shape it was broadcast from,
    or None if it is not such a broadcast (a graph edited since to_nir wrote it)."""
    core = shape[max(len(shape) - array.ndim, 0):]  # sinabs-style leading 1s are re-added
    if any(n != 1 for n in shape[:len(shape) - len(core)]):
        return None
    index = (0,) * (array.ndim - len(core)) + tuple(
        slice(0, 1) if n == 1 else slice(None) for n in core)
    small = array[index]
    if small.shape != core or not np.array_equal(np.broadcast_to(small, array.shape), array):
        return None
    return small.reshape(shape)


def _foreign_reset(name: str, node: nir.NIRNode) -> str:
    """The reset a node without our metadata asks for: to v_reset (nir >= 1.0.5), which our
    neurons can do for v_reset = 0 (reset="zero"); by subtraction without v_reset (nir 1.0.4)."""
    v_reset = getattr(node, "v_reset", None)
    if v_reset is None:
        return "subtract"
    if np.any(np.asarray(v_reset) != 0):
        raise NIRImportError(f"node {name!r}: v_reset must be 0 (our neurons reset to 0 or by "
                             f"subtracting the threshold), got values in "
                             f"[{np.min(v_reset)}, {np.max(v_reset)}]")
    return "zero"


def _zero_leak(name: str, node: nir.NIRNode) -> None:
    if np.any(np.asarray(node.v_leak) != 0):
        raise NIRImportError(f"node {name!r}: v_leak must be 0 (our neurons rest at 0), got "
                             f"values in [{np.min(node.v_leak)}, {np.max(node.v_leak)}]")


def _gain_choice(name: str, value: np.ndarray, options: Sequence[tuple[Any, np.ndarray]],
                 fallback: Any, gain: np.ndarray) -> tuple[Any, np.ndarray]:
    """(setting, extra input gain): the option whose gain the graph holds, else the fallback
    setting and the gain it implies (what the node multiplies the input by)."""
    value = np.asarray(value, dtype=np.float64)
    for setting, expected in options:
        if cv.matches(value, expected):
            return setting, np.ones_like(value)
    if not np.isfinite(gain).all():
        raise NIRImportError(f"node {name!r}: its gains {value} give a non-finite input scale")
    return fallback, gain


def _surrogate(extras: dict[str, Any]) -> dict[str, Any]:
    stored = extras.get("surrogate")
    if not stored:
        return {}
    return {"surrogate_grad_fn": getattr(sg, stored["name"])(**stored["fields"])}


def _spiking(name: str, node: nir.NIRNode, dt: float, backend: str, rec: nir.NIRNode | None
             ) -> list[tuple[str, nn.Module]]:
    extras = _extras(node)
    shapes = extras.get("shapes", {})
    threshold = np.asarray(node.v_threshold, dtype=np.float64)
    gain = np.ones_like(threshold)
    common: dict[str, Any] = dict(
        spike_threshold=_value(threshold, shapes.get("spike_threshold")),
        max_spikes_per_step=extras.get("max_spikes_per_step", 1),
        reset=extras.get("reset") or _foreign_reset(name, node),
        backend=backend,
        **_surrogate(extras),
    )
    for key in ("subtract_value", "min_v_mem"):
        if extras.get(key) is not None:
            common[key] = torch.tensor(extras[key], dtype=torch.float32)
    if extras.get("gradient") is not None:
        common["gradient"] = extras["gradient"]
    if extras.get("train_threshold"):
        common["train_threshold"] = True
    if isinstance(node, nir.IF):
        r = np.asarray(node.r, dtype=np.float64)
        _, gain = _gain_choice(name, r, [(None, np.full(r.shape, 1.0 / dt))], None, r * dt)
        kind, args = (enn.IAFRecurrent if rec is not None else enn.IAF), {}
    else:
        _zero_leak(name, node)
        tau_mem = np.asarray(node.tau_mem if isinstance(node, nir.CubaLIF) else node.tau,
                             dtype=np.float64)
        alpha = cv.decay(tau_mem, dt)
        norm_input, gain = _gain_choice(
            name, node.r, [(True, cv.membrane_gain(alpha, True)),
                           (False, cv.membrane_gain(alpha, False))],
            False, (1 - alpha) * np.asarray(node.r, dtype=np.float64))
        args = {"tau_mem": _value(tau_mem / dt, shapes.get("tau_mem")),
                "norm_input": norm_input,
                "train_alphas": bool(extras.get("train_alphas", False))}
        if isinstance(node, nir.CubaLIF):
            tau_syn = np.asarray(node.tau_syn, dtype=np.float64)
            beta = cv.decay(tau_syn, dt)
            decay_early, syn_gain = _gain_choice(
                name, node.w_in, [(True, cv.synapse_gain(beta, True)),
                                  (False, cv.synapse_gain(beta, False))],
                False, (1 - beta) * np.asarray(node.w_in, dtype=np.float64))
            args.update(tau_syn=_value(tau_syn / dt, shapes.get("tau_syn")),
                        decay_early=decay_early)
            gain = gain * syn_gain
        kind = enn.LIFRecurrent if rec is not None else enn.LIF
    if rec is not None:
        if not (gain == 1).all():
            raise NIRImportError(f"node {name!r}: a recurrent neuron whose r / w_in is not one "
                                 f"of ours (see exodus_lightning.nir.convention) is not "
                                 f"supported")
        weight = np.asarray(rec.weight)
        args["rec_connect"] = _linear(weight, getattr(rec, "bias", None))
    layer = kind(**args, **common)
    if args.get("train_alphas"):
        _exact_alphas(layer, node, dt)
    return _with_gain(gain, layer)


def _exact_alphas(layer: nn.Module, node: nir.NIRNode, dt: float) -> None:
    """With train_alphas the parameters are α itself: exp(−dt/τ) in float64, rounded once."""
    taus = {"alpha_mem": getattr(node, "tau_mem", getattr(node, "tau", None)),
            "alpha_syn": getattr(node, "tau_syn", None)}
    shapes = _extras(node).get("shapes", {})
    with torch.no_grad():
        for name, tau in taus.items():
            parameter = getattr(layer, name, None)
            if parameter is not None and tau is not None:
                alpha = _value(cv.decay(tau, dt), shapes.get(name.replace("alpha_", "tau_")))
                parameter.copy_(torch.as_tensor(alpha, dtype=parameter.dtype))


def _with_gain(gain: np.ndarray, layer: nn.Module) -> list[tuple[str, nn.Module]]:
    if (gain == 1).all():
        return [("", layer)]
    return [(".gain", Scale(_tensor(gain))), ("", layer)]


def _leak(name: str, node: nir.LI | nir.I, dt: float, backend: str
          ) -> list[tuple[str, nn.Module]]:
    extras = _extras(node)
    common: dict[str, Any] = {"backend": backend}
    if extras.get("min_v_mem") is not None:
        common["min_v_mem"] = torch.tensor(extras["min_v_mem"], dtype=torch.float32)
    r = np.asarray(node.r, dtype=np.float64)
    if isinstance(node, nir.I):
        layer = enn.ExpLeak(tau_mem=math.inf, norm_input=False, **common)
        return _with_gain(_gain_choice(name, r, [(None, np.full(r.shape, 1.0 / dt))],
                                       None, r * dt)[1], layer)
    _zero_leak(name, node)
    tau = np.asarray(node.tau, dtype=np.float64)
    alpha = cv.decay(tau, dt)
    options = [((norm, early), cv.leak_gain(alpha, norm, early))
               for norm, early in ((False, False), (True, False), (False, True), (True, True))]
    (norm_input, decay_early), gain = _gain_choice(name, r, options, (False, False),
                                                   (1 - alpha) * r)
    train_alphas = bool(extras.get("train_alphas", False))
    layer = enn.ExpLeak(tau_mem=_value(tau / dt, extras.get("shapes", {}).get("tau_mem")),
                        norm_input=norm_input,
                        decay_early=decay_early, train_alphas=train_alphas, **common)
    if train_alphas:
        _exact_alphas(layer, node, dt)
    return _with_gain(gain, layer)

