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

The network is built in ``dtype`` (torch's default unless given) from the graph's float64
values, each rounded once. Before it is returned it runs once on zeros, (1, 1, *input), to
check every node's input shape against what the node declares (and the last output against
the Output node's): a graph whose shapes do not fit raises :class:`NIRImportError` naming the
node and both shapes, not a torch error on first use.
"""

from __future__ import annotations

import copy
import inspect
import json
import math
import os
import re
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
from .export import METADATA_KEY, check_dt
from .network import NIRNetwork
from .scale import Scale
from .shapes import broadcasts_to, declared_input, declared_output, per_dim, same_features

_NEURONS = (nir.LIF, nir.CubaLIF, nir.IF)
# nir >= 1.0.6 type-checks a graph it reads, and derives a grouped conv's input channels as
# weight.shape[1] (in / groups), so it rejects a correct grouped conv; our layers check shapes.
_READ_TYPE_CHECK = "type_check" in inspect.signature(nir.read).parameters


class NIRImportError(ValueError):
    """A NIR graph or node that our layers cannot run; the message names the node."""


class NIRImportWarning(UserWarning):
    """A graph that reads, but probably not as meant (e.g. τ in seconds read with dt = 1)."""


def from_nir(graph_or_path: nir.NIRGraph | str | os.PathLike, dt: float | None = None,
             backend: str = "auto", dtype: torch.dtype | None = None) -> NIRNetwork:
    """Our network for a NIR graph or .nir file: (batch, time, *input) -> (batch, time, *out).

    dt: the step length in the graph's time unit (None: the dt ``to_nir`` stored, else 1, as
    sinabs). backend: the spiking layers' backend ("auto", "extension" or "reference").
    dtype: the network's floating dtype (None: torch's default); every parameter is the
    graph's float64 value rounded once to it, so with torch.float64 a float64 network's round
    trip is bit-identical.
    """
    dtype = _check_dtype(dtype)
    graph = graph_or_path
    if isinstance(graph_or_path, (str, os.PathLike)):
        graph = _read(graph_or_path)
    if not isinstance(graph, nir.NIRGraph):
        raise TypeError(f"graph_or_path must be a nir.NIRGraph or the path of a .nir file, got "
                        f"{type(graph_or_path).__name__}")
    dt_known = dt is not None or "dt" in _extras(graph)
    if dt is None:
        dt = float(_extras(graph).get("dt", 1.0))
    check_dt(dt)
    chain, recurrent, nodes = _walk(graph)
    input_shape = _input_shape(graph)
    for name in chain:
        _check_time_constants(name, nodes[name], dt, dt_known)
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    owners: dict[str, str] = {}  # module name -> the node it comes from
    decays: list[tuple[nn.Module, nir.NIRNode]] = []
    for name in chain:
        rec = recurrent.get(name)
        try:
            modules = _modules(name, nodes[name], dt, backend,
                               None if rec is None else (rec, nodes[rec]))
        except NIRImportError:
            raise
        except (ValueError, TypeError) as error:  # a layer's own check of a parameter
            raise NIRImportError(f"node {name!r} (nir.{type(nodes[name]).__name__}): "
                                 f"{error}") from error
        for suffix, module in modules:
            key = _module_name(name + suffix, layers)
            layers[key] = module
            owners[key] = name
            if isinstance(module, enn.StatefulLayer) and isinstance(
                    nodes[name], (nir.LIF, nir.CubaLIF, nir.LI)):
                decays.append((module, nodes[name]))
    network = NIRNetwork(input_shape, nn.Sequential(layers)).to(dtype)
    for layer, node in decays:
        _exact_decays(layer, node, dt)
    _check_shapes(network, owners, nodes, recurrent, graph, dtype)
    return network


def _check_dtype(dtype: torch.dtype | None) -> torch.dtype:
    if dtype is None:
        return torch.get_default_dtype()
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype (torch.float32, torch.float64), "
                        f"got {dtype!r}")
    return dtype


def _input_shape(graph: nir.NIRGraph) -> list[int]:
    """The feature shape the graph's Input node declares (it must declare one)."""
    ((name, node),) = graph.inputs.items()
    shape = declared_output(node) or declared_input(node)
    if shape is None:
        raise NIRImportError(f"node {name!r}: the graph's Input node declares no shape "
                             f"(input_type {getattr(node, 'input_type', None)!r}); from_nir "
                             f"needs the input's feature shape, e.g. "
                             f"nir.Input(input_type={{'input': np.array([10])}})")
    return list(shape)


