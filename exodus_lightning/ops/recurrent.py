"""A recurrent spiking layer as one autograd function over the whole sequence.

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
:func:`recurrent_scan`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch.nn import functional as F


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
    """
    n_states = len(neuron.state_names)
    outputs = _Scan.apply(neuron, settings, x, weight, bias, *states, *params)
    n_traces = len(neuron.trace_names)
    return outputs[0], list(outputs[1:1 + n_traces]), list(outputs[1 + n_traces:1 + n_traces
                                                                   + n_states])


class _Scan(torch.autograd.Function):
    """recurrent_scan's forward loop and reverse loop (see the module docstring)."""

    @staticmethod
    def forward(ctx, neuron_type, settings, x, weight, bias, *tensors):
        n_states = len(neuron_type.state_names)
        init_states, param_list = list(tensors[:n_states]), tensors[n_states:]
        params = dict(zip(neuron_type.param_names, param_list))
        neuron = neuron_type(settings, params)
        needs = ctx.needs_input_grad[5 + n_states:]
        wanted = {name: bool(need) for name, need in zip(neuron_type.param_names, needs)}
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

        saved = dict(zip(names, buffers))
        saved_names = [name for name in names if name in keep]
        ctx.save_for_backward(spikes, weight, *init_states, *param_list,
                              *(saved[name] for name in saved_names))
        ctx.neuron_type, ctx.settings, ctx.saved_names = neuron_type, settings, saved_names
        ctx.has_bias = bias is not None
        ctx.set_materialize_grads(False)
        return (spikes, *traces, *last_states)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_spikes, *grads):
        neuron_type = ctx.neuron_type
        n_states, n_traces = len(neuron_type.state_names), len(neuron_type.trace_names)
        n_params = len(neuron_type.param_names)
        spikes, weight, *rest = ctx.saved_tensors
        init_states = rest[:n_states]
        param_list = rest[n_states:n_states + n_params]
        saved = dict(zip(ctx.saved_names, rest[n_states + n_params:]))
        grad_traces, grad_last = grads[:n_traces], grads[n_traces:]
        params = dict(zip(neuron_type.param_names, param_list))
        needs = ctx.needs_input_grad[5 + n_states:]
        wanted = {name: bool(need) for name, need in zip(neuron_type.param_names, needs)}

        neuron = neuron_type(ctx.settings, params)
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
        if ctx.needs_input_grad[3] and time > 0:
            # Σ_{t≥2} λ̃_t s_{t−1}ᵀ over every batch row and step: one matmul. Row b·T + t of
            # the flat λ̃ meets row b·T + t − 1 of the flat spikes (views, no copies); where
            # that crosses into the previous batch row (t = 1) λ̃ is still zero.
            flat_spikes = spikes.reshape(-1, n)
            grad_weight = grad_x.reshape(-1, n)[1:].t().mm(flat_spikes[:-1])
        elif ctx.needs_input_grad[3]:
            grad_weight = torch.zeros_like(weight)
        if ctx.has_bias and ctx.needs_input_grad[4]:
            grad_bias = grad_x.sum((0, 1))  # λ̃_1 (no bias then) is still zero
        if time > 0:
            grad_x[:, 0] = lam_next
        param_grads = neuron.param_grads()
        return (None, None, grad_x, grad_weight, grad_bias, *grad_states,
                *(param_grads[name] for name in neuron_type.param_names))
