"""Leaky integrator layer (sinabs' ``ExpLeak``): a non-spiking readout, and its Squeeze variant."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from exodus_lightning import ops
from exodus_lightning.ops.reference import clipped_leaky_integrate_reference

from . import parameters as p
from .lif import normalised_drive
from .reshape import SqueezeMixin
from .stateful import StatefulLayer


class ExpLeak(StatefulLayer):
    """Leaky integrator over (batch, time, *features), with α = exp(−1/τ_mem):

        in_t = (1 − α) · x_t  if norm_input  else  x_t      (× α more with decay_early)
        y_t  = α · v_{t−1} + in_t          (the output)
        v_t  = max(y_t, min_v_mem)         (the state; v_t = y_t without min_v_mem)

    Non-spiking: use it as a readout whose membrane is the network output. Same arguments,
    positions and defaults as sinabs' ExpLeak (norm_input=False there too, although sinabs'
    docstring shows the normalised form), plus sinabs-exodus' decay_early. Without min_v_mem
    the scan runs in the fused op; with it, in the (slower) autograd loop
    ``ops.reference.clipped_leaky_integrate_reference`` (the op has no lower bound).

    Args:
        tau_mem: time constant τ > 0, float or tensor broadcastable to the features.
        shape: create the state now, with shape (batch, *features).
        train_alphas: train α = exp(−1/τ) (parameter alpha_mem) instead of τ (tau_mem).
        min_v_mem: lower bound of the state (None: unbounded).
        norm_input: scale the input by (1 − α).
        record_states: keep the (batch, time, *features) state trace in ``self.recordings``.
        decay_early: decay the input already in its own step (sinabs-exodus' option; sinabs
            and the default: False).
        backend: "auto", "extension" or "reference".
    """

    # sinabs' ExpLeak has these attributes, all None: it does not spike.
    spike_fn = None
    reset_fn = None
    surrogate_grad_fn = None
    spike_threshold = None
    tau_syn = None

    def __init__(
        self,
        tau_mem: float | Tensor,
        shape: tuple[int, ...] | None = None,
        train_alphas: bool = False,
        min_v_mem: float | Tensor | None = None,
        norm_input: bool = False,
        record_states: bool = False,
        decay_early: bool = False,
        *,
        backend: str = "auto",
    ) -> None:
        super().__init__(["v_mem"])
        ops.check_choice("backend", backend, ops.BACKENDS)
        self.train_alphas = bool(train_alphas)
        self.tau_mem = None
        self.alpha_mem = None
        name, param = p.decay_parameter("tau_mem", "alpha_mem", tau_mem, self.train_alphas,
                                        dtype=torch.float32)  # as sinabs
        setattr(self, name, param)
        self.register_buffer("min_v_mem", None if min_v_mem is None
                             else p.as_tensor("min_v_mem", min_v_mem))
        self.norm_input = bool(norm_input)
        self.record_states = bool(record_states)
        self.decay_early = bool(decay_early)
        self.backend = backend
        self.recordings: dict[str, Tensor] = {}
        if shape:
            self.init_state_with_shape(shape)

    @property
    def alpha_mem_calculated(self) -> Tensor:
        """Decay α = exp(−1/τ_mem)."""
        return self.alpha_mem if self.train_alphas else (-1.0 / self.tau_mem).exp()

    @property
    def tau_mem_calculated(self) -> Tensor:
        """Time constant τ_mem (computed from α when train_alphas)."""
        return -1.0 / self.alpha_mem.log() if self.train_alphas else self.tau_mem

    @property
    def does_spike(self) -> bool:
        """False: a leaky integrator (sinabs' ``does_spike``)."""
        return False

    def forward(self, x: Tensor) -> Tensor:
        """(batch, time, *features) -> the integrated trace y, same shape and dtype."""
        layer = type(self).__name__
        p.check_input(layer, x)
        p.check_device(self, x)
        name = "alpha_mem" if self.train_alphas else "tau_mem"
        p.check_broadcast(name, getattr(self, name), x)
        p.check_broadcast("min_v_mem", self.min_v_mem, x)
        p.check_decay(layer, name, getattr(self, name), self.train_alphas)
        self.prepare_states(x)
        alpha = self.alpha_mem_calculated
        dtype = ops.state_dtype(x)
        # The drive in the state dtype (float32 for a half input), as LIF's (see
        # normalised_drive and synaptic_current): the op returns and saves its trace in the
        # drive's dtype, and ∂L/∂α = Σ μ_t · y_{t−1} from a trace rounded to half would spoil
        # the τ gradient (as would the scaled drive's α gradient summed in half).
        drive = normalised_drive(x, alpha, x) if self.norm_input else x.to(dtype)
        if self.decay_early:
            drive = (alpha * drive).to(dtype)
        if self.min_v_mem is None:
            y, self.v_mem = ops.leaky_integrate(drive, alpha, self.v_mem, backend=self.backend)
            states = y
        else:
            y, states, self.v_mem = clipped_leaky_integrate_reference(
                drive, alpha.to(dtype), self.v_mem, self.min_v_mem.to(dtype))
        y = y.to(x.dtype)
        self.recordings = {"v_mem": states} if self.record_states else {}
        self._last_output = y
        return y

    @property
    def _param_dict(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this layer (sinabs' keys, then ours if set)."""
        params = dict(tau_mem=self.tau_mem_calculated.detach(), train_alphas=self.train_alphas,
                      shape=self.shape, min_v_mem=self.min_v_mem, norm_input=self.norm_input,
                      record_states=self.record_states)
        if self.decay_early:
            params["decay_early"] = True
        if self.backend != "auto":
            params["backend"] = self.backend
        return params

    @property
    def arg_dict(self) -> dict[str, Any]:
        """The constructor arguments of this layer (sinabs' ``arg_dict``)."""
        return self._param_dict

    def extra_repr(self) -> str:
        parts = [f"alpha_mem={p.format_value(self.alpha_mem)}" if self.train_alphas
                 else f"tau_mem={p.format_value(self.tau_mem)}"]
        if self.min_v_mem is not None:
            parts.append(f"min_v_mem={p.format_value(self.min_v_mem)}")
        parts.append(f"norm_input={self.norm_input}")
        if self.decay_early:
            parts.append("decay_early=True")
        if self.backend != "auto":
            parts.append(f"backend={self.backend!r}")
        return ", ".join(parts)


class ExpLeakSqueeze(SqueezeMixin, ExpLeak):
    """ExpLeak on (batch·time, *features) input; give batch_size or num_timesteps to unfold it."""