def _check_shapes(network: NIRNetwork, owners: dict[str, str], nodes: dict[str, nir.NIRNode],
                  recurrent: dict[str, str], graph: nir.NIRGraph, dtype: torch.dtype) -> None:
    """Run a copy of network once on zeros (1, 1, *input), with the reference backend (no
    kernel build), and raise NIRImportError at the first node whose input is not the shape it
    declares or that cannot run on it, or if the output is not the Output node's shape.
    Shapes are compared up to leading 1s (see ``shapes.same_features``); a neuron's or Scale's
    parameters may also broadcast to its input (a per-channel (C, 1, 1))."""
    ((input_name, _),) = graph.inputs.items()
    ((output_name, output_node),) = graph.outputs.items()
    probe = copy.deepcopy(network)
    for module in probe.modules():
        if isinstance(module, enn.StatefulLayer):
            module.backend = "reference"
    seen = {"node": input_name, "from": input_name, "shape": tuple(network.input_shape)}

    def before(key: str, inputs: tuple) -> None:
        name = owners[key]
        if seen["node"] != name:
            seen["from"], seen["node"] = seen["node"], name
        shape = seen["shape"] = tuple(inputs[0].shape[2:])
        expected = declared_input(nodes[name])
        if expected is None and name in recurrent:
            expected = declared_input(nodes[recurrent[name]])
        elementwise = isinstance(nodes[name], (*_NEURONS, nir.LI, nir.I, nir.Scale))
        if expected is not None and not same_features(shape, expected) and not (
                elementwise and broadcasts_to(expected, shape)):
            raise NIRImportError(f"node {name!r} (nir.{type(nodes[name]).__name__}) takes "
                                 f"features of shape {expected}, but node {seen['from']!r} "
                                 f"before it gives {shape}")

    handles = [module.register_forward_pre_hook(
        lambda module, inputs, key=key: before(key, inputs))
        for key, module in probe.layers.named_children()]
    x = torch.zeros(1, 1, *network.input_shape, dtype=dtype)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a probe: its warnings come again on first use
            out = probe(x)
    except NIRImportError:
        raise
    except Exception as error:  # torch's shape errors, which name no node
        raise NIRImportError(f"node {seen['node']!r} cannot run on features of shape "
                             f"{seen['shape']} from node {seen['from']!r}: "
                             f"{type(error).__name__}: {error}") from error
    finally:
        for handle in handles:
            handle.remove()
    expected = declared_output(output_node) or declared_input(output_node)
    shape = tuple(out.shape[2:])
    if expected is not None and not same_features(shape, expected):
        raise NIRImportError(f"node {output_name!r} (the graph's Output) takes features of "
                             f"shape {expected}, but node {seen['node']!r} before it gives "
                             f"{shape}")


