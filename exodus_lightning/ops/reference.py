"""Readable BPTT twins of the EXODUS ops: a Python loop over time, differentiated by autograd.

Every extension kernel is tested against these (the one loop without a kernel,
``clipped_leaky_integrate_reference``, is what ``nn.ExpLeak(min_v_mem=...)`` runs). They follow
the dynamics in EXODUS_MATH (per neuron, t = 1..T, v⁺₀ = v_init):

    v_t  = α · v⁺_{t−1} + x_t
    s_t  = min(K, floor(v_t / θ)) if v_t ≥ θ else 0
    w_t  = v_t − m · s_t        (reset="subtract")   or   v_t · 1[s_t = 0]   (reset="zero",
                                                                                 a select)
    v⁺_t = max(w_t, v_min)      (no clip when v_min is None)

The lower bound clips the post-reset state, in sinabs' order (``relu(w − v_min) + v_min``), so the
surrogate sees the unclipped v_t.

The spike function's derivative is the surrogate σ(v_t, θ) (and −σ with respect to θ). With
``gradient="slayer"`` the spike inside the reset is detached, so the reset is ignored backward.

The loop iterates over ``x.unbind(1)``: indexing ``x[:, t]`` on a tensor that needs grad makes
autograd allocate a full-size zero tensor per step, turning the backward into O(T²) traffic.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

SurrogateFn = Callable[[Tensor, Tensor], Tensor]


class SpikeFunction(torch.autograd.Function):
    """s = min(K, floor(v/θ)) · 1[v ≥ θ] (NaN for NaN v), ds/dv = σ(v, θ), ds/dθ = −σ(v, θ)."""

    @staticmethod
    def forward(ctx, v: Tensor, threshold: Tensor, surrogate: SurrogateFn, max_spikes: int | None):
        ctx.save_for_backward(v, threshold)
        ctx.surrogate = surrogate
        spikes = torch.where(v >= threshold, torch.floor(v / threshold), torch.zeros_like(v))
        if max_spikes is not None:
            spikes = spikes.clamp(max=max_spikes)
        # A NaN membrane spikes NaN: visible downstream, never a silent zero.
        return torch.where(torch.isnan(v), v, spikes)

    @staticmethod
    def backward(ctx, grad_spikes: Tensor):
        v, threshold = ctx.saved_tensors
        sigma = ctx.surrogate(v, threshold)
        grad_v = grad_spikes * sigma if ctx.needs_input_grad[0] else None
        grad_threshold = None
        if ctx.needs_input_grad[1]:
            grad_threshold = (-grad_spikes * sigma).sum_to_size(threshold.shape)
        return grad_v, grad_threshold, None, None


class ResetToZero(torch.autograd.Function):
    """w = v · (1 − fired), as a select: 0 where fired, else v (an infinite v gives 0, not NaN).

    The gradient is that of the product: ∂w/∂v = 1 − fired, ∂w/∂fired = −v.
    """

    @staticmethod
    def forward(ctx, v: Tensor, fired: Tensor):
        ctx.save_for_backward(v, fired)
        return torch.where(fired > 0, torch.zeros_like(v), v)

    @staticmethod
    def backward(ctx, grad: Tensor):
        v, fired = ctx.saved_tensors
        return grad * (1 - fired), -grad * v


def lif_reference(
    x: Tensor,
    alpha: Tensor,
    threshold: Tensor,
    v_init: Tensor,
    subtract: Tensor,
    min_v_mem: Tensor | None,
    max_spikes: int | None,
    surrogate: SurrogateFn,
    reset: str = "subtract",
    gradient: str = "exodus",
) -> tuple[Tensor, Tensor, Tensor]:
    """LIF over time by an autograd loop.

    Shapes: x (B, T, *F); v_init (B, *F); alpha, threshold, subtract, min_v_mem broadcastable to
    F, in the state dtype (float32 for half inputs). Returns spikes (B, T, *F) in x's dtype,
    pre-reset membrane v_mem (B, T, *F) and post-reset v_last (B, *F) in the state dtype.
    """
    v_plus = v_init
    spikes, v_mem = [], []
    for x_t in x.unbind(1):
        v = alpha * v_plus + x_t.to(v_init.dtype)
        s = SpikeFunction.apply(v, threshold, surrogate, max_spikes)
        if reset == "subtract":
            s_reset = s if gradient == "exodus" else s.detach()
            v_plus = v - subtract * s_reset
        else:
            fired = SpikeFunction.apply(v, threshold, surrogate, 1)
            fired = fired if gradient == "exodus" else fired.detach()
            v_plus = ResetToZero.apply(v, fired)
        if min_v_mem is not None:
            # sinabs' relu(w − v_min) + v_min: the gradient passes only where w > v_min (relu'(0)
            # is 0), and a NaN stays NaN. Not torch.maximum, which splits the gradient 1/2 : 1/2
            # at a tie (an IAF neuron resting on its bound ties at every step).
            v_plus = torch.where(v_plus <= min_v_mem, min_v_mem, v_plus)
        spikes.append(s.to(x.dtype))
        v_mem.append(v)
    if not spikes:  # T = 0: empty outputs, still part of the graph (zero gradients), as the op's
        empty = x * 0
        return empty, empty.to(v_init.dtype), v_init.clone()
    return torch.stack(spikes, 1), torch.stack(v_mem, 1), v_plus


def leaky_integrate_reference(x: Tensor, alpha: Tensor, v_init: Tensor) -> tuple[Tensor, Tensor]:
    """Leaky integrator i_t = α · i_{t−1} + x_t by an autograd loop.

    Shapes: x (B, T, *F); alpha broadcastable to F; v_init (B, *F) in the state dtype.
    Returns y (B, T, *F) in x's dtype and y_last = i_T (B, *F) in the state dtype.
    """
    state = v_init
    ys = []
    for x_t in x.unbind(1):
        state = alpha * state + x_t.to(v_init.dtype)
        ys.append(state.to(x.dtype))
    if not ys:  # T = 0: still part of the graph, as the op's outputs are
        return x * 0, v_init.clone()
    return torch.stack(ys, 1), state


def clipped_leaky_integrate_reference(x: Tensor, alpha: Tensor, v_init: Tensor, min_v_mem: Tensor
                                      ) -> tuple[Tensor, Tensor, Tensor]:
    """Leaky integrator with a lower bound on its state, by an autograd loop (sinabs'
    ``ExpLeak(min_v_mem=...)``, which ``nn.ExpLeak`` runs here: no kernel has the bound).

        y_t = α · v_{t−1} + x_t                    (the output, not clipped)
        v_t = relu(y_t − min_v_mem) + min_v_mem    (the state: max(y_t, min_v_mem), rounded
                                                    as sinabs rounds it)

    Shapes: x (B, T, *F); alpha, min_v_mem broadcastable to F; v_init (B, *F), all three in the
    state dtype. Returns y (B, T, *F) in x's dtype, the state trace v (B, T, *F) and v_T (B, *F)
    in the state dtype.
    """
    v = v_init
    ys, vs = [], []
    for x_t in x.unbind(1):
        y = alpha * v + x_t.to(v.dtype)
        # relu'(0) = 0: the gradient passes where y > min_v_mem, as in sinabs.
        v = torch.relu(y - min_v_mem) + min_v_mem
        ys.append(y.to(x.dtype))
        vs.append(v)
    if not ys:  # T = 0
        return x.clone(), x.new_empty(x.shape, dtype=v_init.dtype), v_init
    return torch.stack(ys, 1), torch.stack(vs, 1), v


def lif_recurrent_reference(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    alpha: Tensor,
    threshold: Tensor,
    v_init: Tensor,
    subtract: Tensor,
    min_v_mem: Tensor | None,
    max_spikes: int | None,
    surrogate: SurrogateFn,
    reset: str,
    gradient: str,
    beta: Tensor | None,
    i_init: Tensor | None,
    decay_early: bool,
    norm_input: bool,
) -> tuple[Tensor, Tensor, Tensor | None, Tensor, Tensor | None]:
    """Recurrent LIF (``ops.lif_recurrent``) by an autograd loop over time: per step the input
    plus the linear feedback of the last step's spikes (none at the first), the synaptic current
    (with beta), the input normalisation and one LIF step of :func:`lif_reference`.

    Shapes: x (B, T, *F); weight (N, N) and bias (N,) with N = prod(F); alpha, threshold,
    subtract, min_v_mem, beta broadcastable to F; v_init, i_init (B, *F). Returns the spikes and
    the pre-reset membrane (B, T, *F), the synaptic current trace (or None), v_last and i_T (or
    None) (B, *F).
    """
    batch, features = x.shape[0], x.shape[2:]
    v_plus, i = v_init, i_init
    feedback = None
    spikes, v_mem, currents = [], [], []
    for x_t in x.unbind(1):
        if feedback is not None:
            x_t = x_t + feedback
        if beta is not None:
            i = beta * (x_t + i) if decay_early else beta * i + x_t
            currents.append(i)
        current = x_t if beta is None else i
        drive = (1 - alpha) * current if norm_input else current
        s, v, v_plus = lif_reference(drive.unsqueeze(1), alpha, threshold, v_plus, subtract,
                                     min_v_mem, max_spikes, surrogate, reset, gradient)
        spikes.append(s[:, 0])
        v_mem.append(v[:, 0])
        feedback = torch.nn.functional.linear(s[:, 0].reshape(batch, weight.shape[1]), weight,
                                              bias)
        feedback = feedback.reshape(batch, *features)
    if not spikes:  # T = 0: empty outputs, still part of the graph
        empty = x * 0
        return (empty, empty, None if beta is None else empty, v_init.clone(),
                None if beta is None else i_init.clone())
    i_trace = None if beta is None else torch.stack(currents, 1)
    return torch.stack(spikes, 1), torch.stack(v_mem, 1), i_trace, v_plus, i


def alif_reference(
    x: Tensor,
    alpha: Tensor,
    rho: Tensor,
    beta: Tensor,
    b0: Tensor,
    v_init: Tensor,
    b_init: Tensor,
    min_v_mem: Tensor | None,
    max_spikes: int | None,
    surrogate: SurrogateFn,
    reset: str = "subtract",
    gradient: str = "exodus",
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Adaptive LIF (sinabs' ALIF) over time by an autograd loop (docs/alif_math.md):

        v_t  = α · v⁺_{t−1} + x_t
        θ_t  = b0 + β · b_{t−1}
        s_t  = min(K, floor(v_t / θ_t)) if v_t ≥ θ_t else 0      (ds/dv = σ(v_t, θ_t), ds/dθ = 0)
        w_t  = v_t − θ_t · s_t   (reset="subtract")   or   v_t · 1[s_t = 0]   (reset="zero")
        b_t  = ρ · b_{t−1} + (1 − ρ) · s_t
        v⁺_t = max(w_t, v_min)

    With ``gradient="slayer"`` the spike inside the reset is detached. Shapes as
    :func:`lif_reference`; b_init (B, *F). Returns spikes (x's dtype), v_mem and b (B, T, *F),
    v_last = v⁺_T and b_last = b_T (B, *F), in the state dtype.
    """
    v_plus, b = v_init, b_init
    spikes, v_mem, bs = [], [], []
    for x_t in x.unbind(1):
        v = alpha * v_plus + x_t.to(v_init.dtype)
        threshold = b0 + beta * b
        # sinabs' spike functions pass no gradient to the threshold.
        s = SpikeFunction.apply(v, threshold.detach(), surrogate, max_spikes)
        if reset == "subtract":
            v_plus = v - threshold * (s if gradient == "exodus" else s.detach())
        else:
            fired = SpikeFunction.apply(v, threshold.detach(), surrogate, 1)
            v_plus = ResetToZero.apply(v, fired if gradient == "exodus" else fired.detach())
        b = rho * b + (1 - rho) * s
        if min_v_mem is not None:
            v_plus = torch.where(v_plus <= min_v_mem, min_v_mem, v_plus)
        spikes.append(s.to(x.dtype))
        v_mem.append(v)
        bs.append(b)
    if not spikes:  # T = 0
        empty = x * 0
        return empty, empty.to(v_init.dtype), empty.to(v_init.dtype), v_init.clone(), b_init.clone()
    return torch.stack(spikes, 1), torch.stack(v_mem, 1), torch.stack(bs, 1), v_plus, b


