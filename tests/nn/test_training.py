"""A small conv SNN on NMNIST-shaped input trains on CPU: its loss falls."""

from __future__ import annotations

import torch

from exodus_lightning import nn as enn

BATCH, TIME = 8, 8


def make_batch(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(batch, time, 2, 34, 34) events: class 0 fires in the left half of channel 0, class 1 in
    the right half of channel 1, over background noise."""
    labels = torch.randint(0, 2, (BATCH,), generator=g)
    rate = torch.full((BATCH, TIME, 2, 34, 34), 0.02)
    for b, label in enumerate(labels.tolist()):
        columns = slice(0, 17) if label == 0 else slice(17, 34)
        rate[b, :, label, :, columns] = 0.3
    return torch.bernoulli(rate, generator=g), labels


def make_network() -> torch.nn.Sequential:
    """conv-LIF, conv-LIF, linear-ExpLeak readout, on (batch·time, C, H, W) inside."""
    return torch.nn.Sequential(
        enn.FlattenTime(),
        torch.nn.Conv2d(2, 8, 3, stride=2, padding=1),
        enn.LIFSqueeze(tau_mem=5.0, norm_input=False, batch_size=BATCH),
        torch.nn.AvgPool2d(2),
        torch.nn.Conv2d(8, 16, 3, padding=1),
        enn.LIFSqueeze(tau_mem=torch.full((16, 1, 1), 5.0), norm_input=False,
                       batch_size=BATCH),
        torch.nn.AvgPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(16 * 4 * 4, 2),
        enn.ExpLeakSqueeze(tau_mem=4.0, batch_size=BATCH),
        enn.UnflattenTime(batch_size=BATCH),
    )


def test_conv_snn_loss_falls():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    net = make_network()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        x, labels = make_batch(g)
        enn.reset_states(net)
        logits = net(x).mean(1)
        loss = torch.nn.functional.cross_entropy(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-3:]) / 3 < 0.5 * losses[0], losses
    # The time constants are trained too.
    assert net[5].tau_mem.grad is not None and net[5].tau_mem.grad.abs().sum() > 0
