"""Leaky integrate-and-fire layer (sinabs' ``LIF``) on the EXODUS op, and its Squeeze variant."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from exodus_lightning import ops

from . import activation as act
from . import parameters as p
from .reshape import SqueezeMixin
from .spiking import SpikingLayer, reset_mode, spike_limit
from .surrogate import SingleExponential

SurrogateFn = Callable[[Tensor, Tensor], Tensor]
_DEFAULT_SURROGATE = SingleExponential()


def synaptic_current(x: Tensor, beta: Tensor, i_init: Tensor, decay_early: bool, backend: str
                     ) -> tuple[Tensor, Tensor]:
    """Synaptic current over x (batch, time, *features): the trace and i_T, in the state dtype.

        i_t = β · (i_{t−1} + x_t)   (decay_early, sinabs)    or    i_t = β · i_{t−1} + x_t

    sinabs' form runs as u_t = β · u_{t−1} + x'_t with x'_1 = x_1 + i_0, u_0 = 0, and i_t = β · u_t:
    the same floating-point operations in the same order, so i equals sinabs' bit for bit.
    """
    # The trace drives the membrane: rounded to a half input's dtype it would move spikes.
    x = x.to(ops.state_dtype(x))
    if not decay_early:
        return ops.leaky_integrate(x, beta, i_init, backend=backend)
    if x.shape[1] == 0:
        return x.clone(), i_init
    shifted = x.to(i_init.dtype).clone()
    shifted[:, 0] += i_init
    u, u_last = ops.leaky_integrate(shifted, beta, backend=backend)
    return (beta * u).to(x.dtype), beta * u_last


def normalised_drive(current: Tensor, alpha: Tensor | float, x: Tensor) -> Tensor:
    """(1 − α) · current in the state dtype of x (float32 for half inputs).

    In half precision the product would be rounded, and autograd would sum its α gradient
    Σ g · current in half; that term nearly cancels the op's own α gradient (v ≈ x in steady
    state whatever α is), so its rounding error becomes a large error of the τ gradient.
    """
    dtype = ops.state_dtype(x)
    return ((1 - alpha) * current.to(dtype)).to(dtype)


class LIF(SpikingLayer):
    """Leaky integrate-and-fire neurons over (batch, time, *features), sinabs' dynamics.

    Per neuron and time step t, with α = exp(−1/τ_mem), β = exp(−1/τ_syn), θ = spike_threshold:

        i_t  = β · (i_{t−1} + x_t)           (only with tau_syn; decay_early=False: β·i_{t−1} + x_t)
        in_t = (1 − α) · i_t  if norm_input  else  i_t          (i_t = x_t without tau_syn)
        v_t  = α · v⁺_{t−1} + in_t
        s_t  = min(K, floor(v_t / θ)) if v_t ≥ θ else 0          (K = max_spikes_per_step)
        w_t  = v_t − m · s_t   (reset="subtract", m = subtract_value or θ)   or   0 if s_t > 0
        v⁺_t = max(w_t, min_v_mem)       (sinabs' relu(w − min) + min without its rounding)

    The output is s (spike counts, in the input dtype). The backward pass is exact BPTT through
    the reset (EXODUS), computed by one reverse scan, with ds/dv = surrogate_grad_fn(v, θ).
    Spikes, states, recordings and gradients equal sinabs' LIF with the same arguments; without
    min_v_mem (with or without tau_syn) the forward values are bit for bit the same.

    sinabs' arguments keep their positions and meaning. ``spike_fn``, ``reset_fn`` and
    ``surrogate_grad_fn`` accept sinabs' objects or those of :mod:`exodus_lightning.nn.activation`
    (see there for the mapping onto the fused op); ``max_spikes_per_step``, ``reset`` and
    ``subtract_value`` are the same settings as keywords. The layer keeps one source of truth:
    ``layer.spike_fn`` / ``layer.reset_fn`` read back as our equivalents.

    Differences from sinabs a user may notice:
    - gradient="exodus" with reset="zero" differentiates through the reset (∂1[s>0]/∂v by the
      surrogate); the default (gradient=None) is sinabs' gradient: for reset="zero" sinabs'
      MembraneReset passes none through the spike, which is what gradient="slayer" computes.
    - The threshold is a parameter with requires_grad=train_threshold (sinabs never trains it);
      min_v_mem is a buffer (sinabs: a parameter without gradient). Same state_dict keys.
    - ``firing_rate`` is computed when read (sinabs computes it in every forward call).

    Args:
        tau_mem: membrane time constant τ > 0 in time steps: float or tensor broadcastable to
            the features (per channel: shape (C, 1, 1) for (C, H, W) features).
        tau_syn: synaptic time constant, or None for no synaptic current.
        spike_threshold: θ > 0, float or tensor broadcastable to the features.
        spike_fn: MultiSpike, SingleSpike or MaxSpike(K) (sinabs' or ours).
        reset_fn: MembraneSubtract(subtract_value) or MembraneReset() (sinabs' or ours); None:
            from ``reset`` and ``subtract_value``.
        surrogate_grad_fn: callable (v_mem, threshold) -> dS/dV; see ``nn.surrogate``. A custom
            one must be elementwise in v_mem; it is compiled once it has served a few large
            backward passes (see ``ops.lif``).
        min_v_mem: lower bound of the post-reset state (None: unbounded); < spike_threshold.
        train_alphas: train α = exp(−1/τ) (parameters alpha_mem, alpha_syn) instead of τ
            (tau_mem, tau_syn).
        shape: create the states now, with shape (batch, *features).
        norm_input: scale the input by (1 − α).
        record_states: keep the (batch, time, *features) traces of the states (post-reset
            v_mem, and i_syn) in ``self.recordings``, as sinabs.
        decay_early: decay the synaptic input in its own step (sinabs); False adds it undecayed
            (sinabs-exodus' option).
        max_spikes_per_step: None (unbounded multi-spike), 1 (single spike) or K; overrides the
            default spike_fn.
        reset: "subtract" (v − m·s) or "zero"; give it or reset_fn, not both.
        subtract_value: m, the amount removed per spike (None: θ), float or tensor.
        gradient: None (sinabs' gradient, see above), "exodus" (exact through the reset) or
            "slayer" (reset ignored in the backward pass).
        backend: "auto", "extension" (compiled kernels) or "reference" (autograd loop).
        train_threshold: give spike_threshold a gradient.
    """

    _leaky = True

    def __init__(
        self,
        tau_mem: float | Tensor,
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
        *,
        max_spikes_per_step: int | None = None,
        reset: str | None = None,
        subtract_value: float | Tensor | None = None,
        gradient: str | None = None,
        backend: str = "auto",
        train_threshold: bool = False,
    ) -> None:
        super().__init__(["v_mem"] if tau_syn is None else ["v_mem", "i_syn"])
        self.max_spikes_per_step = spike_limit(spike_fn, max_spikes_per_step)
        self._reset, self._subtract_value = reset_mode(reset_fn, reset, subtract_value)
        self.gradient = gradient
        ops.check_choice("backend", backend, ops.BACKENDS)
        act.check_surrogate(surrogate_grad_fn)
        self.train_alphas = bool(train_alphas)
        self._register_decay("tau_mem", "alpha_mem", tau_mem)
        self._register_decay("tau_syn", "alpha_syn", tau_syn)
        self.spike_threshold, min_t = p.threshold_parameter(spike_threshold, min_v_mem,
                                                            train_threshold)
        self.register_buffer("min_v_mem", min_t)
        self.surrogate_grad_fn = surrogate_grad_fn
        self.norm_input = bool(norm_input)
        if self.norm_input and tau_mem is not None and bool(
                torch.isinf(p.as_tensor("tau_mem", tau_mem)).any()):
            raise ValueError("tau_mem=inf with norm_input=True scales the input by 1 - alpha = 0, "
                             "so the layer could never spike; for neurons without leak use IAF "
                             "(or norm_input=False)")
        self.record_states = bool(record_states)
        self.decay_early = bool(decay_early)
        self.backend = backend
        self.recordings: dict[str, Tensor] = {}
        if shape:
            self.init_state_with_shape(shape)

    # --- forward ----------------------------------------------------------------------------

    def _check_parameters(self, x: Tensor) -> None:
        """Shapes against x, and values that training may have moved out of range."""
        names = ("alpha_mem", "alpha_syn") if self.train_alphas else ("tau_mem", "tau_syn")
        for name in (*names, "spike_threshold", "min_v_mem"):
            p.check_broadcast(name, getattr(self, name, None), x)
        if isinstance(self._subtract_value, Tensor):
            p.check_broadcast("subtract_value", self._subtract_value, x)
        layer = type(self).__name__
        for name in names:
            p.check_decay(layer, name, getattr(self, name, None), self.train_alphas)
        p.check_threshold(layer, self.spike_threshold, self.min_v_mem)

    def _run(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Synaptic current and membrane over x (batch, time, *features), from and to the
        states; returns the spikes and the recordings (empty without record_states)."""
        alpha = self.alpha_mem_calculated if self._leaky else 1.0
        beta = self.alpha_syn_calculated
        i_syn = x
        if beta is not None:
            i_syn, self.i_syn = synaptic_current(x, beta, self.i_syn, self.decay_early,
                                                 self.backend)
        drive = normalised_drive(i_syn, alpha, x) if self.norm_input else i_syn
        subtract = self._subtract_tensor(x)
        gradient = self.gradient
        spikes, v_mem, self.v_mem = ops.lif(
            drive, alpha, self.spike_threshold, self.v_mem, subtract=subtract,
            min_v_mem=self.min_v_mem, max_spikes=self._max_spikes,
            surrogate=act.fused_surrogate(self.surrogate_grad_fn), reset=self._reset,
            gradient=gradient, backend=self.backend,
        )
        spikes = spikes.to(x.dtype)  # a drive in the state dtype gives spikes in it
        recordings = {}
        if self.record_states:
            recordings["v_mem"] = self._post_reset(v_mem, spikes, subtract, gradient)
            if beta is not None:
                recordings["i_syn"] = i_syn
        return spikes, recordings

    def _subtract_tensor(self, x: Tensor) -> Tensor | None:
        if self._subtract_value is None:
            return None
        return torch.as_tensor(self._subtract_value, dtype=ops.state_dtype(x), device=x.device)

    def _post_reset(self, v_mem: Tensor, spikes: Tensor, subtract: Tensor | None,
                    gradient: str) -> Tensor:
        """The post-reset, clipped state trace v⁺ (what sinabs records), from the pre-reset
        membrane and the spikes, with the gradient the op's dynamics have."""
        s = spikes.to(v_mem.dtype)
        s_reset = s if gradient == "exodus" else s.detach()
        if self._reset == "subtract":
            amount = self.spike_threshold if subtract is None else subtract
            w = v_mem - amount.to(v_mem.dtype) * s_reset
        else:
            # 1[s > 0] with the spike's surrogate derivative (the op's zero reset).
            fired = (s > 0).to(s.dtype) + (s_reset - s_reset.detach())
            w = v_mem * (1 - fired)
        if self.min_v_mem is None:
            return w
        floor = self.min_v_mem.to(w.dtype)
        return torch.where(w > floor, w, floor)

    # --- sinabs' introspection --------------------------------------------------------------

    @property
    def _param_dict(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this layer (sinabs' keys, then ours if set)."""
        tau_mem, tau_syn = self.tau_mem_calculated, self.tau_syn_calculated
        params = dict(
            tau_mem=None if tau_mem is None else tau_mem.detach(),
            tau_syn=None if tau_syn is None else tau_syn.detach(),
            spike_threshold=self.spike_threshold.detach(),
            spike_fn=self.spike_fn,
            reset_fn=self.reset_fn,
            surrogate_grad_fn=self.surrogate_grad_fn,
            train_alphas=self.train_alphas,
            shape=self.shape,
            min_v_mem=self.min_v_mem,
            norm_input=self.norm_input,
            record_states=self.record_states,
        )
        return params | self._extra_params()

    def _extra_params(self) -> dict[str, Any]:
        """Our settings that sinabs' layers lack, only where they differ from the default."""
        extra: dict[str, Any] = {}
        if not self.decay_early:
            extra["decay_early"] = False
        if self._gradient is not None:
            extra["gradient"] = self._gradient
        if self.backend != "auto":
            extra["backend"] = self.backend
        if self.spike_threshold.requires_grad:
            extra["train_threshold"] = True
        return extra

    @property
    def arg_dict(self) -> dict[str, Any]:
        """The constructor arguments of this layer (sinabs' ``arg_dict``)."""
        return self._param_dict

    def extra_repr(self) -> str:
        parts = []
        if self.train_alphas:
            parts.append(f"alpha_mem={p.format_value(self.alpha_mem)}")
            if self.alpha_syn is not None:
                parts.append(f"alpha_syn={p.format_value(self.alpha_syn)}")
        else:
            parts.append(f"tau_mem={p.format_value(self.tau_mem)}")
            if self.tau_syn is not None:
                parts.append(f"tau_syn={p.format_value(self.tau_syn)}")
        parts += self._spiking_repr()
        parts.append(f"norm_input={self.norm_input}")
        return ", ".join(parts)

    def _spiking_repr(self) -> list[str]:
        parts = [f"spike_threshold={p.format_value(self.spike_threshold)}"]
        if self.min_v_mem is not None:
            parts.append(f"min_v_mem={p.format_value(self.min_v_mem)}")
        parts += [f"max_spikes_per_step={self._max_spikes}", f"reset={self._reset!r}"]
        if self._subtract_value is not None:
            parts.append(f"subtract_value={p.format_value(torch.as_tensor(self._subtract_value))}")
        parts += [f"surrogate_grad_fn={self.surrogate_grad_fn!r}",
                  f"gradient={self.gradient!r}"]
        if not self.decay_early:
            parts.append("decay_early=False")
        if self.backend != "auto":
            parts.append(f"backend={self.backend!r}")
        return parts


class LIFSqueeze(SqueezeMixin, LIF):
    """LIF on (batch·time, *features) input; give batch_size or num_timesteps to unfold it."""
