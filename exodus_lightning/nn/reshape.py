"""Folding time into the batch axis for conv stacks: (batch, time, ...) <-> (batch·time, ...).

Conv and pooling layers take (N, C, H, W); spiking layers need (batch, time, C, H, W). A network
either folds time once at its input (``FlattenTime``) and uses the ``*Squeeze`` spiking layers,
which unfold and refold around their own dynamics, or unfolds explicitly (``UnflattenTime``).
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

from exodus_lightning.ops._arguments import caller_outside_the_libraries

from .parameters import ShapeError


class SizeArgumentError(ValueError, TypeError):
    """Neither batch_size nor num_timesteps given: a ValueError, and a TypeError as in sinabs."""


def _size(owner: str, name: str, value: int | None) -> int:
    """A size argument as an int, -1 for 'not given' (None, -1 or 0, as sinabs accepts)."""
    if value is None:
        return -1
    if isinstance(value, bool) or not isinstance(value, int) or value < -1:
        raise ValueError(f"{owner}: {name} must be an int >= 1 (or None), got {value!r}")
    return -1 if value in (0, -1) else value


def _check_sizes(owner: str, batch_size: int | None, num_timesteps: int | None
                 ) -> tuple[int, int]:
    """(batch_size, num_timesteps), -1 for the one not given; at least one must be given."""
    sizes = _size(owner, "batch_size", batch_size), _size(owner, "num_timesteps", num_timesteps)
    if sizes == (-1, -1):
        raise SizeArgumentError(f"{owner} needs batch_size or num_timesteps to unfold "
                                f"(batch*time, ...) into (batch, time, ...), got neither")
    return sizes


def unflatten_time(owner: str, x: Tensor, batch_size: int, num_timesteps: int) -> Tensor:
    """(batch·time, *features) -> (batch, time, *features); a size of -1 is inferred."""
    if x.dim() < 1:
        raise ShapeError(f"{owner} expects input of shape (batch*time, *features), got a scalar")
    known = [(name, n) for name, n in (("batch_size", batch_size),
                                       ("num_timesteps", num_timesteps)) if n > 0]
    product = 1
    for _, n in known:
        product *= n
    fits = x.shape[0] == product if len(known) == 2 else x.shape[0] % product == 0
    if not fits:
        what = " * ".join(f"{name}={n}" for name, n in known)
        verb = "equal" if len(known) == 2 else "be divisible by"
        # The advice fits the size that is given: a batch size changes between batches, a
        # number of time steps only when the data's time length differs from the layer's.
        advice = []
        if batch_size > 0:
            advice.append("after a batch-size change set the new batch_size "
                          "(exodus_lightning.nn.set_batch_size(model, n))")
        if num_timesteps > 0:
            advice.append(f"give inputs of {num_timesteps} time steps per sample, or set "
                          f"num_timesteps to the data's number of time steps")
        raise ShapeError(f"{owner}: the first axis of the input {tuple(x.shape)} is batch*time "
                        f"and must {verb} {what}; {'; or '.join(advice)}")
    return x.unflatten(0, (batch_size, num_timesteps))


def _warn_if_time_changed(module: nn.Module, owner: str, num_timesteps: int) -> None:
    """With only batch_size given, warn (once per module) when a call infers another number of
    time steps than the first call: most likely a batch of another size (an epoch's smaller
    last batch) whose frames were read as batch_size samples of fewer steps, each from rest."""
    if (module.num_timesteps > 0 or module.__dict__.get("_warned_time_change")
            or torch.compiler.is_compiling()):
        return
    first = module.__dict__.setdefault("_first_num_timesteps", num_timesteps)
    if num_timesteps == first:
        return
    module._warned_time_change = True
    warnings.warn(
        f"{owner}(batch_size={module.batch_size}) read its input of "
        f"{module.batch_size * num_timesteps} frames as {module.batch_size} samples of "
        f"{num_timesteps} steps, but its first input had {first} steps per sample: if this "
        f"batch holds fewer samples (an epoch's last batch), its samples were cut into pieces "
        f"that each start from rest. Give num_timesteps={first} instead of batch_size (it "
        f"fits any batch size), or set the batch size before such a call "
        f"(exodus_lightning.nn.set_batch_size). As sinabs, this is not an error.",
        stacklevel=caller_outside_the_libraries())


class FlattenTime(nn.Flatten):
    """(batch, time, *features) -> (batch·time, *features)."""

    def __init__(self) -> None:
        super().__init__(start_dim=0, end_dim=1)


class UnflattenTime(nn.Module):
    """(batch·time, *features) -> (batch, time, *features); give batch_size or num_timesteps
    (the robust choice, see SqueezeMixin)."""

    def __init__(self, batch_size: int | None = None, num_timesteps: int | None = None) -> None:
        super().__init__()
        self.batch_size, self.num_timesteps = _check_sizes("UnflattenTime", batch_size,
                                                           num_timesteps)

    def forward(self, x: Tensor) -> Tensor:
        unfolded = unflatten_time("UnflattenTime", x, self.batch_size, self.num_timesteps)
        _warn_if_time_changed(self, "UnflattenTime", unfolded.shape[1])
        return unfolded

    def extra_repr(self) -> str:
        return _sizes_repr(self.batch_size, self.num_timesteps)


def _sizes_repr(batch_size: int, num_timesteps: int) -> str:
    return ", ".join(f"{name}={n}" for name, n in (("batch_size", batch_size),
                                                  ("num_timesteps", num_timesteps)) if n > 0)


class SqueezeMixin:
    """Makes a spiking layer take (batch·time, *features): unfold, run, fold back.

    Put it first in the bases, e.g. ``class LIFSqueeze(SqueezeMixin, LIF)``. As in sinabs,
    ``batch_size`` and ``num_timesteps`` are the only positional arguments (the layer's own
    pass through as keywords), ints with -1 for the one not given, and may be changed later
    (``set_batch_size``).

    ``num_timesteps`` is the robust choice: the batch size is then read from each input, so a
    smaller last batch is unfolded right. With only ``batch_size`` an input of another batch
    size whose frame count is still divisible by it is unfolded into the wrong samples (as in
    sinabs); the layer warns (once) when the time steps it infers differ from its first call's.
    """

    def __init__(self, batch_size: int | None = None, num_timesteps: int | None = None,
                 **kwargs) -> None:
        # sinabs' order: the two sizes are the only positional arguments, the layer's are
        # keywords.
        super().__init__(**kwargs)
        self.batch_size, self.num_timesteps = _check_sizes(type(self).__name__, batch_size,
                                                           num_timesteps)

    def forward(self, x: Tensor) -> Tensor:
        unfolded = unflatten_time(type(self).__name__, x, self.batch_size, self.num_timesteps)
        _warn_if_time_changed(self, type(self).__name__, unfolded.shape[1])
        return super().forward(unfolded).flatten(0, 1)

    @property
    def _param_dict(self) -> dict:
        return {**super()._param_dict, "batch_size": self.batch_size,
                "num_timesteps": self.num_timesteps}

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {_sizes_repr(self.batch_size, self.num_timesteps)}"


def set_batch_size(model: nn.Module, batch_size: int) -> None:
    """Set the batch size of every Squeeze layer inside model (sinabs' ``set_batch_size``)."""
    for module in model.modules():
        if isinstance(module, (SqueezeMixin, UnflattenTime)):
            module.batch_size = _size(type(module).__name__, "batch_size", batch_size)
