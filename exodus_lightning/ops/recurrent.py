"""A recurrent spiking layer as one op over the whole sequence (forward and backward).

Per neuron model (a :class:`RecurrentNeuron`), with a linear recurrent connection W, b acting on
the previous step's spikes (flat (batch, N) tensors, t = 1..T):

    x̃_1 = x_1,   x̃_t = x_t + W · s_{t−1} + b     (no feedback before the first spike)
    s_t, state_t = step(x̃_t, state_{t−1})         (the model's fused elementwise step)

Backward is the reverse loop of the model's adjoint step, with λ̃_t = ∂L/∂x̃_t and
g_t = ∂L/∂s_t:

    g_t                 = (∂L/∂s_t from outside) + Wᵀ · λ̃_{t+1}      (nothing after T)
    λ̃_t, ∂L/∂state_{t−1} = adjoint_step(g_t, ∂L/∂state_t, ...)

and then, over all steps at once,

    ∂L/∂x = λ̃,   ∂L/∂W = Σ_{t≥2} λ̃_t · s_{t−1}ᵀ (one matmul),   ∂L/∂b = Σ_{t≥2} λ̃_t,

with the model's parameter gradients summed over batch and time. This is BPTT through the
loop, exactly: the same chain rule, in the same order, without an autograd node per step. The
forward pass keeps only what the adjoint needs (the spikes, the model's traces, and per-step
values of its own where a parameter gradient needs them), not a graph per step.

A new neuron model subclasses :class:`RecurrentNeuron` (see ``recurrent_lif.py``) and calls
:func:`recurrent_scan` with its settings as a frozen dataclass of plain values: then the scan
is the custom op ``exodus_lightning::recurrent_scan`` (its backward another), which
torch.compile keeps as one node instead of tracing every step.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
from collections.abc import Iterator
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch.nn import functional as F

from ._compiler import assume_constant_result
from ._library import no_double_backward


class RecurrentNeuron:
    """One neuron model inside :func:`recurrent_scan`: its fused step and its adjoint step.

    An instance lives for one forward pass or one backward pass. All tensors are flat: inputs,
    spikes and states (B, N), parameters (N,) (None for an absent optional one), traces over time
    (B, T, N).

    Class attributes, fixed per model:
        param_names: the parameters, in the order recurrent_scan receives them.
        state_names: the states carried from step to step (their initial values are inputs of
            the scan, their last values outputs).
        trace_names: per-step values returned as (B, T, N) outputs (recordings, and what the
            adjoint reads back).
        internal_names: per-step values of the model's own that the adjoint may read back, kept
            (B, T, N) only when saved_traces asks for them; not returned.
    """

    param_names: ClassVar[tuple[str, ...]]
    state_names: ClassVar[tuple[str, ...]]
    trace_names: ClassVar[tuple[str, ...]]
    internal_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, settings: Any, params: dict[str, Tensor | None]) -> None:
        self.settings = settings
        self.params = params

    def step(self, x: Tensor, states: list[Tensor]) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """One forward step: input x̃_t -> spikes s_t, the new states, and the values at t of
        the traces and then the internal values (in trace_names + internal_names order)."""
        raise NotImplementedError

    def saved_traces(self, wanted: dict[str, bool]) -> set[str]:
        """The traces and internal values that the adjoint reads, given which parameter
        gradients are wanted."""
        raise NotImplementedError

    def start_backward(self, spikes: Tensor, saved: dict[str, Tensor],
                       init_states: list[Tensor], wanted: dict[str, bool]) -> None:
        """Prepare the reverse loop (e.g. values over all steps at once); called once."""
        raise NotImplementedError

    def adjoint_step(self, t: int, grad_spikes: Tensor, grad_traces: list[Tensor | None],
                     grad_states: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """One reverse step at t: ∂L/∂s_t (all of it), the upstream gradients of the traces at t
        (None: none) and ∂L/∂state_t -> λ̃_t = ∂L/∂x̃_t and ∂L/∂state_{t−1}. Accumulates the
        parameter gradients of step t."""
        raise NotImplementedError

    def param_grads(self) -> dict[str, Tensor | None]:
        """The summed parameter gradients, shape (N,) each; None where not wanted."""
        raise NotImplementedError


def recurrent_scan(neuron: type[RecurrentNeuron], settings: Any, x: Tensor, weight: Tensor,
                   bias: Tensor | None, states: list[Tensor], params: list[Tensor | None]
                   ) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """Run ``neuron`` over x (B, T, N) with recurrent weight (N, N) and bias (N,) or None.

    states: the initial states (B, N), in ``neuron.state_names`` order; params: (N,) tensors or
    None, in ``neuron.param_names`` order; all of x's dtype. Returns the spikes (B, T, N), the
    traces (B, T, N) in ``neuron.trace_names`` order and the last states (B, N).

    Where ``settings`` is a dataclass of plain values (numbers, strings, None, tuples of them),
    the scan is one custom op (``exodus_lightning::recurrent_scan``): torch.compile keeps it
    whole, one node of the graph, instead of tracing T steps forward and backward (compile time
    then grows with T). Other settings (a Python callable, such as a custom surrogate) run the
    same loops as an autograd function, which torch.compile traces step by step.
    """
    n_states, n_traces = len(neuron.state_names), len(neuron.trace_names)
    key, floats = "", []
    if dataclasses.is_dataclass(settings):
        values = [getattr(settings, field.name) for field in dataclasses.fields(settings)]
        layout = [_float_slots(value, floats) for value in values]
        key = _scan_key(neuron, type(settings), *layout)
    if key:
        present = [param is not None for param in params]
        wanted = [param is not None and param.requires_grad and torch.is_grad_enabled()
                  for param in params]
        outputs = torch.ops.exodus_lightning.recurrent_scan(
            key, floats, x, weight, bias, list(states), [p for p in params if p is not None],
            present, wanted)
    else:
        outputs = _Scan.apply(neuron, settings, x, weight, bias, *states, *params)
    return (outputs[0], list(outputs[1:1 + n_traces]),
            list(outputs[1 + n_traces:1 + n_traces + n_states]))


# --- the two loops -------------------------------------------------------------------------

def _forward_loop(neuron_type: type[RecurrentNeuron], settings: Any, x: Tensor, weight: Tensor,
                  bias: Tensor | None, init_states: list[Tensor], param_list: list[Tensor | None],
                  wanted: dict[str, bool]
                  ) -> tuple[Tensor, list[Tensor], list[Tensor], dict[str, Tensor]]:
    """T fused steps: the spikes, the traces, the last states (never an input tensor itself)
    and the traces and internal values the adjoint reads (by name)."""
    neuron = neuron_type(settings, dict(zip(neuron_type.param_names, param_list)))
    keep = neuron.saved_traces(wanted)
    batch, time, n = x.shape
    spikes = x.new_empty((batch, time, n))
    traces = [x.new_empty((batch, time, n)) for _ in neuron_type.trace_names]
    internal = {name: x.new_empty((batch, time, n)) for name in neuron_type.internal_names
                if name in keep}
    names = (*neuron_type.trace_names, *neuron_type.internal_names)
    buffers = [*traces, *(internal.get(name) for name in neuron_type.internal_names)]
    states = init_states
    s_prev = None
    for t in range(time):
        # x_t + (W s + b), in the order nn.Linear and the layer's loop round them.
        x_t = x[:, t] if s_prev is None else x[:, t] + F.linear(s_prev, weight, bias)
        s_prev, states, values = neuron.step(x_t, states)
        spikes[:, t] = s_prev
        for buffer, value in zip(buffers, values):
            if buffer is not None:
                buffer[:, t] = value
    last_states = [state.clone() if state is init else state
                   for state, init in zip(states, init_states)]
    saved = {name: buffer for name, buffer in zip(names, buffers) if name in keep}
    return spikes, traces, last_states, saved


def _backward_loop(neuron_type: type[RecurrentNeuron], settings: Any, grad_spikes: Tensor | None,
                   grad_traces: list[Tensor | None], grad_last: list[Tensor | None],
                   spikes: Tensor, weight: Tensor, init_states: list[Tensor],
                   param_list: list[Tensor | None], saved: dict[str, Tensor],
                   wanted: dict[str, bool], weight_grad: bool, bias_grad: bool
                   ) -> tuple[Tensor, Tensor | None, Tensor | None, list[Tensor],
                              dict[str, Tensor | None]]:
    """T adjoint steps: ∂L/∂x, ∂L/∂W and ∂L/∂b (None where not asked for), ∂L/∂ of the initial
    states, and the summed parameter gradients by name (None where not wanted)."""
    params = dict(zip(neuron_type.param_names, param_list))
    neuron = neuron_type(settings, params)
    neuron.start_backward(spikes, saved, list(init_states), wanted)
    batch, time, n = spikes.shape
    grad_x = spikes.new_empty((batch, time, n))
    grad_states = [torch.zeros_like(s) if g is None else g
                   for s, g in zip(init_states, grad_last)]
    lam_next = None
    # λ̃ at t = 1 goes into grad_x after the weight gradient, which reads zeros there.
    if time > 0:
        grad_x[:, 0] = 0
    for t in reversed(range(time)):
        g_out = None if grad_spikes is None else grad_spikes[:, t]
        if lam_next is None:
            g_t = torch.zeros_like(init_states[0]) if g_out is None else g_out.contiguous()
        elif g_out is None:
            g_t = lam_next.mm(weight)
        else:
            g_t = torch.addmm(g_out, lam_next, weight)
        step_grads = [None if g is None else g[:, t] for g in grad_traces]
        lam_next, grad_states = neuron.adjoint_step(t, g_t, step_grads, grad_states)
        if t > 0:
            grad_x[:, t] = lam_next

    grad_weight = grad_bias = None
    if weight_grad and time > 0:
        # Σ_{t≥2} λ̃_t s_{t−1}ᵀ over every batch row and step: one matmul. Row b·T + t of the
        # flat λ̃ meets row b·T + t − 1 of the flat spikes (views, no copies); where that
        # crosses into the previous batch row (t = 1) λ̃ is still zero.
        grad_weight = grad_x.reshape(-1, n)[1:].t().mm(spikes.reshape(-1, n)[:-1])
    elif weight_grad:
        grad_weight = torch.zeros_like(weight)
    if bias_grad:
        grad_bias = grad_x.sum((0, 1))  # λ̃_1 (no bias then) is still zero
    if time > 0:
        grad_x[:, 0] = lam_next
    return grad_x, grad_weight, grad_bias, grad_states, neuron.param_grads()


# --- one custom op, for settings of plain values ----------------------------------------------

# The op's arguments are tensors and plain values, so the neuron model and its settings travel
# as a key, a string that names both classes and holds the settings' values with each float
# replaced by _FLOAT (the floats travel as the op's `floats` argument: under torch.compile they
# may be symbolic, and a surrogate's width may change between calls without a new key). A
# process that meets a key first (e.g. running an exported program) rebuilds its classes from
# their names; classes that their names do not find (defined in a function, or redefined) get
# their id in the key and are known to this process only.
_SCANS: dict[str, tuple[type[RecurrentNeuron], type, list[Any]]] = {}
_FLOAT = "<float>"


def _float_slots(value: Any, floats: list[float]) -> Any:
    """value with each float (also inside tuples) replaced by _FLOAT and appended to floats."""
    if isinstance(value, tuple):
        return tuple(_float_slots(item, floats) for item in value)
    if isinstance(value, float):
        floats.append(value)
        return _FLOAT
    return value


def _filled(value: Any, floats: Iterator[float]) -> Any:
    """_float_slots undone: each _FLOAT of value replaced by the next of floats."""
    if isinstance(value, tuple):
        return tuple(_filled(item, floats) for item in value)
    return next(floats) if value == _FLOAT else value


def _is_plain(value: object) -> bool:
    """A value whose repr reads back as itself (ast.literal_eval); floats are slots by now."""
    if isinstance(value, tuple):
        return all(_is_plain(item) for item in value)
    return value is None or type(value) in (bool, int, str)


def _resolve(name: str) -> Any:
    """The object at "module:qualname", or None."""
    module, _, qualname = name.partition(":")
    try:
        found: Any = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError, ValueError):
        return None
    return found


def _class_name(cls: type) -> str:
    name = f"{cls.__module__}:{cls.__qualname__}"
    return name if _resolve(name) is cls else f"{name}@{id(cls):x}"


@assume_constant_result
def _scan_key(neuron_type: type[RecurrentNeuron], settings_type: type, *layout: object) -> str:
    """The op's key of (neuron_type, settings_type, the settings' values with their floats
    as _FLOAT), registered on first use; "" where the values are not plain (then recurrent_scan
    runs _Scan). torch.compile calls this once while tracing and keeps the string as a constant
    of the graph."""
    if not all(_is_plain(value) for value in layout):
        return ""
    key = f"{_class_name(neuron_type)}|{_class_name(settings_type)}|{list(layout)!r}"
    registered = _SCANS.get(key)
    if registered is None or registered[0] is not neuron_type or registered[1] is not settings_type:
        # A class redefined under its name (a notebook cell run again) takes the name over; a
        # class named by its id stays registered, so the id is not reused for another.
        _SCANS[key] = (neuron_type, settings_type, list(layout))
    return key


def _registered(key: str) -> tuple[type[RecurrentNeuron], type, list[Any]]:
    """What a key stands for, rebuilt from the key where this process has not registered it."""
    if key not in _SCANS:
        try:
            neuron_name, settings_name, layout = key.split("|", 2)
            classes = [_resolve(neuron_name), _resolve(settings_name)]
            if None in classes or "@" in neuron_name + settings_name:
                raise ValueError("a class not found by its name")
            _SCANS[key] = (classes[0], classes[1], list(ast.literal_eval(layout)))
        except (ValueError, TypeError, SyntaxError) as error:
            raise RuntimeError(
                f"exodus_lightning::recurrent_scan: cannot rebuild the neuron model of key "
                f"{key!r} ({error}); call the op through ops.recurrent_scan") from error
    return _SCANS[key]


def _unpack(key: str, floats: list[float], params: list[Tensor], present: list[bool]
            ) -> tuple[type[RecurrentNeuron], Any, list[Tensor | None]]:
    """The neuron type, its settings and the parameters in param_names order (None: absent)."""
    neuron_type, settings_type, layout = _registered(key)
    # The field values as they were, without running __init__ or __post_init__ again.
    settings = object.__new__(settings_type)
    values = iter(floats)
    for field, value in zip(dataclasses.fields(settings_type), layout):
        object.__setattr__(settings, field.name, _filled(value, values))
    given = iter(params)
    return neuron_type, settings, [next(given) if here else None for here in present]


def _fresh(outputs: list[Tensor], inputs: list[Tensor | None]) -> list[Tensor]:
    """outputs, each contiguous and sharing no memory with inputs (as an op's outputs must be,
    and as its fake kernel says), copied where needed."""
    taken = {t.untyped_storage().data_ptr() for t in inputs if t is not None and t.numel()}
    return [t.clone(memory_format=torch.contiguous_format)
            if not t.is_contiguous() or (t.numel() and t.untyped_storage().data_ptr() in taken)
            else t for t in outputs]


def _kept(neuron_type: type[RecurrentNeuron], settings: Any, param_list: list[Tensor | None],
          wanted: list[bool]) -> tuple[list[str], list[str]]:
    """The traces and the internal values the adjoint reads (RecurrentNeuron.saved_traces),
    each in the model's order."""
    neuron = neuron_type(settings, dict(zip(neuron_type.param_names, param_list)))
    keep = neuron.saved_traces(dict(zip(neuron_type.param_names, wanted)))
    return ([name for name in neuron_type.trace_names if name in keep],
            [name for name in neuron_type.internal_names if name in keep])


