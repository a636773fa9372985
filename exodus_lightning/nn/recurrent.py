"""Spiking layers with a recurrent connection (sinabs' ``LIFRecurrent``, ``IAFRecurrent``,
``ALIFRecurrent``; SE-adLIF's recurrent adLIF, ``adLIFRecurrent``)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from exodus_lightning import ops
from exodus_lightning.ops._arguments import extension_available

from . import activation as act
from . import parameters as p
from .adlif import adLIF
from .alif import ALIF
from .iaf import IAF
from .lif import _DEFAULT_SURROGATE, LIF, SurrogateFn


class _Recurrent:
    """The recurrent forward pass shared by the recurrent layers (put it first in the bases):
    the whole-sequence function for a linear rec_connect (``_scan``), else the per-step loop
    over the layer's ``_run`` (``_loop``). A neuron layer gets the fused path by overriding
    ``_scan`` with its own ops-level function (a RecurrentNeuron in ops/, as ALIFRecurrent
    does) and setting ``_has_scan = True``; until then it loops."""

    # sinabs' recurrent layers restart from zeros on any change of the input shape.
    batch_change = "zeros"
    rec_connect: nn.Module
    # Whether _scan runs this layer's dynamics; the others always loop.
    _has_scan = False
    # Whether a bad input's error points to a *Squeeze variant (there is none for adLIF).
    _squeeze_hint = True

    def forward(self, x: Tensor) -> Tensor:
        """(batch, time, *features) input current -> spikes of the same shape and dtype.

        At each step the input is x_t + rec_connect(s_{t−1}) (reshaped to the features), with
        s_0 = 0 at the start of every call, as in sinabs.
        """
        p.check_input(type(self).__name__, x, squeeze_hint=self._squeeze_hint)
        p.check_device(self, x)
        self._check_rec_connect_dtype(x)
        self._check_parameters(x)
        self.prepare_states(x)
        linear = self._fused_linear(x)
        if linear is None:
            out, self.recordings = self._loop(x)
        else:
            out, self.recordings = self._scan(x, *linear)
        self._last_output = out
        return out

    def _check_rec_connect_dtype(self, x: Tensor) -> None:
        """x in rec_connect's dtype: its spikes go through rec_connect, where a mismatch is only
        a bare matmul error. Autocast casts float32 and half for rec_connect itself, but leaves
        float64 as it is."""
        if torch.is_autocast_enabled(x.device.type) and x.dtype != torch.float64:
            return
        weight = next((t for t in self.rec_connect.parameters() if t.is_floating_point()), None)
        if weight is not None and weight.dtype != x.dtype:
            raise TypeError(f"{type(self).__name__}'s rec_connect has {weight.dtype} parameters "
                            f"but got a {x.dtype} input; convert one of them "
                            f"(layer.to({x.dtype}) or x.to({weight.dtype})), or for half "
                            f"precision run under torch.autocast")

    def _fused_linear(self, x: Tensor) -> tuple[Tensor, Tensor | None] | None:
        """(weight, bias) when the whole-sequence function can run this call, else None."""
        if (not self._has_scan or x.dtype not in (torch.float32, torch.float64)
                or torch.is_autocast_enabled(x.device.type) or self.backend == "reference"
                or x.shape[1] == 0):
            return None
        linear = linear_connection(self.rec_connect, x.shape[2:])
        if linear is None or linear.weight.dtype != x.dtype or linear.weight.device != x.device:
            return None
        # The constant-result check, not ops.try_build_and_load: that takes a lock, which
        # torch.compile(fullgraph=True) cannot trace.
        if self.backend == "auto" and not extension_available(x.device.type):
            return None  # the loop's op calls fall back to the reference, with a warning
        return linear.weight, linear.bias

    def _scan(self, x: Tensor, weight: Tensor, bias: Tensor | None
              ) -> tuple[Tensor, dict[str, Tensor]]:
        """The whole sequence as one op (ops.lif_recurrent)."""
        alpha = self.alpha_mem_calculated if self._leaky else 1.0
        beta = self.alpha_syn_calculated
        subtract = self._subtract_tensor(x)
        gradient = self.gradient
        spikes, v_mem, i_syn, self.v_mem, i_last = ops.lif_recurrent(
            x, weight, bias, alpha, self.spike_threshold, self.v_mem, beta=beta,
            i_init=None if beta is None else self.i_syn, decay_early=self.decay_early,
            norm_input=self.norm_input, subtract=subtract, min_v_mem=self.min_v_mem,
            max_spikes=self._max_spikes, surrogate=act.fused_surrogate(self.surrogate_grad_fn),
            reset=self._reset, gradient=gradient, backend=self.backend,
        )
        recordings = {}
        if beta is not None:
            self.i_syn = i_last
        if self.record_states:
            recordings["v_mem"] = self._post_reset(v_mem, spikes, subtract, gradient)
            if beta is not None:
                recordings["i_syn"] = i_syn
        return spikes, recordings

    def _loop(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Any rec_connect: a Python loop over time, the layer's op on one step per call and
        rec_connect once per step, differentiated by autograd."""
        if x.shape[1] == 0:
            # No step, so no feedback: the layer's own pass over the empty sequence keeps the
            # output on the graph (a loss on it backpropagates zeros) and records empty traces,
            # as the feed-forward layers do.
            return self._run(x)
        batch, features = x.shape[0], x.shape[2:]
        feedback = x.new_zeros((batch, *features))
        spikes, recordings = [], []
        for x_t in x.unbind(1):
            # The layer's own dynamics on one step (T = 1): the fused op, exact gradients.
            s_t, rec_t = self._run((x_t + feedback).unsqueeze(1))
            spikes.append(s_t)
            recordings.append(rec_t)
            feedback = self.rec_connect(s_t.squeeze(1)).reshape(batch, *features).to(x.dtype)
        return torch.cat(spikes, 1), {name: torch.cat([r[name] for r in recordings], 1)
                                      for name in recordings[0]}

    @property
    def _param_dict(self) -> dict[str, Any]:
        return {**super()._param_dict, "rec_connect": self.rec_connect}


