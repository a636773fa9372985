"""Integrate-and-fire layer (sinabs' ``IAF``): LIF without leak, and its Squeeze variant."""

from __future__ import annotations

from torch import Tensor

from . import parameters as p
from .lif import _DEFAULT_SURROGATE, LIF, SurrogateFn
from .reshape import SqueezeMixin


class IAF(LIF):
    """Integrate-and-fire neurons: LIF with α = 1 and no input normalisation.

        i_t  = β · (i_{t−1} + x_t)          (only with tau_syn; else i_t = x_t)
        v_t  = v⁺_{t−1} + i_t
        s_t  = min(K, floor(v_t / θ)) if v_t ≥ θ else 0
        v⁺_t = max(v_t − θ · s_t, min_v_mem)   (reset="subtract"; "zero": 0 if s_t > 0)

    Arguments and the differences from sinabs are those of :class:`LIF`; there is no tau_mem,
    norm_input or train_alphas (tau_syn, when given, is trained as τ).
    """

    def __init__(
        self,
        spike_threshold: float | Tensor = 1.0,
        *,
        tau_syn: float | Tensor | None = None,
        min_v_mem: float | Tensor | None = None,
        max_spikes_per_step: int | None = None,
        reset: str = "subtract",
        surrogate_grad_fn: SurrogateFn = _DEFAULT_SURROGATE,
        record_states: bool = False,
        gradient: str = "exodus",
        backend: str = "auto",
        shape: tuple[int, ...] | None = None,
        train_threshold: bool = False,
    ) -> None:
        super().__init__(
            tau_mem=float("inf"), tau_syn=tau_syn, spike_threshold=spike_threshold,
            min_v_mem=min_v_mem, max_spikes_per_step=max_spikes_per_step, reset=reset,
            surrogate_grad_fn=surrogate_grad_fn, train_alphas=False, norm_input=False,
            record_states=record_states, gradient=gradient, backend=backend, shape=shape,
            train_threshold=train_threshold,
        )
        # No leak: no time constant to train (sinabs' IAF has tau_mem = None too).
        self.tau_mem = None

    @property
    def alpha_mem_calculated(self) -> float:
        return 1.0

    def extra_repr(self) -> str:
        parts = [] if self.tau_syn is None else [f"tau_syn={p.format_value(self.tau_syn)}"]
        return ", ".join(parts + self._spiking_repr())


class IAFSqueeze(SqueezeMixin, IAF):
    """IAF on (batch·time, *features) input; give batch_size or num_timesteps to unfold it."""