def _read(path: str | os.PathLike) -> nir.NIRGraph:
    """nir.read, a file the installed nir cannot parse as an NIRImportError that says why."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no NIR file at {os.fspath(path)!r}")
    try:
        return nir.read(path, type_check=False) if _READ_TYPE_CHECK else nir.read(path)
    except Exception as error:  # nir raises TypeError, KeyError, ValueError, OSError, ...
        raise NIRImportError(_why_unreadable(path, error)) from error


def _why_unreadable(path: str | os.PathLike, error: Exception) -> str:
    """What is wrong with a file nir.read failed on: not NIR at all, written by a newer nir,
    or a node the installed nir cannot parse (named)."""
    import h5py  # nir's own dependency

    where, got = repr(os.fspath(path)), f"{type(error).__name__}: {error}"
    try:
        with h5py.File(path, "r") as file:
            if "node" not in file:
                return (f"{where} is not a NIR file: an HDF5 file without NIR's 'node' group "
                        f"(it holds {sorted(file)})")
            written = _file_version(file)
            if written is not None and _version(written) > _version(nir.version):
                return (f"{where} was written by nir {written}, newer than the installed nir "
                        f"{nir.version}, which cannot read it ({got}); install the nir that "
                        f"wrote it or newer: pip install -U 'nir>={written}'")
            bad = _first_bad_node(file["node"])
    except OSError as open_error:
        return f"{where} is not a NIR file (not HDF5: {open_error})"
    by = f"written by nir {written}" if written else "of unknown nir version"
    if bad is None:
        return f"nir {nir.version} cannot read {where} ({by}): {got}"
    name, kind, problem = bad
    return (f"{where} ({by}) is malformed: nir {nir.version} cannot read its node {name!r} "
            f"({kind}): {problem}")


def _file_version(file: Any) -> str | None:
    """The nir version an open .nir file stores (None without one)."""
    return _text(file["version"]) if "version" in file else None


def _version(text: str) -> tuple[int, ...]:
    """"1.0.8" (or "1.0.8.dev2") as (1, 0, 8), for comparing versions."""
    return tuple(int(n) for n in re.findall(r"\d+", text)[:3])


def _first_bad_node(group: Any, prefix: str = "") -> tuple[str, str, str] | None:
    """(name, type, what is wrong) of the first node under a file's node group that nir cannot
    build on its own (nested graphs searched too), or None."""
    from nir.serialization import hdf2dict

    nodes = group.get("nodes")
    if nodes is None:
        return (prefix.rstrip(".") or "(the graph)", "NIRGraph", "it has no 'nodes' group")
    for name in nodes:
        kind = _text(nodes[name].get("type"))
        if kind == "NIRGraph":
            found = _first_bad_node(nodes[name], f"{prefix}{name}.")
            if found is not None:
                return found
            continue
        if kind is None:
            return f"{prefix}{name}", "no type", "it has no 'type' entry"
        known = getattr(nir, kind, None)
        if not (isinstance(known, type) and issubclass(known, nir.NIRNode)):
            return f"{prefix}{name}", kind, f"nir {nir.version} has no node type {kind!r}"
        try:
            nir.dict2NIRNode(hdf2dict(nodes[name]))
        except Exception as error:  # whatever the node's constructor raises
            return f"{prefix}{name}", kind, f"{type(error).__name__}: {error}"
    return None


def _text(dataset: Any) -> str | None:
    """A string dataset's text (None for no dataset)."""
    if dataset is None:
        return None
    value = dataset[()]
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


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
             rec: tuple[str, nir.NIRNode] | None) -> list[tuple[str, nn.Module]]:
    """[(name suffix, module)] for one node: usually one, a neuron may need an input gain.
    rec: (name, node) of a neuron's recurrent weights. Modules hold float64 values (rounded
    once by from_nir's final .to(dtype))."""
    if isinstance(node, (nir.Affine, nir.Linear)):
        return [("", _linear(name, node))]
    if isinstance(node, (nir.Conv1d, nir.Conv2d)):
        return [("", TimeFolded(_conv(node)))]
    if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
        return [("", TimeFolded(_pool(name, node)))]
    if isinstance(node, nir.Flatten):
        dims = [int(d) + 2 if int(d) >= 0 else int(d) for d in (node.start_dim, node.end_dim)]
        return [("", nn.Flatten(*dims))]
    if isinstance(node, nir.Scale):
        return [("", Scale(_tensor(node.scale)))]
    if isinstance(node, _NEURONS):
        return _spiking(name, node, dt, backend, rec)
    if isinstance(node, (nir.LI, nir.I)):
        return _leak(name, node, dt, backend)
    raise NIRImportError(f"node {name!r}: nir.{type(node).__name__} has no layer here; "
                         f"supported: Affine, Linear, Conv1d, Conv2d, AvgPool2d, SumPool2d, "
                         f"Flatten, Scale, LIF, CubaLIF, IF, LI, I")


def _tensor(array: Any) -> Tensor:
    """A float64 tensor (from_nir rounds the network to its dtype once, at the end)."""
    return torch.as_tensor(np.asarray(array, dtype=np.float64))


def _linear(name: str, node: nir.Affine | nir.Linear, gain: np.ndarray | None = None
            ) -> nn.Linear:
    """nn.Linear of an Affine/Linear node; bias=False for a Linear, or for the zero bias
    to_nir writes for one ("bias": false in the metadata). gain: per output, folded in."""
    weight = np.asarray(node.weight, dtype=np.float64)
    if weight.ndim != 2:
        raise NIRImportError(f"node {name!r}: Affine/Linear weight of shape {weight.shape}: "
                             f"only 2-d weights (out, in) are supported")
    bias = getattr(node, "bias", None) if isinstance(node, nir.Affine) else None
    if bias is not None and _extras(node).get("bias") is False and not np.any(bias):
        bias = None
    if gain is not None:
        gain = np.asarray(gain, dtype=np.float64).reshape(-1)
        weight = weight * gain[:, None]
        bias = None if bias is None else np.asarray(bias, dtype=np.float64) * gain
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None,
                      dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(_tensor(weight))
        if bias is not None:
            layer.bias.copy_(_tensor(bias))
    return layer


def _ints(value: Any, count: int) -> tuple[int, ...] | int:
    values = per_dim(value, count)
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
        dilation=_ints(node.dilation, dims), groups=int(node.groups), bias=True,
        dtype=torch.float64)
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