@torch.library.custom_op("exodus_lightning::recurrent_scan", mutates_args=())
def _scan_op(key: str, floats: list[float], x: Tensor, weight: Tensor, bias: Tensor | None,
             states: list[Tensor], params: list[Tensor], present: list[bool],
             wanted: list[bool]) -> list[Tensor]:
    """recurrent_scan's forward: [spikes, *traces, *last states, *kept internal values]."""
    neuron_type, settings, param_list = _unpack(key, floats, params, present)
    spikes, traces, last, saved = _forward_loop(
        neuron_type, settings, x, weight, bias, states, param_list,
        dict(zip(neuron_type.param_names, wanted)))
    # A model's state may be a view of an input (x̃_1 = x[:, 0]) or keep its initial layout.
    last = _fresh(last, [x, weight, bias, *states, *params])
    internal = [saved[name] for name in neuron_type.internal_names if name in saved]
    return [spikes, *traces, *last, *internal]


@_scan_op.register_fake
def _scan_fake(key, floats, x, weight, bias, states, params, present, wanted):
    neuron_type, settings, param_list = _unpack(key, floats, params, present)
    _, internal = _kept(neuron_type, settings, param_list, wanted)
    # Contiguous like the real outputs.
    return [x.new_empty(x.shape), *(x.new_empty(x.shape) for _ in neuron_type.trace_names),
            *(state.new_empty(state.shape) for state in states),
            *(x.new_empty(x.shape) for _ in internal)]


