"""Adaptive LIF layer (sinabs' ``ALIF``) on the fused EXODUS ALIF op, and its Squeeze variant."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor, nn

from exodus_lightning import ops
from exodus_lightning.ops._arguments import caller_outside_the_libraries

from . import activation as act
from . import parameters as p
from .lif import _DEFAULT_SURROGATE, SurrogateFn, normalised_drive, synaptic_current
from .reshape import SqueezeMixin
from .spiking import SpikingLayer, reset_mode, spike_limit


class _FromSpikeFn:
    """ALIF's default max_spikes_per_step: not given, so spike_fn sets the spike limit."""

    def __repr__(self) -> str:
        return "<from spike_fn>"


_FROM_SPIKE_FN = _FromSpikeFn()


class ALIF(SpikingLayer):
    """Adaptive leaky integrate-and-fire neurons (Bellec et al. 2018's LSNN), sinabs' dynamics.

    Per neuron and time step t, with α = exp(−1/τ_mem), ρ = exp(−1/τ_adapt), β = adapt_scale and
    b0 = spike_threshold:

        in_t = (1 − α) · x_t  if norm_input  else  x_t              (without tau_syn)
        in_t = c · (in_{t−1} + x_t),  c = α_syn · (1 − α) if norm_input else α_syn  (tau_syn)
        v_t  = α · v⁺_{t−1} + in_t
        θ_t  = b0 + β · b_{t−1}                                  (the adaptive threshold)
        s_t  = min(K, floor(v_t / θ_t)) if v_t ≥ θ_t else 0       (K = 1: SingleSpike, default)
        w_t  = v_t − θ_t · s_t   (MembraneSubtract)   or   0 if s_t > 0   (MembraneReset)
        b_t  = ρ · b_{t−1} + (1 − ρ) · s_t
        v⁺_t = max(w_t, min_v_mem)

    The forward and backward passes are one fused scan each (docs/alif_math.md): exact BPTT
    with ds/dv = surrogate_grad_fn(v_t, θ_t) and, as in sinabs, no gradient to θ through the
    spike (θ's parameters learn through the reset). Spikes, states and gradients equal sinabs'
    ALIF with the same arguments.

    States (sinabs' names and order): ``v_mem`` (v⁺), ``i_syn`` (with tau_syn), ``b`` and
    ``spike_threshold`` (b0 + β · b after the last step, as sinabs keeps it). The base threshold
    ``b0``, the adaptation scale ``adapt_scale`` and ``min_v_mem`` are, as sinabs' plain
    attributes, left out of the state_dict (buffers that follow ``.to()``; a number may be
    assigned); ``b0`` with train_threshold=True and ``adapt_scale`` with train_adapt_scale=True
    are parameters instead, in the state_dict. Numbers given for them are stored in float32 and
    ``.double()`` sets them from the numbers (sinabs' Python floats), not their float32
    rounding, unless training or an assignment changed them since. A new batch size restarts
    the states from zeros (sinabs' ALIF; its LIF resamples them).

    With tau_syn and norm_input the synaptic state decays by α_syn · (1 − α) per step: sinabs'
    ALIF stores the normalised current as its state (its LIF does not), and this layer follows it.

    Differences from sinabs a user may notice: the synaptic current is carried from call to
    call (sinabs' ALIF never writes its ``i_syn`` state back, so each call starts from zero
    current); recordings of ``v_mem`` and ``i_syn`` hold step t's values at step t (sinabs'
    alias its state dict: entry t holds what step t + 1 wrote before its reset). The reset
    subtracts the current threshold θ_t (sinabs' MembraneSubtract() default); a fixed
    ``MembraneSubtract(subtract_value=m)`` is not supported (it raises). ``gradient`` works as
    in :class:`LIF`.

    Args:
        tau_mem: membrane time constant > 0, float or tensor broadcastable to the features.
        tau_adapt: adaptation time constant > 0.
        tau_syn: synaptic time constant, or None for no synaptic current.
        adapt_scale: β ≥ 0, how far each spike raises the threshold (sinabs' default 1.8).
        spike_threshold: b0 > 0, the threshold without adaptation.
        spike_fn: SingleSpike (default, as sinabs), MultiSpike or MaxSpike(K).
        reset_fn: MembraneSubtract() (default) or MembraneReset().
        surrogate_grad_fn: callable (v_mem, threshold) -> dS/dV (threshold: the adaptive θ_t).
        min_v_mem: lower bound of the post-reset state (None: unbounded); < spike_threshold.
        shape: create the states now, with shape (batch, *features).
        train_alphas: train α_mem, α_adapt, α_syn instead of the τ's.
        norm_input: scale the input by (1 − α).
        record_states: keep the (batch, time, *features) traces of the states in
            ``self.recordings``, as sinabs.
        max_spikes_per_step: None (unbounded multi-spike), 1 (single spike) or K, as
            :class:`LIF`: given, it replaces the default spike_fn (SingleSpike, as sinabs; one
            passed explicitly cannot be told from it); not given, spike_fn decides.
        reset, gradient, backend: as :class:`LIF`.
        train_threshold: give b0 a gradient.
        train_adapt_scale: give adapt_scale a gradient.

    The threshold θ_t = b0 + adapt_scale · b_t reaches the loss only through the subtracting
    reset (the spike's surrogate passes no gradient to θ, as in sinabs): with MembraneReset(),
    b0, adapt_scale and tau_adapt get zero gradients, and training them warns.
    """

    _state_order = ("v_mem", "i_syn", "b", "spike_threshold")
    _SETTINGS = ("b0", "adapt_scale")
    # As sinabs' ALIF: a new batch size restarts the states from zeros, and float64 τ stays.
    batch_change = "zeros"
    _decay_dtype = None

    def __init__(
        self,
        tau_mem: float | Tensor,
        tau_adapt: float | Tensor,
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
        *,
        max_spikes_per_step: int | None | _FromSpikeFn = _FROM_SPIKE_FN,
        reset: str | None = None,
        gradient: str | None = None,
        backend: str = "auto",
        train_threshold: bool = False,
        train_adapt_scale: bool = False,
    ) -> None:
        names = [n for n in self._state_order if n != "i_syn" or tau_syn is not None]
        super().__init__(names)
        if max_spikes_per_step is _FROM_SPIKE_FN:
            max_spikes_per_step = None  # spike_fn decides: SingleSpike by default, as sinabs
        elif spike_fn is act.SingleSpike:
            # The keyword decides, None (unbounded) included, as in LIF: ALIF's default
            # spike_fn cannot be told from a SingleSpike given with it.
            spike_fn = act.MultiSpike
        self.max_spikes_per_step = spike_limit(spike_fn, max_spikes_per_step)
        self._set_reset_mode(*reset_mode(reset_fn, reset, None))
        self.gradient = gradient
        ops.check_choice("backend", backend, ops.BACKENDS)
        act.check_surrogate(surrogate_grad_fn)
        self.train_alphas = bool(train_alphas)
        self._register_decay("tau_mem", "alpha_mem", tau_mem)
        self._register_decay("tau_adapt", "alpha_adapt", tau_adapt)
        self._register_decay("tau_syn", "alpha_syn", tau_syn)
        b0, min_t = p.threshold_parameter(spike_threshold, min_v_mem, train_threshold)
        scale = p.as_tensor("adapt_scale", adapt_scale)
        if torch.isnan(scale).any() or not bool((scale >= 0).all()):
            raise ValueError(f"adapt_scale must be >= 0 (how far a spike raises the threshold), "
                             f"got {scale}")
        # sinabs keeps b0, adapt_scale and min_v_mem as plain attributes, out of its
        # state_dict: here they are buffers out of the state_dict too (following .to()), and
        # parameters (in it) only where trained, which sinabs cannot do.
        self._register_setting("b0", b0.detach(), train_threshold)
        self._register_setting("adapt_scale", scale, train_adapt_scale)
        self.register_buffer("min_v_mem", min_t, persistent=False)
        # sinabs keeps numbers given for them as Python floats: .double() restores the digits.
        for name, value in (("b0", spike_threshold), ("adapt_scale", adapt_scale),
                            ("min_v_mem", min_v_mem)):
            self._keep_exact(name, value)
        trained = [name for name, on in (("train_threshold", train_threshold),
                                         ("train_adapt_scale", train_adapt_scale)) if on]
        if trained and self._reset == "zero":
            verb = "trains" if len(trained) == 1 else "train"
            warnings.warn(f"{type(self).__name__}: {' and '.join(trained)} with a reset to "
                          f"zero {verb} nothing: the threshold reaches the loss only through "
                          f"the subtracting reset, so b0, adapt_scale and tau_adapt get zero "
                          f"gradients; use "
                          f"reset_fn=MembraneSubtract() to train them",
                          stacklevel=caller_outside_the_libraries())
        self.surrogate_grad_fn = surrogate_grad_fn
        self.norm_input = bool(norm_input)
        self.record_states = bool(record_states)
        self.backend = backend
        self.recordings: dict[str, Tensor] = {}
        if shape:
            self.init_state_with_shape(shape)

    def _register_setting(self, name: str, value: Tensor, trainable: bool) -> None:
        if trainable:
            self.register_parameter(name, nn.Parameter(value))
        else:
            self.register_buffer(name, value, persistent=False)

    def __setattr__(self, name: str, value: Any) -> None:
        # sinabs code sets `layer.adapt_scale = 0.5` (plain attributes there): a number is
        # written into the tensor, in place where it is a parameter (the optimizer keeps it).
        current = getattr(self, name, None) if name in self._SETTINGS else None
        if isinstance(current, Tensor) and isinstance(value, (int, float)):
            number = p.as_tensor(name, value, current.dtype).to(current.device)
            self._keep_exact(name, value)
            if isinstance(current, nn.Parameter):
                with torch.no_grad():
                    current.copy_(number.expand_as(current))
                return
            value = number
        elif isinstance(current, Tensor):
            self._keep_exact(name, None)  # a tensor has its own dtype
        super().__setattr__(name, value)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        # A sinabs state_dict lacks the settings (its plain attributes), which then keep the
        # constructor's values; one that has them (a trained one, or saved before they left
        # the state_dict) sets them.
        for name in (*self._SETTINGS, "min_v_mem"):
            key = prefix + name
            if key in state_dict and name in self._buffers and name not in self._parameters:
                value = state_dict.pop(key)
                current = self._buffers[name]
                self._buffers[name] = (None if value is None else value.detach().to(
                    device=None if current is None else current.device,
                    dtype=None if current is None else current.dtype).clone())
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        for name in self._SETTINGS:
            if prefix + name in missing_keys:
                missing_keys.remove(prefix + name)

    def _set_reset_mode(self, reset: str, subtract_value: Tensor | None) -> None:
        if subtract_value is not None:
            raise ValueError("ALIF subtracts the current adaptive threshold at each spike "
                             "(sinabs' MembraneSubtract()); a fixed subtract_value is not "
                             "supported: use reset_fn=MembraneSubtract() or MembraneReset()")
        super()._set_reset_mode(reset, subtract_value)

    @property
    def alpha_adapt_calculated(self) -> Tensor:
        """Adaptation decay ρ = exp(−1/τ_adapt)."""
        return self._alpha("tau_adapt", "alpha_adapt")

    @property
    def tau_adapt_calculated(self) -> Tensor:
        """Adaptation time constant τ_adapt (computed from ρ when train_alphas)."""
        return -1.0 / self.alpha_adapt.log() if self.train_alphas else self.tau_adapt

    def _check_parameters(self, x: Tensor) -> None:
        """Shapes against x, and values that training may have moved out of range."""
        decays = (("alpha_mem", "alpha_adapt", "alpha_syn") if self.train_alphas
                  else ("tau_mem", "tau_adapt", "tau_syn"))
        for name in (*decays, "b0", "adapt_scale", "min_v_mem"):
            p.check_broadcast(name, getattr(self, name, None), x)
        layer = type(self).__name__
        for name in decays:
            p.check_decay(layer, name, getattr(self, name, None), self.train_alphas)
        p.check_threshold(layer, self.b0, self.min_v_mem)

    def _run(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Synaptic current, membrane and adaptation over x, from and to the states; returns
        the spikes and the recordings (empty without record_states)."""
        alpha, rho = self.alpha_mem_calculated, self.alpha_adapt_calculated
        alpha_syn = self.alpha_syn_calculated
        if alpha_syn is not None:
            # sinabs' ALIF keeps the normalised current as its state (unlike its LIF), so the
            # state decays by α_syn · (1 − α) per step: i_t = c · (i_{t−1} + x_t).
            decay = alpha_syn * (1 - alpha) if self.norm_input else alpha_syn
            drive, self.i_syn = synaptic_current(x, decay, self.i_syn, True, self.backend)
            i_syn = drive
        else:
            i_syn = x
            drive = normalised_drive(x, alpha, x) if self.norm_input else x
        b_init = self.b
        spikes, v_mem, b, self.v_mem, self.b = ops.alif(
            drive, alpha, rho, self.adapt_scale, self.b0, self.v_mem, b_init,
            min_v_mem=self.min_v_mem, max_spikes=self._max_spikes,
            surrogate=act.fused_surrogate(self.surrogate_grad_fn), reset=self._reset,
            gradient=self.gradient, backend=self.backend,
        )
        spikes = spikes.to(x.dtype)  # a drive in the state dtype gives spikes in it
        return spikes, self._record(spikes, v_mem, b, b_init,
                                    None if alpha_syn is None else i_syn)

    def _record(self, spikes: Tensor, v_mem: Tensor, b: Tensor, b_init: Tensor,
                i_syn: Tensor | None) -> dict[str, Tensor]:
        """Set the state spike_threshold from b_T (self.b) and return the recordings (empty
        without record_states) from the op's traces and the adaptation b_init before them."""
        dtype = self.b.dtype
        self.spike_threshold = self.b0.to(dtype) + self.adapt_scale.to(dtype) * self.b
        recordings = {}
        if self.record_states:
            recordings["v_mem"] = self._post_reset(v_mem, spikes, b, b_init)
            if i_syn is not None:
                recordings["i_syn"] = i_syn
            recordings["b"] = b
            recordings["spike_threshold"] = self.b0.to(dtype) + self.adapt_scale.to(dtype) * b
        return recordings

    def _post_reset(self, v_mem: Tensor, spikes: Tensor, b: Tensor, b_init: Tensor) -> Tensor:
        """The post-reset, clipped state trace v⁺ (what sinabs records), from the pre-reset
        membrane, the spikes and the adaptation, with the gradient the op's dynamics have."""
        s = spikes.to(v_mem.dtype)
        s_reset = s if self.gradient == "exodus" else s.detach()
        if self._reset == "subtract":
            b_before = torch.cat([b_init.unsqueeze(1), b[:, :-1]], 1)
            threshold = self.b0.to(b.dtype) + self.adapt_scale.to(b.dtype) * b_before
            w = v_mem - threshold * s_reset
        else:
            fired = (s > 0).to(s.dtype) + (s_reset - s_reset.detach())
            w = v_mem * (1 - fired)
        if self.min_v_mem is None:
            return w
        floor = self.min_v_mem.to(w.dtype)
        return torch.where(w > floor, w, floor)

    @property
    def _param_dict(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this layer (sinabs' keys, then ours if set)."""
        tau_syn = self.tau_syn_calculated
        params = dict(
            tau_mem=self.tau_mem_calculated.detach(),
            tau_adapt=self.tau_adapt_calculated.detach(),
            tau_syn=None if tau_syn is None else tau_syn.detach(),
            adapt_scale=self.adapt_scale.detach(),
            spike_threshold=self.b0.detach(),
            spike_fn=self.spike_fn,
            reset_fn=self.reset_fn,
            surrogate_grad_fn=self.surrogate_grad_fn,
            train_alphas=self.train_alphas,
            shape=self.shape,
            min_v_mem=self.min_v_mem,
            norm_input=self.norm_input,
            record_states=self.record_states,
        )
        extra: dict[str, Any] = {}
        if self._gradient is not None:
            extra["gradient"] = self._gradient
        if self.backend != "auto":
            extra["backend"] = self.backend
        if self.b0.requires_grad:
            extra["train_threshold"] = True
        if self.adapt_scale.requires_grad:
            extra["train_adapt_scale"] = True
        return params | extra

    @property
    def arg_dict(self) -> dict[str, Any]:
        """The constructor arguments of this layer (sinabs' ``arg_dict``)."""
        return self._param_dict

    def extra_repr(self) -> str:
        names = (("alpha_mem", "alpha_adapt", "alpha_syn") if self.train_alphas
                 else ("tau_mem", "tau_adapt", "tau_syn"))
        parts = [f"{name}={p.format_value(getattr(self, name))}" for name in names
                 if getattr(self, name) is not None]
        parts += [f"adapt_scale={p.format_value(self.adapt_scale)}",
                  f"spike_threshold={p.format_value(self.b0)}"]
        if self.min_v_mem is not None:
            parts.append(f"min_v_mem={p.format_value(self.min_v_mem)}")
        parts += [f"max_spikes_per_step={self._max_spikes}", f"reset={self._reset!r}",
                  f"surrogate_grad_fn={self.surrogate_grad_fn!r}", f"gradient={self.gradient!r}",
                  f"norm_input={self.norm_input}"]
        if self.backend != "auto":
            parts.append(f"backend={self.backend!r}")
        return ", ".join(parts)


class ALIFSqueeze(SqueezeMixin, ALIF):
    """ALIF on (batch·time, *features) input; give batch_size or num_timesteps to unfold it."""