def alif_recurrent_reference(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    alpha: Tensor,
    rho: Tensor,
    beta: Tensor,
    b0: Tensor,
    v_init: Tensor,
    b_init: Tensor,
    min_v_mem: Tensor | None,
    max_spikes: int | None,
    surrogate: SurrogateFn,
    reset: str,
    gradient: str,
    syn_decay: Tensor | None,
    i_init: Tensor | None,
    norm_input: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor, Tensor, Tensor | None]:
    """Recurrent adaptive LIF (``ops.alif_recurrent``) by an autograd loop over time: per step
    the input plus the linear feedback of the last step's spikes (none at the first), the
    synaptic current i_t = c · (i_{t−1} + x̃_t) (with syn_decay c), the input normalisation and
    one ALIF step of :func:`alif_reference`.

    Shapes: x (B, T, *F); weight (N, N) and bias (N,) with N = prod(F); alpha, rho, beta, b0,
    min_v_mem, syn_decay broadcastable to F; v_init, b_init, i_init (B, *F). Returns the spikes,
    the pre-reset membrane and the adaptation (B, T, *F), the synaptic current trace (or None),
    v_last, b_last and i_T (or None) (B, *F).
    """
    batch, features = x.shape[0], x.shape[2:]
    v_plus, b, i = v_init, b_init, i_init
    feedback = None
    spikes, v_mem, bs, currents = [], [], [], []
    for x_t in x.unbind(1):
        if feedback is not None:
            x_t = x_t + feedback
        if syn_decay is not None:
            i = syn_decay * (x_t + i)
            currents.append(i)
        current = x_t if syn_decay is None else i
        drive = (1 - alpha) * current if norm_input else current
        s, v, b_t, v_plus, b = alif_reference(drive.unsqueeze(1), alpha, rho, beta, b0, v_plus, b,
                                              min_v_mem, max_spikes, surrogate, reset, gradient)
        spikes.append(s[:, 0])
        v_mem.append(v[:, 0])
        bs.append(b_t[:, 0])
        feedback = torch.nn.functional.linear(s[:, 0].reshape(batch, weight.shape[1]), weight,
                                              bias)
        feedback = feedback.reshape(batch, *features)
    if not spikes:  # T = 0: empty outputs, still part of the graph
        empty = x * 0
        return (empty, empty, empty, None if syn_decay is None else empty, v_init.clone(),
                b_init.clone(), None if syn_decay is None else i_init.clone())
    i_trace = None if syn_decay is None else torch.stack(currents, 1)
    return (torch.stack(spikes, 1), torch.stack(v_mem, 1), torch.stack(bs, 1), i_trace, v_plus,
            b, i)