@torch.library.custom_op("exodus_lightning::recurrent_scan_backward", mutates_args=())
def _scan_backward_op(key: str, floats: list[float], grad_spikes: Tensor | None,
                      grad_traces: list[Tensor | None], grad_last: list[Tensor | None],
                      spikes: Tensor, weight: Tensor, states: list[Tensor],
                      params: list[Tensor], present: list[bool], saved: list[Tensor],
                      wanted: list[bool], weight_grad: bool, bias_grad: bool) -> list[Tensor]:
    """recurrent_scan's backward: [∂L/∂x, ∂L/∂W (if weight_grad), ∂L/∂b (if bias_grad),
    *∂L/∂ of the initial states, *∂L/∂ of each wanted parameter]. saved: the kept traces, then
    the kept internal values (_kept's names)."""
    neuron_type, settings, param_list = _unpack(key, floats, params, present)
    traces, internal = _kept(neuron_type, settings, param_list, wanted)
    grad_x, grad_weight, grad_bias, grad_states, param_grads = _backward_loop(
        neuron_type, settings, grad_spikes, grad_traces, grad_last, spikes, weight, states,
        param_list, dict(zip((*traces, *internal), saved)),
        dict(zip(neuron_type.param_names, wanted)), weight_grad, bias_grad)
    outputs = [grad_x, *(g for g in (grad_weight, grad_bias) if g is not None), *grad_states]
    for name, param, want in zip(neuron_type.param_names, param_list, wanted):
        if want:
            grad = param_grads[name]
            outputs.append(torch.zeros_like(param) if grad is None else grad)
    # With T = 0 a state's gradient is the upstream one, in the upstream layout.
    return _fresh(outputs, [grad_spikes, *grad_traces, *grad_last, spikes, weight, *states,
                            *params, *saved])


