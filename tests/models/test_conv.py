"""ConvSNN: shapes, folded-time convs, weight norm, batch norm, errors."""

from __future__ import annotations

import pytest
import torch

from exodus_lightning import nn as enn
from exodus_lightning.models import ConvSNN, TimeFolded


def test_dvs_gesture_shape_through_four_blocks():
    network = ConvSNN((2, 32, 32), 11, channels=(4, 4, 8, 8))
    out = network(torch.rand(2, 5, 2, 32, 32))
    assert out.shape == (2, 5, 11)
    assert network.layers[-2].in_features == 8 * 2 * 2
    assert sum(isinstance(m, enn.LIF) for m in network.modules()) == 4


def test_nmnist_size_rounds_down_when_pooling():
    network = ConvSNN((2, 34, 34), 10, channels=(4, 8))
    assert network(torch.rand(1, 3, 2, 34, 34)).shape == (1, 3, 10)
    assert network.layers[-2].in_features == 8 * 8 * 8  # 34 -> 17 -> 8


def test_time_folded_conv_equals_a_conv_per_step():
    conv = torch.nn.Conv2d(2, 3, 3, padding=1)
    x = torch.rand(2, 4, 2, 6, 6)
    per_step = torch.stack([conv(x[:, t]) for t in range(4)], 1)
    torch.testing.assert_close(TimeFolded(conv)(x), per_step)


def test_neurons_see_time_not_folded_frames():
    # Spikes depend on earlier steps: the output at step t changes when only step 0 changes.
    torch.manual_seed(0)
    network = ConvSNN((1, 8, 8), 2, channels=(4,), spike_threshold=0.05, readout="linear")
    x = torch.rand(1, 6, 1, 8, 8)
    changed = x.clone()
    changed[:, 0] += 1.0
    enn.reset_states(network)
    before = network(x)
    enn.reset_states(network)
    after = network(changed)
    assert not torch.allclose(before[:, 1:], after[:, 1:])


def test_weight_norm_and_batch_norm():
    network = ConvSNN((2, 16, 16), 3, channels=(4, 4), weight_norm=True, batch_norm=True,
                      dropout=0.1)
    convs = [m for m in network.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(hasattr(c, "parametrizations") and "weight" in c.parametrizations for c in convs)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in network.modules()) == 2
    assert sum(isinstance(m, torch.nn.Dropout) for m in network.modules()) == 2
    out = network(torch.rand(2, 3, 2, 16, 16))
    out.sum().backward()
    assert convs[0].parametrizations.weight.original0.grad is not None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_shape": (100,)}, "FeedForwardSNN"),
        ({"channels": ()}, "channels"),
        ({"kernel_size": 4}, "kernel_size"),
        ({"channels": (2,) * 6}, "too small for 6 conv blocks"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, message):
    arguments = {"input_shape": (2, 32, 32), "num_classes": 3, **kwargs}
    with pytest.raises(ValueError, match=message):
        ConvSNN(**arguments)


def test_train_readout_tau_false_freezes_the_readout_tau():
    trained = ConvSNN((2, 8, 8), 3, channels=(4,))
    frozen = ConvSNN((2, 8, 8), 3, channels=(4,), train_readout_tau=False)
    assert trained.layers[-1].tau_mem.requires_grad
    assert not frozen.layers[-1].tau_mem.requires_grad