class SpikeAbove(torch.autograd.Function):
    """s = 1[u > θ] (strict, as SE-adLIF's heaviside(u − θ, 0); NaN for NaN u),
    ds/du = σ(u, θ), ds/dθ = −σ(u, θ)."""

    @staticmethod
    def forward(ctx, u: Tensor, threshold: Tensor, surrogate: SurrogateFn):
        ctx.save_for_backward(u, threshold)
        ctx.surrogate = surrogate
        spikes = (u > threshold).to(u.dtype)
        return torch.where(torch.isnan(u), u, spikes)

    @staticmethod
    def backward(ctx, grad_spikes: Tensor):
        u, threshold = ctx.saved_tensors
        sigma = ctx.surrogate(u, threshold)
        grad_u = grad_spikes * sigma if ctx.needs_input_grad[0] else None
        grad_threshold = None
        if ctx.needs_input_grad[1]:
            grad_threshold = (-grad_spikes * sigma).sum_to_size(threshold.shape)
        return grad_u, grad_threshold, None


def adlif_reference(
    x: Tensor,
    alpha: Tensor,
    beta: Tensor,
    a: Tensor,
    b: Tensor,
    threshold: Tensor,
    u_init: Tensor,
    w_init: Tensor,
    surrogate: SurrogateFn,
    gradient: str = "slayer",
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Adaptive LIF of SE-adLIF (Baronig et al. 2025) over time by an autograd loop
    (docs/adlif_math.md). Per neuron, t = 1..T, u⁺₀ = u_init, w₀ = w_init:

        u_t  = α · u⁺_{t−1} + (1 − α) · (x_t − w_{t−1})
        s_t  = 1[u_t > θ]                          (ds/du = σ(u_t, θ), ds/dθ = −σ(u_t, θ))
        u⁺_t = u_t · (1 − s_t)                     (a select: 0 where s_t > 0)
        w_t  = β · w_{t−1} + (1 − β) · (a · u⁺_t + b · s_t)

    a and b are the couplings as the update uses them (the authors' q·a and q·b). The spike
    inside the reset is detached with ``gradient="slayer"`` (the authors' choice, the default),
    differentiated with ``gradient="exodus"``; the spike that drives w always carries the
    surrogate. Shapes: x (B, T, *F); alpha, beta, a, b, threshold broadcastable to F; u_init,
    w_init (B, *F), all in the state dtype. Returns spikes (x's dtype), the pre-reset membrane
    u_mem and the adaptation w after each step (B, T, *F), u_last = u⁺_T and w_last = w_T (B, *F),
    in the state dtype.
    """
    u_plus, w = u_init, w_init
    spikes, u_mem, ws = [], [], []
    for x_t in x.unbind(1):
        u = alpha * u_plus + (1 - alpha) * (x_t.to(u_init.dtype) - w)
        s = SpikeAbove.apply(u, threshold, surrogate)
        u_plus = ResetToZero.apply(u, s if gradient == "exodus" else s.detach())
        w = beta * w + (1 - beta) * (a * u_plus + b * s)
        spikes.append(s.to(x.dtype))
        u_mem.append(u)
        ws.append(w)
    if not spikes:  # T = 0: empty outputs, still part of the graph
        empty = x * 0
        return empty, empty.to(u_init.dtype), empty.to(u_init.dtype), u_init.clone(), w_init.clone()
    return torch.stack(spikes, 1), torch.stack(u_mem, 1), torch.stack(ws, 1), u_plus, w


def adlif_recurrent_reference(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    alpha: Tensor,
    beta: Tensor,
    a: Tensor,
    b: Tensor,
    threshold: Tensor,
    u_init: Tensor,
    w_init: Tensor,
    surrogate: SurrogateFn,
    gradient: str = "slayer",
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Recurrent adLIF (``ops.adlif_recurrent``) by an autograd loop over time: per step the
    input plus the linear feedback of the last step's spikes (none at the first) and one adLIF
    step of :func:`adlif_reference`.

    Shapes: x (B, T, *F); weight (N, N) and bias (N,) with N = prod(F); alpha, beta, a, b,
    threshold broadcastable to F; u_init, w_init (B, *F). Returns the spikes, the pre-reset
    membrane and the adaptation (B, T, *F), u_last = u⁺_T and w_last = w_T (B, *F).
    """
    batch, features = x.shape[0], x.shape[2:]
    u_plus, w = u_init, w_init
    feedback = None
    spikes, u_mem, ws = [], [], []
    for x_t in x.unbind(1):
        if feedback is not None:
            x_t = x_t + feedback
        s, u, w_t, u_plus, w = adlif_reference(x_t.unsqueeze(1), alpha, beta, a, b, threshold,
                                               u_plus, w, surrogate, gradient)
        spikes.append(s[:, 0])
        u_mem.append(u[:, 0])
        ws.append(w_t[:, 0])
        feedback = torch.nn.functional.linear(s[:, 0].reshape(batch, weight.shape[1]), weight,
                                              bias)
        feedback = feedback.reshape(batch, *features)
    if not spikes:  # T = 0: empty outputs, still part of the graph
        empty = x * 0
        return empty, empty, empty, u_init.clone(), w_init.clone()
    return torch.stack(spikes, 1), torch.stack(u_mem, 1), torch.stack(ws, 1), u_plus, w
