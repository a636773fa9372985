"""Element-wise input gain: NIR's Scale node, and the gain of a neuron whose r or w_in is not
one of ours (see ``convention``)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Scale(nn.Module):
    """y = x ⊙ s over (batch, time, *features), s of the feature shape (or broadcastable)."""

    def __init__(self, scale: Tensor) -> None:
        super().__init__()
        scale = torch.as_tensor(scale)
        if not scale.is_floating_point():
            scale = scale.to(torch.get_default_dtype())
        self.register_buffer("scale", scale.clone())  # float64 kept: .to() rounds it once

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale.to(x.dtype)

    def extra_repr(self) -> str:
        return f"shape={tuple(self.scale.shape)}"