@_scan_backward_op.register_fake
def _scan_backward_fake(key, floats, grad_spikes, grad_traces, grad_last, spikes, weight, states,
                        params, present, saved, wanted, weight_grad, bias_grad):
    _, _, param_list = _unpack(key, floats, params, present)
    return [spikes.new_empty(spikes.shape),
            *([weight.new_empty(weight.shape)] if weight_grad else []),
            *([weight.new_empty(weight.shape[:1])] if bias_grad else []),
            *(state.new_empty(state.shape) for state in states),
            *(param.new_empty(param.shape) for param, want in zip(param_list, wanted) if want)]


def _scan_setup_context(ctx, inputs, output):
    key, floats, x, weight, bias, states, params, present, wanted = inputs
    neuron_type, settings, param_list = _unpack(key, floats, params, present)
    traces, _ = _kept(neuron_type, settings, param_list, wanted)
    n_states, n_traces = len(neuron_type.state_names), len(neuron_type.trace_names)
    by_name = dict(zip(neuron_type.trace_names, output[1:1 + n_traces]))
    ctx.key, ctx.floats, ctx.present, ctx.wanted = key, floats, present, wanted
    ctx.n_states, ctx.n_params, ctx.has_bias = n_states, len(params), bias is not None
    ctx.save_for_backward(output[0], weight, *states, *params,
                          *(by_name[name] for name in traces), *output[1 + n_traces + n_states:])
    ctx.set_materialize_grads(False)  # no full-size zeros for outputs without a gradient