def _value(array: np.ndarray, shape: Sequence[int] | None = None) -> Tensor:
    """A per-neuron parameter as the layer takes it: in its own shape where to_nir stored one
    (e.g. a per-channel (C, 1, 1) that NIR holds as (C, H, W)), else one number (0-d) when all
    neurons share it, else of the node's shape; float64 (not a Python float, which a layer
    would store in float32 for good)."""
    array = np.asarray(array, dtype=np.float64)
    if shape is not None:
        own = _own_shape(array, tuple(int(n) for n in shape))
        if own is not None:
            return _tensor(own)
    if array.size and (array == array.flat[0]).all():
        return _tensor(array.flat[0])  # 0-d: the layer's parameter is one number
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


def _spiking(name: str, node: nir.NIRNode, dt: float, backend: str,
             rec: tuple[str, nir.NIRNode] | None) -> list[tuple[str, nn.Module]]:
    """The neuron's layer, after a Scale when its gains are not ours (see ``convention``).

    A recurrent neuron's gain g multiplies its whole input, g·(x + W·s + b): the Scale takes
    x, and g is folded into the recurrent weights, W' = diag(g)·W, b' = g·b (snnTorch writes
    its RLeaky / RSynaptic with such gains: r = τ/dt, w_in = τ_syn/dt)."""
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
            common[key] = torch.tensor(extras[key], dtype=torch.float64)
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
        args["rec_connect"] = _recurrent_weights(name, threshold, rec, gain)
    return _with_gain(gain, kind(**args, **common))


def _recurrent_weights(name: str, threshold: np.ndarray, rec: tuple[str, nir.NIRNode],
                       gain: np.ndarray) -> nn.Linear:
    """The recurrent node as rec_connect, square, with the neuron's gain folded into its rows."""
    rec_name, node = rec
    weight = np.asarray(node.weight)
    gain = np.asarray(gain, dtype=np.float64).reshape(-1)
    count = max(threshold.size, gain.size)
    if weight.ndim != 2 or weight.shape[0] != weight.shape[1] or count not in (
            1, weight.shape[0]):
        raise NIRImportError(f"node {rec_name!r}: the recurrent weights of node {name!r} have "
                             f"shape {weight.shape}; a neuron node of {count} neurons needs "
                             f"({count}, {count})")
    return _linear(rec_name, node, None if (gain == 1).all() else
                   np.broadcast_to(gain, (weight.shape[0],)))


def _exact_decays(layer: nn.Module, node: nir.NIRNode, dt: float) -> None:
    """The layer's τ in steps (τ_NIR / dt), or with train_alphas its α = exp(−dt/τ_NIR), from
    float64 values rounded once to the layer's dtype (the layers store τ in float32 when they
    are built, as sinabs). The values to_nir stored are taken where they agree with the
    node's (τ·dt/dt and exp(−dt/(−dt/ln α)) may differ from τ and α in the last bit)."""
    extras = _extras(node)
    shapes, stored = extras.get("shapes", {}), extras.get("decays", {})
    taus = {"mem": getattr(node, "tau_mem", getattr(node, "tau", None)),
            "syn": getattr(node, "tau_syn", None)}
    with torch.no_grad():
        for kind, tau in taus.items():
            if tau is None:
                continue
            tau = np.asarray(tau, dtype=np.float64)
            for name, value in ((f"tau_{kind}", tau / dt), (f"alpha_{kind}", cv.decay(tau, dt))):
                parameter = getattr(layer, name, None)
                if not isinstance(parameter, Tensor):
                    continue
                exact = _value(value, shapes.get(f"tau_{kind}"))
                if name in stored:
                    own = torch.tensor(stored[name], dtype=torch.float64)
                    if own.shape == exact.shape and torch.allclose(own, exact, rtol=1e-9,
                                                                   atol=0):
                        exact = own
                parameter.copy_(exact.to(parameter.dtype).expand_as(parameter))


def _with_gain(gain: np.ndarray, layer: nn.Module) -> list[tuple[str, nn.Module]]:
    if (gain == 1).all():
        return [("", layer)]
    return [(".gain", Scale(_tensor(gain))), ("", layer)]


def _leak(name: str, node: nir.LI | nir.I, dt: float, backend: str
          ) -> list[tuple[str, nn.Module]]:
    extras = _extras(node)
    common: dict[str, Any] = {"backend": backend}
    if extras.get("min_v_mem") is not None:
        common["min_v_mem"] = torch.tensor(extras["min_v_mem"], dtype=torch.float64)
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
    return _with_gain(gain, layer)

