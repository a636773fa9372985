"""DelaySNN (the DCLS-delays network) and TimeSharedDropout: layers, shapes, the paper's
neuron settings, delay gradients (finite differences where the path is smooth), rounding."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from exodus_lightning import nn as enn
from exodus_lightning.models import DelaySNN, TimeSharedDropout
from exodus_lightning.models.delays import PAPER_TAU_MEM, tau_from_spikingjelly
from exodus_lightning.nn.surrogate import ArcTan


def delay_layers(network):
    return [m for m in network.modules() if isinstance(m, enn.DelayedLinear)]


def test_paper_shd_network_has_the_papers_layers():
    network = DelaySNN((140,), 20)
    assert [(m.in_features, m.out_features, m.max_delay) for m in delay_layers(network)] == [
        (140, 256, 25), (256, 256, 25), (256, 20, 25)]
    assert all(m.bias is None and m.delay_scale == 100 for m in delay_layers(network))
    lifs = [m for m in network.modules() if isinstance(m, enn.LIF)]
    assert len(lifs) == 2
    for lif in lifs:
        assert lif.max_spikes_per_step == 1 and lif._reset == "zero" and not lif.norm_input
        assert lif.surrogate_grad_fn == ArcTan(alpha=5.0) and lif.gradient == "slayer"
        assert not lif.tau_mem.requires_grad  # fixed, as spikingjelly's LIFNode
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in network.modules()) == 2
    assert sum(isinstance(m, TimeSharedDropout) for m in network.modules()) == 2
    assert isinstance(network.layers[-1], enn.ExpLeak)


def test_spikingjelly_time_constant_gives_the_same_decay():
    # spikingjelly: v ← (1 − 1/τ)·v + x;  ours: v ← exp(−1/τ_mem)·v + x.
    assert math.exp(-1 / PAPER_TAU_MEM) == pytest.approx(1 - 1 / 1.005, rel=1e-12)
    assert math.exp(-1 / tau_from_spikingjelly(1.5)) == pytest.approx(1 / 3, rel=1e-12)
    with pytest.raises(ValueError, match="tau must be > 1"):
        tau_from_spikingjelly(1.0)


@pytest.mark.parametrize(("extend_time", "extra"), [(True, 3 * 12), (False, 0)])
def test_output_shape_and_the_appended_steps(extend_time, extra):
    network = DelaySNN((2, 5), 4, hidden_sizes=(8, 6), extend_time=extend_time,
                       backend="reference")
    out = network(torch.rand(3, 30, 2, 5))
    assert out.shape == (3, 30 + extra, 4)
    one = DelaySNN((10,), 4, hidden_sizes=(8,), max_delay=6, backend="reference")
    assert one(torch.rand(1, 7, 10)).shape == (1, 7 + 2 * 2, 4)


def test_wrong_input_shape_says_what_to_set():
    with pytest.raises(ValueError, match=r"set input_shape"):
        DelaySNN((10,), 4, hidden_sizes=(8,))(torch.rand(2, 5, 11))
    with pytest.raises(ValueError, match="reset must be one of"):
        DelaySNN((10,), 4, reset="hard")
    with pytest.raises(ValueError, match="hidden_sizes must name"):
        DelaySNN((10,), 4, hidden_sizes=())


def spike_input(batch=4, steps=40, channels=12):
    return (torch.rand(batch, steps, channels) < 0.3).double()


def small_network(**kwargs):
    settings = dict(hidden_sizes=(16,), max_delay=7, tau_mem=5.0, spike_threshold=0.5,
                    readout_tau_mem=5.0, dropout=0.0, backend="reference")
    return DelaySNN((12,), 3, **(settings | kwargs)).double()


def test_every_delay_layer_gets_a_gradient():
    network = small_network(hidden_sizes=(16, 16), dropout=0.2).train()
    out = network(spike_input())
    F.cross_entropy(out.mean(1), torch.tensor([0, 1, 2, 0])).backward()
    for layer in delay_layers(network):
        assert layer.delay_param.grad is not None and layer.delay_param.grad.abs().sum() > 0
        assert layer.weight.grad.abs().sum() > 0


def test_readout_delay_gradient_matches_finite_differences():
    """Through the readout layer the loss is smooth in the delays (the spikes before it do not
    move), so autograd must equal central differences there, entry by entry."""
    network = small_network().eval()  # batch norm on running statistics, no dropout
    for layer in delay_layers(network):
        layer.round_delays = "never"  # Gaussian delays in eval too
    x, targets = spike_input(), torch.tensor([0, 1, 2, 0])

    def loss() -> torch.Tensor:
        enn.reset_states(network)  # every call from rest, as the first
        return F.cross_entropy(network(x).mean(1), targets)

    readout = delay_layers(network)[-1]
    loss().backward()
    grad = readout.delay_param.grad.clone()
    assert grad.abs().sum() > 0
    eps = 1e-6
    with torch.no_grad():
        for o, i in [(0, 0), (1, 5), (2, 15), (0, 9)]:
            readout.delay_param[o, i] += eps
            up = loss()
            readout.delay_param[o, i] -= 2 * eps
            down = loss()
            readout.delay_param[o, i] += eps
            assert grad[o, i].item() == pytest.approx(((up - down) / (2 * eps)).item(),
                                                      rel=1e-6, abs=1e-9)


def test_a_few_adam_steps_lower_the_loss():
    torch.manual_seed(1)
    network = small_network(hidden_sizes=(16, 16)).train()
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-2)
    x, targets = spike_input(batch=8), torch.arange(8) % 3
    losses = []
    for _ in range(15):
        optimizer.zero_grad()
        loss = F.cross_entropy(network(x).mean(1), targets)
        loss.backward()
        optimizer.step()
        enn.reset_states(network)
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
    assert all(0 <= m.delays.min() and m.delays.max() <= 6 for m in delay_layers(network))


def test_eval_uses_rounded_delays():
    network = small_network().eval()
    x = spike_input()
    evaluated = network(x)
    enn.reset_states(network)
    for layer in delay_layers(network):
        layer.round_delays = "always"
    torch.testing.assert_close(network(x), evaluated, rtol=0, atol=0)
    enn.reset_states(network)
    for layer in delay_layers(network):
        layer.round_delays = "never"
    assert not torch.allclose(network(x), evaluated)


def test_time_shared_dropout_keeps_one_mask_over_time():
    dropout = TimeSharedDropout(0.5).train()
    y = dropout(torch.ones(3, 10, 40))
    assert set(y.unique().tolist()) <= {0.0, 2.0}
    assert (y == y[:, :1]).all()  # the same at every step
    assert 0 < (y[:, 0] == 0).float().mean() < 1
    x = torch.rand(2, 5, 4)
    assert torch.equal(dropout.eval()(x), x)
    with pytest.raises(ValueError, match=r"p=1.0 must lie in \[0, 1\)"):
        TimeSharedDropout(1.0)
    with pytest.raises(ValueError, match=r"\(batch, time, features\)"):
        dropout(torch.rand(2, 5))