def _scan_backward(ctx, grads):
    n_states, n_params = ctx.n_states, ctx.n_params
    spikes, weight, *rest = ctx.saved_tensors
    states, params = rest[:n_states], rest[n_states:n_states + n_params]
    saved = rest[n_states + n_params:]
    n_traces = len(_registered(ctx.key)[0].trace_names)
    weight_grad = bool(ctx.needs_input_grad[3])
    bias_grad = ctx.has_bias and bool(ctx.needs_input_grad[4])
    outputs = iter(torch.ops.exodus_lightning.recurrent_scan_backward(
        ctx.key, ctx.floats, grads[0], list(grads[1:1 + n_traces]),
        list(grads[1 + n_traces:1 + n_traces + n_states]), spikes, weight, list(states),
        list(params), ctx.present, list(saved), ctx.wanted, weight_grad, bias_grad))
    grad_x = next(outputs)
    grad_weight = next(outputs) if weight_grad else None
    grad_bias = next(outputs) if bias_grad else None
    grad_states = [next(outputs) for _ in range(n_states)]
    wanted = [want for want, here in zip(ctx.wanted, ctx.present) if here]
    grad_params = [next(outputs) if want else None for want in wanted]
    return None, None, grad_x, grad_weight, grad_bias, grad_states, grad_params, None, None


