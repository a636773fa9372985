"""Hand-written BPTT loops of sinabs' layers, for the nn tests (float64, autograd).

Written from sinabs' functional definitions (lif_forward_single), not from our ops: synaptic
current decayed in its own step, input normalisation, decay, spike, reset, then the clip on the
post-reset membrane. Gradients flow through the reset, with ds/dv = surrogate(v, θ) and
ds/dθ = −surrogate(v, θ).
"""

from __future__ import annotations

import torch
from torch import Tensor


class Spike(torch.autograd.Function):
    """Spike count floor(v/θ) for v ≥ θ (capped at max_spikes), surrogate derivative."""

    @staticmethod
    def forward(ctx, v, threshold, surrogate, max_spikes):
        ctx.save_for_backward(v, threshold)
        ctx.surrogate = surrogate
        spikes = (v >= threshold) * torch.floor(v / threshold)
        return spikes if max_spikes is None else spikes.clamp(max=max_spikes)

    @staticmethod
    def backward(ctx, grad):
        v, threshold = ctx.saved_tensors
        sigma = ctx.surrogate(v, threshold)
        return grad * sigma, (-grad * sigma).sum_to_size(threshold.shape), None, None


def lif_loop(x: Tensor, alpha_mem, alpha_syn, threshold, v0, i0, *, min_v_mem=None,
             max_spikes=None, surrogate, reset="subtract", gradient="exodus", norm_input=True,
             subtract=None):
    """sinabs' LIF over x (B, T, *F). Returns spikes, pre-reset membrane, the post-reset state
    trace (what sinabs records), v_last, i_last.

    reset="zero" with gradient="slayer" is sinabs' MembraneReset (v·1[s = 0], no gradient
    through the spike); with gradient="exodus" the spike inside the reset is differentiated.
    """
    v, i = v0, i0
    spikes, v_pre, v_post = [], [], []
    subtract = threshold if subtract is None else subtract
    for x_t in x.unbind(1):
        if alpha_syn is not None:
            i = alpha_syn * (i + x_t)
            drive = i
        else:
            drive = x_t
        if norm_input:
            drive = (1 - alpha_mem) * drive
        v = alpha_mem * v + drive
        s = Spike.apply(v, threshold, surrogate, max_spikes)
        spikes.append(s)
        v_pre.append(v)
        if reset == "subtract":
            v = v - subtract * (s if gradient == "exodus" else s.detach())
        elif gradient == "exodus":
            v = v * (1 - Spike.apply(v, threshold, surrogate, 1))
        else:
            v = v * (s == 0)
        if min_v_mem is not None:
            v = torch.nn.functional.relu(v - min_v_mem) + min_v_mem
        v_post.append(v)
    return torch.stack(spikes, 1), torch.stack(v_pre, 1), torch.stack(v_post, 1), v, i


def exp_leak_loop(x: Tensor, alpha, v0, *, min_v_mem=None, norm_input=False):
    """sinabs' ExpLeak over x (B, T, *F). Returns the output trace (pre-clip) and v_last."""
    v = v0
    out = []
    for x_t in x.unbind(1):
        drive = (1 - alpha) * x_t if norm_input else x_t
        v = alpha * v + drive
        out.append(v)
        if min_v_mem is not None:
            v = torch.nn.functional.relu(v - min_v_mem) + min_v_mem
    return torch.stack(out, 1), v
