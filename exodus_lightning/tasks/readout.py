"""Readout losses: how a network's output over time, (batch, time, classes), becomes a class.

    spike_count    logits = Σ_t out_t          (spiking readout: the most spikes wins)
    max_membrane   logits = max_t out_t        (non-spiking readout membrane)
    mean_membrane  logits = (1/T) Σ_t out_t    (non-spiking readout membrane)
    per_step       loss = (1/T) Σ_t CE(out_t, y); logits = (1/T) Σ_t out_t
    softmax_sum    logits = Σ_t softmax(out_t)  (the class probabilities of every step summed,
                   then cross-entropy on them as SE-adLIF's and the DCLS-delays papers' code do)

The loss is cross-entropy on the logits (per step for per_step).
"""

from __future__ import annotations

from typing import Literal, get_args

import torch.nn.functional as F
from torch import Tensor

from exodus_lightning.ops import check_choice

ReadoutLoss = Literal["spike_count", "max_membrane", "mean_membrane", "per_step", "softmax_sum"]
READOUT_LOSSES: tuple[str, ...] = get_args(ReadoutLoss)


def check_readout_loss(name: str) -> None:
    check_choice("readout_loss", name, READOUT_LOSSES)


def readout_logits(outputs: Tensor, name: str) -> Tensor:
    """(batch, time, classes) -> class scores (batch, classes)."""
    if outputs.dim() != 3:
        raise ValueError(
            f"the network must return (batch, time, classes), got shape {tuple(outputs.shape)}"
        )
    if name == "spike_count":
        return outputs.sum(1)
    if name == "max_membrane":
        return outputs.max(1).values
    if name == "softmax_sum":
        return outputs.softmax(-1).sum(1)
    return outputs.mean(1)


def readout_loss(outputs: Tensor, targets: Tensor, name: str) -> Tensor:
    """Cross-entropy of the readout `name` for outputs (batch, time, classes), targets (batch,)."""
    if name == "per_step":
        time_steps = outputs.shape[1]
        return F.cross_entropy(outputs.flatten(0, 1), targets.repeat_interleave(time_steps))
    return F.cross_entropy(readout_logits(outputs, name), targets)
