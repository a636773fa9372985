"""Folding time into the batch axis for conv stacks: (batch, time, ...) <-> (batch·time, ...).

Conv and pooling layers take (N, C, H, W); spiking layers need (batch, time, C, H, W). A network
either folds time once at its input (``FlattenTime``) and uses the ``*Squeeze`` spiking layers,
which unfold and refold around their own dynamics, or unfolds explicitly (``UnflattenTime``).
"""

from __future__ import annotations

from torch import Tensor, nn


def _check_sizes(owner: str, batch_size: int | None, num_timesteps: int | None) -> None:
    given = [n for n in (batch_size, num_timesteps) if n is not None]
    if len(given) != 1:
        raise ValueError(f"{owner} needs exactly one of batch_size or num_timesteps to unfold "
                         f"(batch*time, ...) into (batch, time, ...), got batch_size="
                         f"{batch_size!r} and num_timesteps={num_timesteps!r}")
    value = given[0]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        name = "batch_size" if batch_size is not None else "num_timesteps"
        raise ValueError(f"{owner}: {name} must be an int >= 1, got {value!r}")


def unflatten_time(owner: str, x: Tensor, batch_size: int | None,
                   num_timesteps: int | None) -> Tensor:
    """(batch·time, *features) -> (batch, time, *features), from one of the two sizes."""
    if x.dim() < 1:
        raise ValueError(f"{owner} expects input of shape (batch*time, *features), got a scalar")
    known = batch_size if batch_size is not None else num_timesteps
    if x.shape[0] % known != 0:
        name = "batch_size" if batch_size is not None else "num_timesteps"
        raise ValueError(f"{owner}: the first axis of the input {tuple(x.shape)} is batch*time "
                         f"and must be divisible by {name}={known}")
    other = x.shape[0] // known
    sizes = (known, other) if batch_size is not None else (other, known)
    return x.unflatten(0, sizes)


class FlattenTime(nn.Flatten):
    """(batch, time, *features) -> (batch·time, *features)."""

    def __init__(self) -> None:
        super().__init__(start_dim=0, end_dim=1)


class UnflattenTime(nn.Module):
    """(batch·time, *features) -> (batch, time, *features); give batch_size or num_timesteps."""

    def __init__(self, batch_size: int | None = None, num_timesteps: int | None = None) -> None:
        super().__init__()
        _check_sizes("UnflattenTime", batch_size, num_timesteps)
        self.batch_size = batch_size
        self.num_timesteps = num_timesteps

    def forward(self, x: Tensor) -> Tensor:
        return unflatten_time("UnflattenTime", x, self.batch_size, self.num_timesteps)

    def extra_repr(self) -> str:
        if self.batch_size is not None:
            return f"batch_size={self.batch_size}"
        return f"num_timesteps={self.num_timesteps}"


class SqueezeMixin:
    """Makes a spiking layer take (batch·time, *features): unfold, run, fold back.

    Put it first in the bases, e.g. ``class LIFSqueeze(SqueezeMixin, LIF)``; the layer's own
    constructor keywords pass through.
    """

    def __init__(self, *args, batch_size: int | None = None, num_timesteps: int | None = None,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        _check_sizes(type(self).__name__, batch_size, num_timesteps)
        self.batch_size = batch_size
        self.num_timesteps = num_timesteps

    def forward(self, x: Tensor) -> Tensor:
        unfolded = unflatten_time(type(self).__name__, x, self.batch_size, self.num_timesteps)
        return super().forward(unfolded).flatten(0, 1)

    def extra_repr(self) -> str:
        sizes = (f"batch_size={self.batch_size}" if self.batch_size is not None
                 else f"num_timesteps={self.num_timesteps}")
        return f"{super().extra_repr()}, {sizes}"
