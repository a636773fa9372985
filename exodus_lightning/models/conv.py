"""Convolutional SNN for event cameras (NMNIST, DVS Gesture)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm as apply_weight_norm

from exodus_lightning.models.neurons import readout_layer, spiking_layer
from exodus_lightning.models.time_folded import TimeFolded


class ConvSNN(nn.Module):
    """[conv -> (batch norm) -> spiking neurons -> avg-pool 2 -> dropout] per `channels` entry
    -> linear -> readout.

    Input (batch, time, C, H, W); output (batch, time, num_classes). Convs, norms and pooling
    run on folded time (batch·time frames at once), the neurons on (batch, time, C, H, W).
    Every block halves H and W (rounding down). The EXODUS paper's DVS Gesture network
    (32 x 32 input, T = 300) is configs/dvs_gesture.yaml.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        channels: Sequence[int] = (8, 16, 32, 64),
        kernel_size: int = 3,
        neuron: Literal["lif", "iaf"] = "lif",
        tau_mem: float = 10.0,
        tau_syn: float | None = None,
        spike_threshold: float = 1.0,
        max_spikes_per_step: int | None = None,
        norm_input: bool = False,
        gradient: Literal["exodus", "slayer"] = "exodus",
        backend: Literal["auto", "extension", "reference"] = "auto",
        readout: Literal["exp_leak", "lif", "linear"] = "exp_leak",
        readout_tau_mem: float = 10.0,
        readout_norm_input: bool = False,
        train_readout_tau: bool = True,
        dropout: float = 0.0,
        weight_norm: bool = False,
        batch_norm: bool = False,
    ) -> None:
        """Args as FeedForwardSNN, plus channels (one conv block each), kernel_size (odd, same
        padding), weight_norm (reparametrise conv and linear weights as g · v / |v|) and
        batch_norm (BatchNorm2d after each conv, statistics over batch and time).
        """
        super().__init__()
        if len(input_shape) != 3:
            raise ValueError(
                f"input_shape={tuple(input_shape)} must be (channels, height, width) for ConvSNN; "
                "use FeedForwardSNN for (channels,) inputs"
            )
        if not channels:
            raise ValueError("channels must name at least one conv block, e.g. [8, 16, 32, 64]")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size={kernel_size} must be odd (same padding), e.g. 3")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout={dropout} must lie in [0, 1)")
        self.input_shape = tuple(int(n) for n in input_shape)
        in_channels, height, width = self.input_shape
        if min(height, width) < 2 ** len(channels):
            raise ValueError(
                f"input {height} x {width} is too small for {len(channels)} conv blocks (each "
                f"halves it): use at most {max(min(height, width).bit_length() - 1, 0)} entries "
                "in channels"
            )

        def normed(layer: nn.Module) -> nn.Module:
            return apply_weight_norm(layer) if weight_norm else layer

        layers: list[nn.Module] = []
        for out_channels in channels:
            conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
            layers.append(TimeFolded(normed(conv)))
            if batch_norm:
                layers.append(TimeFolded(nn.BatchNorm2d(out_channels)))
            layers.append(
                spiking_layer(
                    neuron, tau_mem, tau_syn, spike_threshold, max_spikes_per_step,
                    norm_input, gradient, backend,
                )
            )
            layers.append(TimeFolded(nn.AvgPool2d(2)))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            in_channels = out_channels
            height, width = height // 2, width // 2
        features = in_channels * height * width
        layers.append(nn.Flatten(start_dim=2))
        layers.append(normed(nn.Linear(features, num_classes)))
        layers.append(readout_layer(readout, readout_tau_mem, spike_threshold, gradient, backend,
                                    readout_norm_input, train_readout_tau))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """(batch, time, C, H, W) -> (batch, time, num_classes)."""
        if tuple(x.shape[2:]) != self.input_shape:
            raise ValueError(
                f"{type(self).__name__} expects input (batch, time, *{self.input_shape}), got "
                f"{tuple(x.shape)}; set input_shape to the data's shape"
            )
        return self.layers(x)
