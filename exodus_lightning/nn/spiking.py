"""The settings every spiking layer shares with sinabs' layers: spike function, reset, gradient,
and time constants given as τ or trained as α = exp(−1/τ)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from exodus_lightning import ops

from . import activation as act
from . import parameters as p
from .stateful import StatefulLayer


class SpikingLayer(StatefulLayer):
    """Base of the spiking layers (LIF, IAF, ALIF): one source of truth for the spike function
    (``max_spikes_per_step``), the reset (``reset``, ``subtract_value``), the gradient choice and
    the time constants, readable and settable in sinabs' terms (``spike_fn``, ``reset_fn``).

    Subclasses set ``_max_spikes``, ``_reset``, ``_subtract_value``, ``_gradient`` and
    ``train_alphas`` in their constructor (through the setters or ``spike_limit`` /
    ``reset_mode``) and register their time constants with ``_register_decay``.
    """

    train_alphas: bool
    # The dtype of τ (or α) parameters; None keeps float64 given. sinabs' LIF family casts
    # them to float32, its ALIF does not.
    _decay_dtype: ClassVar[torch.dtype | None] = torch.float32

    def forward(self, x: Tensor) -> Tensor:
        """(batch, time, *features) input current -> spikes of the same shape and dtype.

        Subclasses give ``_check_parameters(x)`` (shapes and trained values) and ``_run(x)`` ->
        (spikes, recordings), which runs the dynamics from and to the states.
        """
        p.check_input(type(self).__name__, x)
        p.check_device(self, x)
        self._check_parameters(x)
        self.prepare_states(x)
        spikes, self.recordings = self._run(x)
        self._last_output = spikes
        return spikes

    # --- settings with one source of truth --------------------------------------------------

    @property
    def max_spikes_per_step(self) -> int | None:
        """Spikes per step at most: None (MultiSpike), 1 (SingleSpike) or K (MaxSpike(K))."""
        return self._max_spikes

    @max_spikes_per_step.setter
    def max_spikes_per_step(self, value: int | None) -> None:
        p.check_max_spikes(value)
        self._max_spikes = value

    @property
    def spike_fn(self) -> Any:
        """The spike function as sinabs writes it: MultiSpike, SingleSpike or MaxSpike(K)."""
        return act.spike_fn_for(self._max_spikes)

    @spike_fn.setter
    def spike_fn(self, value: Any) -> None:
        self._max_spikes = spike_limit(value, None)

    @property
    def reset(self) -> str:
        """"subtract" or "zero"."""
        return self._reset

    @reset.setter
    def reset(self, value: str) -> None:
        ops.check_choice("reset", value, ops.RESETS)
        if value == "zero":
            self._subtract_value = None
        self._reset = value

    @property
    def subtract_value(self) -> float | Tensor | None:
        """Amount removed per spike by the subtracting reset (None: the threshold)."""
        return self._subtract_value

    @subtract_value.setter
    def subtract_value(self, value: float | Tensor | None) -> None:
        self._set_reset_mode(*reset_mode(None, self._reset, value))

    def _set_reset_mode(self, reset: str, subtract_value: Tensor | None) -> None:
        """The one place both reset settings change (a subclass may restrict them)."""
        self._reset, self._subtract_value = reset, subtract_value

    @property
    def reset_fn(self) -> Any:
        """The reset as sinabs writes it: MembraneSubtract(subtract_value) or MembraneReset()."""
        return act.reset_fn_for(self._reset, self._subtract_value)

    @reset_fn.setter
    def reset_fn(self, value: Any) -> None:
        self._set_reset_mode(*reset_mode(value, None, None))

    @property
    def gradient(self) -> str:
        """"exodus" or "slayer" (None given: sinabs' gradient, "slayer" only for reset="zero")."""
        if self._gradient is not None:
            return self._gradient
        return "slayer" if self._reset == "zero" else "exodus"

    @gradient.setter
    def gradient(self, value: str | None) -> None:
        if value is not None:
            ops.check_choice("gradient", value, ops.GRADIENTS)
        self._gradient = value

    @property
    def does_spike(self) -> bool:
        """True: the layer emits spikes (sinabs' ``does_spike``)."""
        return True

    # --- time constants ---------------------------------------------------------------------

    def _register_decay(self, tau_name: str, alpha_name: str, tau: float | Tensor | None) -> None:
        """Register the τ or α parameter; the other name is None (sinabs' layout)."""
        setattr(self, tau_name, None)
        setattr(self, alpha_name, None)
        if tau is not None:
            name, param = p.decay_parameter(tau_name, alpha_name, tau, self.train_alphas,
                                            dtype=self._decay_dtype)
            setattr(self, name, param)

    def _alpha(self, tau_name: str, alpha_name: str) -> Tensor | None:
        if self.train_alphas:
            return getattr(self, alpha_name)
        tau = getattr(self, tau_name)
        return None if tau is None else (-1.0 / tau).exp()

    @property
    def alpha_mem_calculated(self) -> Tensor:
        """Membrane decay α = exp(−1/τ_mem)."""
        return self._alpha("tau_mem", "alpha_mem")

    @property
    def alpha_syn_calculated(self) -> Tensor | None:
        """Synaptic decay β = exp(−1/τ_syn), or None without synaptic current."""
        return self._alpha("tau_syn", "alpha_syn")

    @property
    def tau_mem_calculated(self) -> Tensor | None:
        """Membrane time constant τ_mem (computed from α when train_alphas)."""
        return -1.0 / self.alpha_mem.log() if self.train_alphas else self.tau_mem

    @property
    def tau_syn_calculated(self) -> Tensor | None:
        """Synaptic time constant τ_syn (computed from β when train_alphas), or None."""
        if self.train_alphas:
            return None if self.alpha_syn is None else -1.0 / self.alpha_syn.log()
        return self.tau_syn


def spike_limit(spike_fn: Any, max_spikes_per_step: int | None) -> int | None:
    """The spike limit from spike_fn, or from max_spikes_per_step with the default spike_fn."""
    if spike_fn is None:
        raise act.UnsupportedActivationError(
            "spike_fn=None: in sinabs an LIF without a spike function is a non-spiking "
            "integrator; use exodus_lightning.nn.ExpLeak (tau_syn: two ExpLeak layers), or give "
            "a spike function")
    if spike_fn is act.MultiSpike:
        p.check_max_spikes(max_spikes_per_step)
        return max_spikes_per_step
    limit = act.max_spikes_of(spike_fn)
    if max_spikes_per_step is not None and max_spikes_per_step != limit:
        raise ValueError(f"spike_fn={spike_fn!r} and max_spikes_per_step={max_spikes_per_step!r} "
                         f"disagree; give one of them")
    return limit


def reset_mode(reset_fn: Any, reset: str | None, subtract_value: float | Tensor | None
                ) -> tuple[str, float | Tensor | None]:
    """(reset, subtract_value) from reset_fn, or from the keywords (default: subtract θ)."""
    if reset_fn is not None:
        if reset is not None or subtract_value is not None:
            raise ValueError("give reset_fn, or reset and subtract_value, not both")
        reset, subtract_value = act.reset_of(reset_fn)
    reset = "subtract" if reset is None else reset
    ops.check_choice("reset", reset, ops.RESETS)
    if subtract_value is None:
        return reset, None
    if reset == "zero":
        raise ValueError("subtract_value is for reset='subtract'; reset='zero' removes "
                         "everything")
    value = p.as_tensor("subtract_value", subtract_value)
    ops.check_nonnegative(value, "subtract_value")  # inf or NaN would turn the membrane NaN
    return reset, value
