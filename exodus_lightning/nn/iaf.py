"""Integrate-and-fire layer (sinabs' ``IAF``): LIF without leak, and its Squeeze variant."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from . import activation as act
from . import parameters as p
from .lif import _DEFAULT_SURROGATE, LIF, SurrogateFn
from .reshape import SqueezeMixin


class IAF(LIF):
    """Integrate-and-fire neurons: LIF with α = 1 and no input normalisation.

        i_t  = β · (i_{t−1} + x_t)          (only with tau_syn; decay_early=False: β·i_{t−1} + x_t)
        v_t  = v⁺_{t−1} + i_t
        s_t  = min(K, floor(v_t / θ)) if v_t ≥ θ else 0
        w_t  = v_t − m · s_t   (reset="subtract", m = subtract_value or θ)   or   0 if s_t > 0
        v⁺_t = max(w_t, min_v_mem)

    Arguments, their positions and the differences from sinabs are those of :class:`LIF`; there
    is no tau_mem, norm_input or train_alphas (tau_syn, when given, is trained as τ).
    """

    _leaky = False

    def __init__(
        self,
        spike_threshold: float | Tensor = 1.0,
        spike_fn: Any = act.MultiSpike,
        reset_fn: Any = None,
        surrogate_grad_fn: SurrogateFn = _DEFAULT_SURROGATE,
        tau_syn: float | Tensor | None = None,
        min_v_mem: float | Tensor | None = None,
        shape: tuple[int, ...] | None = None,
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
        super().__init__(
            tau_mem=float("inf"), tau_syn=tau_syn, spike_threshold=spike_threshold,
            spike_fn=spike_fn, reset_fn=reset_fn, surrogate_grad_fn=surrogate_grad_fn,
            min_v_mem=min_v_mem, train_alphas=False, shape=shape, norm_input=False,
            record_states=record_states, decay_early=decay_early,
            max_spikes_per_step=max_spikes_per_step, reset=reset, subtract_value=subtract_value,
            gradient=gradient, backend=backend, train_threshold=train_threshold,
        )
        # No leak: no time constant to train (sinabs' IAF has tau_mem = None too).
        self.tau_mem = None

    @property
    def alpha_mem_calculated(self) -> Tensor:
        """Always 1 (no leak)."""
        return torch.tensor(1.0, device=self.v_mem.device)

    @property
    def tau_mem_calculated(self) -> None:
        return None

    @property
    def _param_dict(self) -> dict[str, Any]:
        params = super()._param_dict
        for name in ("tau_mem", "train_alphas", "norm_input"):
            params.pop(name)
        return params

    def extra_repr(self) -> str:
        parts = [] if self.tau_syn is None else [f"tau_syn={p.format_value(self.tau_syn)}"]
        return ", ".join(parts + self._spiking_repr())


class IAFSqueeze(SqueezeMixin, IAF):
    """IAF on (batch·time, *features) input; give batch_size or num_timesteps to unfold it."""
