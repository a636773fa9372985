"""Leaky integrate-and-fire layer (sinabs' ``LIF``) on the EXODUS op, and its Squeeze variant."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from exodus_lightning import ops

from . import parameters as p
from .reshape import SqueezeMixin
from .stateful import StatefulLayer
from .surrogate import SingleExponential

SurrogateFn = Callable[[Tensor, Tensor], Tensor]
_DEFAULT_SURROGATE = SingleExponential()
RESETS = ("subtract", "zero")
GRADIENTS = ("exodus", "slayer")
BACKENDS = ("auto", "extension", "reference")


class LIF(StatefulLayer):
    """Leaky integrate-and-fire neurons over (batch, time, *features), sinabs' dynamics.

    Per neuron and time step t, with α = exp(−1/τ_mem), β = exp(−1/τ_syn), θ = spike_threshold:

        i_t  = β · (i_{t−1} + x_t)           (only with tau_syn; sinabs decays the new input too)
        in_t = (1 − α) · i_t  if norm_input  else  i_t          (i_t = x_t without tau_syn)
        v_t  = α · v⁺_{t−1} + in_t
        s_t  = min(K, floor(v_t / θ)) if v_t ≥ θ else 0          (K = max_spikes_per_step)
        w_t  = v_t − θ · s_t   (reset="subtract")   or   0 if s_t > 0   (reset="zero")
        v⁺_t = max(w_t, min_v_mem)             (sinabs' relu(w − min) + min; none if None)

    The output is s (spike counts, in the input dtype). The backward pass is exact BPTT through
    the reset (EXODUS), computed by one reverse scan, with ds/dv = surrogate_grad_fn(v, θ).

    Differences from sinabs a user should know:
    - ``recordings["v_mem"]`` is the pre-reset membrane v_t; sinabs records the post-reset v⁺_t
      (get it as v_t − θ · s_t). The state ``self.v_mem`` is v⁺, as in sinabs.
    - min_v_mem clips the post-reset state, as sinabs does, so spikes, states and gradients
      equal sinabs' for every bound (sinabs-exodus clips before spiking: its gradients differ
      at clipped steps).
    - sinabs' ``spike_fn``/``reset_fn`` are replaced by ``max_spikes_per_step`` (None =
      MultiSpike, 1 = SingleSpike, K = MaxSpike(K)) and ``reset``. reset="zero" with the
      default gradient="exodus" differentiates through the reset; sinabs' MembraneReset does
      not, which is what gradient="slayer" computes.
    - The threshold is a parameter with requires_grad=train_threshold (sinabs: never trained).

    Args:
        tau_mem: membrane time constant τ > 0 in time steps: float or tensor broadcastable to
            the features (per channel: shape (C, 1, 1) for (C, H, W) features).
        tau_syn: synaptic time constant, or None for no synaptic current.
        spike_threshold: θ > 0, float or tensor broadcastable to the features.
        min_v_mem: lower bound of the post-reset state (None: unbounded); < spike_threshold.
        max_spikes_per_step: None (unbounded multi-spike), 1 (single spike) or K.
        reset: "subtract" (v − θ·s) or "zero".
        surrogate_grad_fn: callable (v_mem, threshold) -> dS/dV; see ``nn.surrogate``.
        train_alphas: train α = exp(−1/τ) (parameters alpha_mem, alpha_syn) instead of τ
            (tau_mem, tau_syn).
        norm_input: scale the input by (1 − α).
        record_states: keep the (batch, time, *features) traces in ``self.recordings``.
        gradient: "exodus" (exact) or "slayer" (reset ignored in the backward pass).
        backend: "auto", "extension" (compiled kernels) or "reference" (autograd loop).
        shape: create the states now, with shape (batch, *features).
        train_threshold: give spike_threshold a gradient.
    """

    def __init__(
        self,
        tau_mem: float | Tensor,
        tau_syn: float | Tensor | None = None,
        spike_threshold: float | Tensor = 1.0,
        *,
        min_v_mem: float | Tensor | None = None,
        max_spikes_per_step: int | None = None,
        reset: str = "subtract",
        surrogate_grad_fn: SurrogateFn = _DEFAULT_SURROGATE,
        train_alphas: bool = False,
        norm_input: bool = True,
        record_states: bool = False,
        gradient: str = "exodus",
        backend: str = "auto",
        shape: tuple[int, ...] | None = None,
        train_threshold: bool = False,
    ) -> None:
        super().__init__(["v_mem"] if tau_syn is None else ["v_mem", "i_syn"])
        p.check_max_spikes(max_spikes_per_step)
        p.check_choice("reset", reset, RESETS)
        p.check_choice("gradient", gradient, GRADIENTS)
        p.check_choice("backend", backend, BACKENDS)
        if not callable(surrogate_grad_fn):
            raise TypeError(f"surrogate_grad_fn must be a callable (v_mem, threshold) -> dS/dV, "
                            f"e.g. nn.surrogate.SingleExponential(), got "
                            f"{type(surrogate_grad_fn).__name__}")
        self.train_alphas = bool(train_alphas)
        self._register_decay("tau_mem", "alpha_mem", tau_mem)
        self._register_decay("tau_syn", "alpha_syn", tau_syn)
        self.spike_threshold, min_t = p.threshold_parameter(spike_threshold, min_v_mem,
                                                            train_threshold)
        self.register_buffer("min_v_mem", min_t)
        self.max_spikes_per_step = max_spikes_per_step
        self.reset = reset
        self.surrogate_grad_fn = surrogate_grad_fn
        self.norm_input = bool(norm_input)
        self.record_states = bool(record_states)
        self.gradient = gradient
        self.backend = backend
        self.recordings: dict[str, Tensor] = {}
        if shape is not None:
            self.init_state_with_shape(shape)

    def _register_decay(self, tau_name: str, alpha_name: str, tau: float | Tensor | None) -> None:
        """Register the τ or α parameter; the other name is None (sinabs' layout)."""
        setattr(self, tau_name, None)
        setattr(self, alpha_name, None)
        if tau is not None:
            name, param = p.decay_parameter(tau_name, alpha_name, tau, self.train_alphas)
            setattr(self, name, param)

    def _alpha(self, tau_name: str, alpha_name: str) -> Tensor | None:
        if self.train_alphas:
            return getattr(self, alpha_name)
        tau = getattr(self, tau_name)
        return None if tau is None else (-1.0 / tau).exp()

    @property
    def alpha_mem_calculated(self) -> Tensor | float:
        """Membrane decay α = exp(−1/τ_mem)."""
        return self._alpha("tau_mem", "alpha_mem")

    @property
    def alpha_syn_calculated(self) -> Tensor | None:
        """Synaptic decay β = exp(−1/τ_syn), or None without synaptic current."""
        return self._alpha("tau_syn", "alpha_syn")

    @property
    def tau_mem_calculated(self) -> Tensor | None:
        """Membrane time constant τ_mem (computed from α when train_alphas)."""
        alpha = self.alpha_mem_calculated
        return None if not isinstance(alpha, Tensor) else -1.0 / alpha.log()

    @property
    def tau_syn_calculated(self) -> Tensor | None:
        """Synaptic time constant τ_syn (computed from β when train_alphas), or None."""
        beta = self.alpha_syn_calculated
        return None if beta is None else -1.0 / beta.log()

    def _check_parameters(self, x: Tensor) -> None:
        names = ("alpha_mem", "alpha_syn") if self.train_alphas else ("tau_mem", "tau_syn")
        for name in (*names, "spike_threshold", "min_v_mem"):
            p.check_broadcast(name, getattr(self, name, None), x)

    def forward(self, x: Tensor) -> Tensor:
        """(batch, time, *features) input current -> spikes of the same shape and dtype."""
        p.check_input(type(self).__name__, x)
        self._check_parameters(x)
        self.prepare_states(x)
        alpha = self.alpha_mem_calculated
        beta = self.alpha_syn_calculated
        i_syn = x
        if beta is not None:
            # sinabs: i_t = β·(i_{t−1} + x_t), i.e. the new input is decayed in its own step.
            i_syn, self.i_syn = ops.leaky_integrate((beta * x).to(x.dtype), beta, self.i_syn,
                                                    backend=self.backend)
        drive = ((1 - alpha) * i_syn).to(x.dtype) if self.norm_input else i_syn
        spikes, v_mem, self.v_mem = ops.lif(
            drive, alpha, self.spike_threshold, self.v_mem,
            min_v_mem=self.min_v_mem, max_spikes=self.max_spikes_per_step,
            surrogate=self.surrogate_grad_fn, reset=self.reset, gradient=self.gradient,
            backend=self.backend,
        )
        self.recordings = {}
        if self.record_states:
            self.recordings["v_mem"] = v_mem
            if beta is not None:
                self.recordings["i_syn"] = i_syn
        return spikes

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
        parts += [
            f"max_spikes_per_step={self.max_spikes_per_step}",
            f"reset={self.reset!r}",
            f"surrogate_grad_fn={self.surrogate_grad_fn!r}",
            f"gradient={self.gradient!r}",
        ]
        if self.backend != "auto":
            parts.append(f"backend={self.backend!r}")
        return parts


class LIFSqueeze(SqueezeMixin, LIF):
    """LIF on (batch·time, *features) input; give batch_size or num_timesteps to unfold it."""
