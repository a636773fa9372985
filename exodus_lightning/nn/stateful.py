"""Base class of layers whose neurons keep state (v_mem, i_syn) across forward calls.

A state is a tensor of shape (batch, *features). It is created lazily (zeros) by the first
forward call, re-created as zeros when the batch size or the feature shape changes, and kept
otherwise, so consecutive calls continue the dynamics (streaming inference, truncated BPTT).
Between calls the state still carries its autograd graph: a backward pass through the second
call reaches the first one, until ``detach_states()`` or ``reset_states()`` cuts it.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from exodus_lightning.ops import state_dtype


class StatefulLayer(nn.Module):
    """A layer with named states that persist across forward calls.

    States are non-persistent buffers: they follow ``.to()``/``.cuda()``/``.double()`` and
    ``copy.deepcopy`` but stay out of ``state_dict``, so a checkpoint does not depend on the
    batch size it was saved with. State entries found in a checkpoint (sinabs saves them) are
    ignored on load.
    """

    def __init__(self, state_names: Sequence[str]) -> None:
        super().__init__()
        self.state_names = tuple(state_names)
        for name in self.state_names:
            self.register_buffer(name, None, persistent=False)

    def is_state_initialised(self) -> bool:
        """True once every state has been created."""
        return all(getattr(self, name) is not None for name in self.state_names)

    def init_state_with_shape(
        self,
        shape: Sequence[int],
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        """Create every state as zeros of shape (batch, *features)."""
        shape = tuple(int(n) for n in shape)
        if len(shape) < 1 or any(n < 1 for n in shape):
            raise ValueError(f"shape must be (batch, *features) with positive sizes, got {shape}")
        for name in self.state_names:
            setattr(self, name, torch.zeros(shape, device=device, dtype=dtype))

    def reset_states(self) -> None:
        """Set every created state to zero and cut its autograd graph."""
        for name in self.state_names:
            state = getattr(self, name)
            if state is not None:
                # A new tensor, not zero_(): the old one may be saved for a pending backward.
                setattr(self, name, torch.zeros_like(state))

    def detach_states(self) -> None:
        """Keep the state values but cut their autograd graph (truncated BPTT)."""
        for name in self.state_names:
            state = getattr(self, name)
            if state is not None:
                setattr(self, name, state.detach())

    def prepare_states(self, x: Tensor) -> None:
        """Make every state fit input x of shape (batch, time, *features).

        Missing states, or states of another batch size or feature shape, become zeros. States
        on another device or of another dtype are converted, keeping values and graph.
        """
        shape = (x.shape[0], *x.shape[2:])
        dtype = state_dtype(x)
        for name in self.state_names:
            state = getattr(self, name)
            if state is None or tuple(state.shape) != shape:
                setattr(self, name, x.new_zeros(shape, dtype=dtype))
            elif state.dtype != dtype or state.device != x.device:
                setattr(self, name, state.to(device=x.device, dtype=dtype))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # States are transient; sinabs checkpoints carry them, so drop them instead of failing.
        for name in self.state_names:
            state_dict.pop(prefix + name, None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def __deepcopy__(self, memo: dict) -> StatefulLayer:
        # A state inside an autograd graph cannot be deep-copied: the copy gets its value only.
        new = self.__class__.__new__(self.__class__)
        memo[id(self)] = new
        attributes = dict(self.__dict__)
        attributes["_buffers"] = {
            name: (value.detach() if name in self.state_names and value is not None else value)
            for name, value in self._buffers.items()
        }
        new.__setstate__(copy.deepcopy(attributes, memo))
        return new


def reset_states(module: nn.Module) -> None:
    """Zero the states of every StatefulLayer inside module (and detach them)."""
    for layer in module.modules():
        if isinstance(layer, StatefulLayer):
            layer.reset_states()


def detach_states(module: nn.Module) -> None:
    """Detach the states of every StatefulLayer inside module, keeping their values."""
    for layer in module.modules():
        if isinstance(layer, StatefulLayer):
            layer.detach_states()
