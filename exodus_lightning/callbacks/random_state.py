"""Callback: the training steps' torch generator states in every checkpoint, so that a resumed
fit draws the dropout masks (and any other torch random numbers of its steps) the uninterrupted
run would."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn


class RandomStateWarning(UserWarning):
    """A resumed fit cannot continue the training steps' random numbers as the run it resumes."""


def capture_random_state(device: torch.device) -> dict[str, Any]:
    """torch's generator states: the CPU generator, and the CUDA generator of `device` when it is
    a CUDA device."""
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def apply_random_state(state: dict[str, Any], device: torch.device) -> None:
    """Set torch's generators to `state` (capture_random_state's); a CUDA state only when
    `device` is a CUDA device (a checkpoint of a GPU run resumed on CPU has no use for it)."""
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _from_checkpoint(saved: dict[str, Any]) -> dict[str, Any]:
    """The states as torch sets them (CPU uint8 tensors) from a checkpoint's (any map_location).
    Checkpoints of an earlier version also hold numpy's and random's states: not restored."""
    return {key: saved[key].cpu().to(torch.uint8) for key in ("torch", "cuda") if key in saved}


class TrainingRandomState(L.Callback):
    """Keeps the random numbers of the training steps (dropout masks, noise drawn in
    training_step or backward) in every checkpoint, so that a fit resumed from one, written
    inside an epoch or at its end, draws what the uninterrupted run drew.

    The training steps draw from a stream of their own: each step starts from the generators'
    states at the end of the previous step, and what runs between steps (validation, data
    loading: every DataLoader iterator draws its workers' base seed from torch's generator when
    it starts) draws from the states as they were before the step. A resumed run starts its
    loader at another point than the uninterrupted run did (Lightning starts it before the first
    step of any resumed epoch), so states taken when the checkpoint was written would be off by
    those draws when resuming inside an epoch; the steps' own stream is not.

    Saved: torch's generator states at the end of the last training step, of the CPU generator
    and the CUDA generator of the training device (on a GPU). numpy's and Python's `random` are
    not kept (nor does Lightning's own checkpoint keep them): their states (MT19937's 2.5 KB,
    copied through Python objects) cost ~40x torch's to swap around every step, for draws a
    training step seldom makes. Under DDP the checkpoint holds rank 0's states and every rank
    restores them: the CLI's seed_everything seeds every rank alike and every rank's steps draw
    alike (the sampler gives them batches of one size), so they equal each rank's own. A
    checkpoint without them (from plain Lightning or an older version) resumes with a
    RandomStateWarning: its steps draw anew.
    """

    def __init__(self) -> None:
        super().__init__()
        self._steps: dict[str, Any] | None = None  # the training steps' stream
        self._between: dict[str, Any] | None = None  # the states outside the steps

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            # Before a resumed fit restores the stream (load_state_dict).
            self._steps, self._between = None, None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._between = capture_random_state(pl_module.device)
        if self._steps is not None:
            apply_random_state(self._steps, pl_module.device)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        self._steps = capture_random_state(pl_module.device)
        if self._between is not None:
            apply_random_state(self._between, pl_module.device)
            self._between = None

    def state_dict(self) -> dict[str, Any]:
        # Fresh tensors from each step's capture, never changed after: no copy needed.
        return {} if self._steps is None else {"training_steps": dict(self._steps)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        steps = state_dict.get("training_steps")
        self._steps = _from_checkpoint(steps) if steps else None

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        if self.state_key not in (checkpoint.get("callbacks") or {}):
            rank_zero_warn(
                "the checkpoint holds no random-number states of the training steps (written "
                "by plain Lightning or an older exodus-lightning): the resumed fit draws its "
                "dropout masks anew, so it does not repeat the uninterrupted run exactly",
                category=RandomStateWarning)
