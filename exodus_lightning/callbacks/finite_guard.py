"""Callback: stop training at the first non-finite loss, gradient, parameter or layer state."""

from __future__ import annotations

from collections.abc import Iterable

import lightning as L
import torch
from torch import Tensor, nn

# A gradient scaler halves its scale at every step it skips (non-finite gradients) and starts
# at 2**16: below 2**-14 it has skipped at least 30 steps more than it grew, and unscaled
# gradients would need a size past 1e9 to overflow float16. Gradients that are NaN or inf
# whatever the scale (a NaN made in backward, with a finite loss) end up there.
MIN_GRADIENT_SCALE = 2.0**-14


class NonFiniteError(RuntimeError):
    """Training produced a NaN or an infinity; the message names the tensor and the step."""


def _first_non_finite(named: Iterable[tuple[str, Tensor]]) -> str | None:
    """The name of the first tensor holding a NaN or ±inf, or None.

    All tensors are reduced on their device first and read back once, so the check costs one
    host synchronisation per call, not one per tensor.
    """
    named = [(name, t) for name, t in named if t is not None and t.is_floating_point()]
    if not named:
        return None
    finite = torch.stack([torch.isfinite(t).all().to(named[0][1].device) for _, t in named])
    if bool(finite.all()):
        return None
    return named[int((~finite).nonzero()[0])][0]


def _states(module: nn.Module) -> Iterable[tuple[str, Tensor]]:
    """Floating buffers of the model (the spiking layers' carried states among them)."""
    return ((name, buffer) for name, buffer in module.named_buffers()
            if buffer.numel() > 0 and buffer.is_floating_point())


def _scaler(trainer: L.Trainer) -> torch.amp.GradScaler | None:
    """The precision plugin's enabled gradient scaler (fp16 mixed precision), or None."""
    scaler = getattr(trainer.precision_plugin, "scaler", None)
    return scaler if scaler is not None and scaler.is_enabled() else None


class NonFiniteGuard(L.Callback):
    """Stop the run at the first NaN or ±inf in the training loss, a gradient, a parameter or a
    layer state, naming the tensor and the step, instead of training on with it.

    Checks the gradients just before each optimiser step (after a gradient scaler has unscaled
    them) and the loss, parameters and states after it, every ``every_n_steps`` steps (0:
    never). Each check reduces all tensors on their device and reads one flag back: one host
    synchronisation per check.

    Under fp16 mixed precision (``precision="16-mixed"``) the gradient scaler owns the
    gradients: an inf or NaN in them is its routine overflow signal, on which it skips the step
    and lowers its scale, so the guard leaves them to it and checks the loss, parameters and
    states, and stops the run when the scale has fallen below MIN_GRADIENT_SCALE (gradients
    non-finite at every scale: the scaler would skip every step and train nothing).
    """

    def __init__(self, every_n_steps: int = 1) -> None:
        if isinstance(every_n_steps, bool) or every_n_steps < 0:
            raise ValueError(f"every_n_steps must be >= 1 (or 0 to turn the guard off), got "
                             f"{every_n_steps!r}")
        self.every_n_steps = every_n_steps

    def _due(self, step: int) -> bool:
        return self.every_n_steps > 0 and step % self.every_n_steps == 0

    def _check(self, trainer: L.Trainer, step: int, named: Iterable[tuple[str, Tensor]]) -> None:
        bad = _first_non_finite(named)
        if bad is not None:
            raise NonFiniteError(
                f"non-finite {bad} at epoch {trainer.current_epoch}, step {step}: training "
                f"stopped. Lower the learning rate, clip gradients "
                f"(--trainer.gradient_clip_val) or look for NaN/inf in the inputs; "
                f"--non_finite_guard.every_n_steps sets how often this is checked")

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule,
                                 optimizer: torch.optim.Optimizer) -> None:
        step = trainer.global_step  # the optimiser step about to be taken
        # A scaler skips a step whose gradients overflowed; the parameters stay finite.
        if self._due(step) and _scaler(trainer) is None:
            self._check(trainer, step, ((f"gradient of {name!r}", p.grad)
                                        for name, p in pl_module.named_parameters()))

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs,
                           batch, batch_idx: int) -> None:
        step = max(trainer.global_step - 1, 0)  # the step just taken
        if not self._due(step):
            return
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        named = [("training loss", loss)] if isinstance(loss, Tensor) else []
        named += [(f"parameter {name!r}", p) for name, p in pl_module.named_parameters()]
        named += [(f"layer state {name!r}", t) for name, t in _states(pl_module)]
        self._check(trainer, step, named)
        scaler = _scaler(trainer)
        if scaler is not None and scaler.get_scale() < MIN_GRADIENT_SCALE:
            raise NonFiniteError(
                f"the gradient scaler's scale fell to {scaler.get_scale():.3g} at epoch "
                f"{trainer.current_epoch}, step {step}: the gradients were non-finite at every "
                f"scale, so it skipped the optimizer steps and nothing trains. Look for NaN/inf "
                f"made in the backward pass (a surrogate, a custom op) or run in float32/bf16 "
                f"to see which gradient turns non-finite")
