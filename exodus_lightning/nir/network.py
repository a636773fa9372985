"""The network ``from_nir`` returns: a chain of our layers with the graph's input shape."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


class NIRNetwork(nn.Module):
    """(batch, time, *input_shape) -> (batch, time, *output_shape) through ``layers``.

    Built by :func:`exodus_lightning.nir.from_nir`; ``to_nir`` walks it like the built-in models.
    """

    def __init__(self, input_shape: Sequence[int], layers: nn.Sequential) -> None:
        super().__init__()
        self.input_shape = tuple(int(n) for n in input_shape)
        self.layers = layers

    def forward(self, x: Tensor) -> Tensor:
        """(batch, time, *input_shape) -> the graph's output over time."""
        if x.dim() < 2 or tuple(x.shape[2:]) != self.input_shape:
            raise ValueError(f"{type(self).__name__} expects input (batch, time, "
                             f"*{self.input_shape}) as the NIR graph's input node says, got "
                             f"{tuple(x.shape)}")
        return self.layers(x)
