"""Helpers of the gradient experiments: variant switches, relative error, calibration, networks."""

from __future__ import annotations

import math

import pytest
import torch

from exodus_lightning import nn as enn
from experiments import common


def test_set_variant_switches_every_layer():
    model = common.conv_snn((2, 8, 8), (4,), 3, lambda: enn.IAF(tau_syn=4.0))
    model.append(enn.ExpLeak(tau_mem=5.0))
    for variant, switches in common.VARIANTS.items():
        common.set_variant(model, variant)
        layers = common.spiking_layers(model)
        assert len(layers) == 2
        assert all(layer.gradient == switches["gradient"] for layer in layers)
        assert all(layer.backend == switches["backend"] for layer in layers)
        assert model[-1].backend == switches["backend"]


def test_variant_copy_keeps_weights_and_not_the_original():
    model = common.dense_snn((5, 6, 3), lambda: enn.LIF(tau_mem=10.0))
    clone = common.variant_copy(model, "slayer")
    assert torch.equal(clone[0].weight, model[0].weight)
    assert clone[1].gradient == "slayer" and model[1].gradient == "exodus"


def test_relative_error():
    reference = torch.tensor([3.0, 4.0])
    assert common.relative_error(reference, reference) == 0.0
    assert common.relative_error(torch.tensor([3.0, 5.0]), reference) == pytest.approx(0.2)
    assert common.relative_error(torch.zeros(2), torch.zeros(2)) == 0.0
    assert common.relative_error(torch.ones(2), torch.zeros(2)) == math.inf


def test_calibrate_brings_every_layer_to_the_target_rate():
    torch.manual_seed(0)
    network = common.dense_snn((10, 16, 16, 16), lambda: enn.LIF(tau_mem=10.0, norm_input=False))
    model = common.set_variant(network, "exodus")
    x = (torch.rand(4, 30, 10) < 0.1).float()
    rates = common.calibrate_(model, x, target_rate=0.1)
    assert len(rates) == 3
    assert all(0.07 < rate < 0.13 for rate in rates), rates


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_networks_are_bias_free_stacks_of_one_neuron(kind):
    """calibrate_ scales weights only: a bias would keep neurons firing at any scale."""
    torch.manual_seed(0)
    if kind == "dense":
        model = common.dense_snn((6, 5, 4, 3), lambda: enn.IAF(min_v_mem=-1.0))
        x = torch.rand(2, 7, 6)
    else:
        model = common.conv_snn((2, 8, 8), (4, 5), 3, lambda: enn.IAF(min_v_mem=-1.0))
        x = torch.rand(2, 7, 2, 8, 8)
    assert all(layer.bias is None for layer in common.weight_layers(model))
    neurons = common.spiking_layers(model)
    assert len(neurons) == len(common.weight_layers(model)) == 3
    assert all(type(n) is enn.IAF and n.min_v_mem.item() == -1.0 for n in neurons)
    assert model(x).shape == (2, 7, 3)