class LIFRecurrent(_Recurrent, LIF):
    """LIF neurons whose spikes feed back through ``rec_connect`` (e.g. an nn.Linear) at the
    next step:

        x̃_t = x_t + rec_connect(s_{t−1})       (s_0 = 0 at the start of each call)

    and x̃ drives the LIF dynamics of :class:`LIF` (synaptic current, norm_input, reset,
    min_v_mem, all as there and as in sinabs). Gradients are exact BPTT, equal to sinabs'.

    Two ways to run, chosen per call:
    - ``rec_connect`` a linear map of the flat features (``nn.Linear(N, N)`` on 1-d features,
      ``nn.Sequential(nn.Flatten(), nn.Linear(N, N))`` on any, with or without bias; see
      :func:`linear_connection`), float32/float64 input, no autocast: the whole sequence is one
      op (:func:`exodus_lightning.ops.lif_recurrent`): per step a matmul and the
      fused neuron step, backward a reverse loop of the fused adjoint step and the transposed
      matmul, the weight gradient as one matmul. It keeps only the spikes and membrane traces
      for backward, not a graph per step.
    - any other module (convolutions, nonlinear maps, hooks, half precision): a Python loop over
      time calling the op with one step at a time and rec_connect once per step, differentiated
      by autograd.
    Both give sinabs' spikes and states, and the same gradients (the fused function's forward
    values are bit for bit the loop's).

    Args:
        tau_mem, tau_syn, spike_threshold, ...: as :class:`LIF`, in sinabs' positions.
        rec_connect: module mapping spikes (batch, *features) to an input of as many elements
            per sample (reshaped to the features), e.g. nn.Sequential(nn.Flatten(),
            nn.Linear(n, n, bias=False)).
    """

    _has_scan = True

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

    _has_scan = True

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
    ``ALIFRecurrent``); see :class:`ALIF`. As :class:`LIFRecurrent`: a linear rec_connect runs
    the whole sequence as one op (:func:`exodus_lightning.ops.alif_recurrent`),
    any other module the per-step loop; the same spikes, states and gradients either way."""

    _has_scan = True

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

    def _scan(self, x: Tensor, weight: Tensor, bias: Tensor | None
              ) -> tuple[Tensor, dict[str, Tensor]]:
        """The whole sequence as one op (ops.alif_recurrent)."""
        alpha, rho = self.alpha_mem_calculated, self.alpha_adapt_calculated
        alpha_syn = self.alpha_syn_calculated
        decay = None
        if alpha_syn is not None:
            # ALIF's synaptic state is the normalised current (see ALIF._run): the norm is
            # part of its decay, not of the drive.
            decay = alpha_syn * (1 - alpha) if self.norm_input else alpha_syn
        b_init = self.b
        spikes, v_mem, b, i_syn, self.v_mem, self.b, i_last = ops.alif_recurrent(
            x, weight, bias, alpha, rho, self.adapt_scale, self.b0, self.v_mem, b_init,
            syn_decay=decay, i_init=None if decay is None else self.i_syn,
            norm_input=self.norm_input and decay is None, min_v_mem=self.min_v_mem,
            max_spikes=self._max_spikes, surrogate=act.fused_surrogate(self.surrogate_grad_fn),
            reset=self._reset, gradient=self.gradient, backend=self.backend,
        )
        if decay is not None:
            self.i_syn = i_last
        return spikes, self._record(spikes, v_mem, b, b_init, i_syn)


class adLIFRecurrent(_Recurrent, adLIF):
    """adLIF neurons of SE-adLIF (:class:`adLIF`) whose spikes feed back through
    ``rec_connect`` at the next step, as the authors' ``SEAdLIF`` with ``use_recurrent``:

        x̃_t = x_t + rec_connect(s_{t−1})       (s_0 = 0 at the start of each call)

    and x̃ drives the adLIF dynamics. The states u and w carry over from call to call; the
    feedback restarts from no spikes at each call (as the other recurrent layers, and as the
    authors, who start every sequence from zero states).

    As :class:`LIFRecurrent`: a linear rec_connect (float32/float64, no autocast) runs the
    whole sequence as one op (:func:`exodus_lightning.ops.adlif_recurrent`), any
    other module the per-step loop over the fused adLIF op; the same spikes, states and
    gradients either way.

    Args:
        num_neurons: the feature shape, an int or a tuple.
        rec_connect: module mapping spikes (batch, *features) to an input of as many elements
            per sample (reshaped to the features). Default: the authors' recurrent matrix,
            ``nn.Linear(N, N, bias=False)`` (after ``nn.Flatten()`` on a multi-axis feature
            shape) with orthogonal initialisation (gain 1), N = prod(num_neurons).
        **kwargs: the keywords of :class:`adLIF` (tau_u_range, tau_w_range, a_range, b_range,
            q, threshold, surrogate_grad_fn, gradient, train_*, record_states, backend).
    """

    _has_scan = True
    _squeeze_hint = False

    def __init__(self, num_neurons: int | tuple[int, ...], rec_connect: nn.Module | None = None,
                 **kwargs: Any) -> None:
        super().__init__(num_neurons, **kwargs)
        if rec_connect is None:
            n = int(torch.Size(self.features).numel())
            linear = nn.Linear(n, n, bias=False)
            nn.init.orthogonal_(linear.weight, gain=1.0)
            rec_connect = linear if len(self.features) == 1 else nn.Sequential(nn.Flatten(),
                                                                                linear)
        _check_module(rec_connect)
        self.rec_connect = rec_connect

    def _scan(self, x: Tensor, weight: Tensor, bias: Tensor | None
              ) -> tuple[Tensor, dict[str, Tensor]]:
        """The whole sequence as one op (ops.adlif_recurrent)."""
        a, b = self.coupling
        spikes, u_mem, w, self.u, self.w = ops.adlif_recurrent(
            x, weight, bias, self.alpha, self.beta, a, b, self.threshold, self.u, self.w,
            surrogate=act.fused_surrogate(self.surrogate_grad_fn), gradient=self.gradient,
            backend=self.backend,
        )
        return spikes, ({"u_mem": u_mem, "w": w} if self.record_states else {})


def linear_connection(rec_connect: nn.Module, features: torch.Size) -> nn.Linear | None:
    """The nn.Linear(N, N) that rec_connect is on flat features, or None for any other module.

    Recognised: ``nn.Sequential(nn.Flatten(), nn.Linear(N, N))`` (any feature shape), and
    ``nn.Linear(N, N)`` or ``nn.Sequential(nn.Linear(N, N))`` on 1-d features (on more axes a
    Linear acts on the last one only), with or without bias. Exact types only (a subclass or a
    parametrized Linear may compute something else) and no hooks on any of the modules (the
    fused function would skip them).
    """
    modules = list(rec_connect) if type(rec_connect) is nn.Sequential else [rec_connect]
    if any(_has_hooks(m) for m in [rec_connect, *modules]):
        return None
    if len(modules) == 2 and type(modules[0]) is nn.Flatten:
        flatten, linear = modules
        if (flatten.start_dim, flatten.end_dim) != (1, -1):
            return None
    elif len(modules) == 1 and len(features) == 1:
        (linear,) = modules
    else:
        return None
    n = features.numel()
    if type(linear) is not nn.Linear or (linear.in_features, linear.out_features) != (n, n):
        return None
    return linear


def _has_hooks(module: nn.Module) -> bool:
    return any(getattr(module, name, None) for name in (
        "_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"))


def _check_module(rec_connect: Any) -> None:
    if not isinstance(rec_connect, nn.Module):
        raise TypeError(f"rec_connect must be an nn.Module mapping spikes (batch, *features) to "
                        f"as many inputs, e.g. nn.Linear(n, n), got {type(rec_connect).__name__}")
