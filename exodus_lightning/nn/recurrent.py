"""Spiking layers with a recurrent connection (sinabs' ``LIFRecurrent``, ``IAFRecurrent``,
``ALIFRecurrent``)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from . import activation as act
from . import parameters as p
from .alif import ALIF
from .iaf import IAF
from .lif import _DEFAULT_SURROGATE, LIF, SurrogateFn


class _Recurrent:
    """The time loop shared by LIFRecurrent and IAFRecurrent (put it first in the bases)."""

    # sinabs' recurrent layers restart from zeros on any change of the input shape.
    batch_change = "zeros"
    rec_connect: nn.Module

    def forward(self, x: Tensor) -> Tensor:
        """(batch, time, *features) input current -> spikes of the same shape and dtype.

        At each step the input is x_t + rec_connect(s_{t−1}) (reshaped to the features), with
        s_0 = 0 at the start of every call, as in sinabs.
        """
        p.check_input(type(self).__name__, x)
        self._check_parameters(x)
        self.prepare_states(x)
        batch, features = x.shape[0], x.shape[2:]
        feedback = x.new_zeros((batch, *features))
        spikes, recordings = [], []
        for x_t in x.unbind(1):
            # The layer's own dynamics on one step (T = 1): the fused op, exact gradients.
            s_t, rec_t = self._run((x_t + feedback).unsqueeze(1))
            spikes.append(s_t)
            recordings.append(rec_t)
            feedback = self.rec_connect(s_t.squeeze(1)).reshape(batch, *features).to(x.dtype)
        if not spikes:
            out = x.new_empty(x.shape)
            self.recordings = {}
        else:
            out = torch.cat(spikes, 1)
            self.recordings = {name: torch.cat([r[name] for r in recordings], 1)
                               for name in recordings[0]}
        self._last_output = out
        return out

    @property
    def _param_dict(self) -> dict[str, Any]:
        return {**super()._param_dict, "rec_connect": self.rec_connect}


class LIFRecurrent(_Recurrent, LIF):
    """LIF neurons whose spikes feed back through ``rec_connect`` (e.g. an nn.Linear) at the
    next step:

        x̃_t = x_t + rec_connect(s_{t−1})       (s_0 = 0 at the start of each call)

    and x̃ drives the LIF dynamics of :class:`LIF` (synaptic current, norm_input, reset,
    min_v_mem, all as there and as in sinabs). Gradients are exact BPTT, equal to sinabs'.

    Cost: the feedback makes each step depend on the last, so time cannot be fused. The layer
    loops over time in Python and calls the op with one step per call (plus rec_connect once
    per step): T small kernel calls forward and T backward, each with the op's per-call
    overhead (argument checks, autograd nodes, ~0.5 ms on CPU). Measured on CPU at
    (32, 300, 512) with an nn.Linear connection, which dominates the forward pass: 2–3× faster
    than sinabs' loop forward + backward, about as fast forward only; far from the time-fused
    speed of :class:`LIF`. On a GPU the per-call launch latency dominates for small layers.

    Args:
        tau_mem, tau_syn, spike_threshold, ...: as :class:`LIF`, in sinabs' positions.
        rec_connect: module mapping spikes (batch, *features) to an input of as many elements
            per sample (reshaped to the features), e.g. nn.Sequential(nn.Flatten(),
            nn.Linear(n, n, bias=False)).
    """

    def __init__(
        self,
        tau_mem: float | Tensor,
        rec_connect: nn.Module,
        tau_syn: float | Tensor | None = None,
        spike_threshold: float | Tensor = 1.0,
        spike_fn: Any = act.MultiSpike,
        reset_fn: Any = None,
        surrogate_grad_fn: SurrogateFn = _DEFAULT_SURROGATE,
        min_v_mem: float | Tensor | None = None,
        train_alphas: bool = False,
        shape: tuple[int, ...] | None = None,
        norm_input: bool = True,
        record_states: bool = False,
        decay_early: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(tau_mem, tau_syn, spike_threshold, spike_fn, reset_fn,
                         surrogate_grad_fn, min_v_mem, train_alphas, shape, norm_input,
                         record_states, decay_early, **kwargs)
        _check_module(rec_connect)
        self.rec_connect = rec_connect


class IAFRecurrent(_Recurrent, IAF):
    """IAF neurons whose spikes feed back through ``rec_connect`` at the next step; see
    :class:`LIFRecurrent` (the same loop, its cost and exact gradients) and :class:`IAF`."""

    def __init__(
        self,
        rec_connect: nn.Module,
        spike_threshold: float | Tensor = 1.0,
        spike_fn: Any = act.MultiSpike,
        reset_fn: Any = None,
        surrogate_grad_fn: SurrogateFn = _DEFAULT_SURROGATE,
        tau_syn: float | Tensor | None = None,
        min_v_mem: float | Tensor | None = None,
        shape: tuple[int, ...] | None = None,
        record_states: bool = False,
        decay_early: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(spike_threshold, spike_fn, reset_fn, surrogate_grad_fn, tau_syn,
                         min_v_mem, shape, record_states, decay_early, **kwargs)
        _check_module(rec_connect)
        self.rec_connect = rec_connect


class ALIFRecurrent(_Recurrent, ALIF):
    """ALIF neurons whose spikes feed back through ``rec_connect`` at the next step (sinabs'
    ``ALIFRecurrent``); see :class:`LIFRecurrent` (the same loop, its cost and exact gradients)
    and :class:`ALIF`."""

    def __init__(
        self,
        tau_mem: float | Tensor,
        tau_adapt: float | Tensor,
        rec_connect: nn.Module,
        tau_syn: float | Tensor | None = None,
        adapt_scale: float | Tensor = 1.8,
        spike_threshold: float | Tensor = 1.0,
        spike_fn: Any = act.SingleSpike,
        reset_fn: Any = None,
        surrogate_grad_fn: SurrogateFn = _DEFAULT_SURROGATE,
        min_v_mem: float | Tensor | None = None,
        shape: tuple[int, ...] | None = None,
        train_alphas: bool = False,
        norm_input: bool = True,
        record_states: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(tau_mem, tau_adapt, tau_syn, adapt_scale, spike_threshold, spike_fn,
                         reset_fn, surrogate_grad_fn, min_v_mem, shape, train_alphas, norm_input,
                         record_states, **kwargs)
        _check_module(rec_connect)
        self.rec_connect = rec_connect


def _check_module(rec_connect: Any) -> None:
    if not isinstance(rec_connect, nn.Module):
        raise TypeError(f"rec_connect must be an nn.Module mapping spikes (batch, *features) to "
                        f"as many inputs, e.g. nn.Linear(n, n), got {type(rec_connect).__name__}")