_scan_op.register_autograd(_scan_backward, setup_context=_scan_setup_context)
torch.library.register_autograd("exodus_lightning::recurrent_scan_backward",
                                no_double_backward("recurrent_scan_backward"),
                                setup_context=lambda ctx, inputs, output: None)


# --- the same loops as an autograd function, for other settings ------------------------------

class _Scan(torch.autograd.Function):
    """recurrent_scan's forward loop and reverse loop (see the module docstring) for settings
    that cannot pass through the custom op."""

    @staticmethod
    def forward(ctx, neuron_type, settings, x, weight, bias, *tensors):
        n_states = len(neuron_type.state_names)
        init_states, param_list = list(tensors[:n_states]), list(tensors[n_states:])
        needs = ctx.needs_input_grad[5 + n_states:]
        wanted = {name: bool(need) for name, need in zip(neuron_type.param_names, needs)}
        spikes, traces, last_states, saved = _forward_loop(
            neuron_type, settings, x, weight, bias, init_states, param_list, wanted)
        ctx.save_for_backward(spikes, weight, *init_states, *param_list, *saved.values())
        ctx.neuron_type, ctx.settings, ctx.saved_names = neuron_type, settings, list(saved)
        ctx.has_bias, ctx.wanted = bias is not None, wanted
        ctx.set_materialize_grads(False)
        return (spikes, *traces, *last_states)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_spikes, *grads):
        neuron_type = ctx.neuron_type
        n_states, n_traces = len(neuron_type.state_names), len(neuron_type.trace_names)
        n_params = len(neuron_type.param_names)
        spikes, weight, *rest = ctx.saved_tensors
        init_states = list(rest[:n_states])
        param_list = list(rest[n_states:n_states + n_params])
        saved = dict(zip(ctx.saved_names, rest[n_states + n_params:]))
        grad_x, grad_weight, grad_bias, grad_states, param_grads = _backward_loop(
            neuron_type, ctx.settings, grad_spikes, list(grads[:n_traces]),
            list(grads[n_traces:]), spikes, weight, init_states, param_list, saved, ctx.wanted,
            ctx.needs_input_grad[3], ctx.has_bias and ctx.needs_input_grad[4])
        return (None, None, grad_x, grad_weight, grad_bias, *grad_states,
                *(param_grads[name] for name in neuron_type.param_names))
