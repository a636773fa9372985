"""FeedForwardSNN: shapes, the paper's SHD network, the neuron/gradient/backend switches."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from exodus_lightning import nn as enn
from exodus_lightning.models import FeedForwardSNN


def test_paper_shd_network_has_the_papers_layers():
    network = FeedForwardSNN((100,), 20, hidden_sizes=(128, 128))
    linears = [m for m in network.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(100, 128), (128, 128),
                                                                   (128, 20)]
    assert sum(isinstance(m, enn.LIF) for m in network.modules()) == 2
    assert isinstance(network.layers[-1], enn.ExpLeak)
    out = network(torch.rand(3, 7, 100))
    assert out.shape == (3, 7, 20)


def test_multidimensional_input_is_flattened_per_step():
    network = FeedForwardSNN((2, 3, 4), 5, hidden_sizes=(8,))
    assert network(torch.rand(2, 6, 2, 3, 4)).shape == (2, 6, 5)


@pytest.mark.parametrize(
    ("neuron", "layer_type"), [("lif", enn.LIF), ("iaf", enn.IAF)]
)
def test_neuron_kind_and_parameters_reach_the_layers(neuron, layer_type):
    network = FeedForwardSNN((4,), 3, hidden_sizes=(6, 6), neuron=neuron, tau_mem=7.0,
                             spike_threshold=0.3, max_spikes_per_step=1, gradient="slayer",
                             backend="reference")
    layers = [m for m in network.modules() if isinstance(m, enn.LIF)
              and m is not network.layers[-1]]
    assert len(layers) == 2
    for layer in layers:
        assert type(layer) is layer_type
        assert layer.spike_threshold.item() == pytest.approx(0.3)
        assert layer.max_spikes_per_step == 1
        assert layer.gradient == "slayer" and layer.backend == "reference"
        if neuron == "lif":
            assert layer.tau_mem.item() == pytest.approx(7.0)


def test_extension_and_reference_backends_agree():
    torch.manual_seed(0)
    fused = FeedForwardSNN((10,), 4, hidden_sizes=(16,), spike_threshold=0.2,
                           backend="extension")
    bptt = FeedForwardSNN((10,), 4, hidden_sizes=(16,), spike_threshold=0.2,
                          backend="reference")
    bptt.load_state_dict(fused.state_dict())
    x = (torch.rand(4, 20, 10) < 0.3).float()
    out_fused, out_bptt = fused(x), bptt(x)
    torch.testing.assert_close(out_fused, out_bptt, rtol=1e-5, atol=1e-5)
    out_fused.square().sum().backward()
    out_bptt.square().sum().backward()
    weight_fused, weight_bptt = fused.layers[1].weight.grad, bptt.layers[1].weight.grad
    assert weight_fused.abs().sum() > 0
    torch.testing.assert_close(weight_fused, weight_bptt, rtol=1e-4, atol=1e-5)


def test_slayer_gradient_differs_from_exodus():
    torch.manual_seed(0)
    exodus = FeedForwardSNN((10,), 4, hidden_sizes=(16,), spike_threshold=0.1)
    slayer = FeedForwardSNN((10,), 4, hidden_sizes=(16,), spike_threshold=0.1,
                            gradient="slayer")
    slayer.load_state_dict(exodus.state_dict())
    x = (torch.rand(4, 20, 10) < 0.5).float()
    torch.testing.assert_close(exodus(x), slayer(x))  # same forward pass
    exodus(x).square().sum().backward()
    slayer(x).square().sum().backward()
    assert not torch.allclose(exodus.layers[1].weight.grad, slayer.layers[1].weight.grad)


@pytest.mark.parametrize(
    ("readout", "spiking"), [("exp_leak", False), ("lif", True), ("linear", False)]
)
def test_readouts(readout, spiking):
    network = FeedForwardSNN((5,), 3, hidden_sizes=(8,), readout=readout)
    out = network(torch.rand(2, 9, 5))
    assert out.shape == (2, 9, 3)
    integer_valued = bool((out == out.round()).all() and (out >= 0).all())
    assert integer_valued == spiking


def test_dropout_is_a_layer_after_each_hidden_layer():
    network = FeedForwardSNN((5,), 3, hidden_sizes=(8, 8), dropout=0.25)
    assert sum(isinstance(m, torch.nn.Dropout) for m in network.modules()) == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hidden_sizes": ()}, "hidden_sizes"),
        ({"dropout": 1.0}, "dropout"),
        ({"neuron": "izhikevich"}, "neuron"),
        ({"readout": "softmax"}, "readout"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FeedForwardSNN((5,), 3, **kwargs)


def test_wrong_input_shape_says_what_was_expected():
    network = FeedForwardSNN((5,), 3, hidden_sizes=(8,))
    with pytest.raises(ValueError, match=r"expects input \(batch, time, \*\(5,\)\)"):
        network(torch.rand(2, 9, 6))


@pytest.mark.parametrize(("neuron", "recurrent", "layer_type"), [
    ("alif", False, enn.ALIF), ("alif", True, enn.ALIFRecurrent),
    ("lif", True, enn.LIFRecurrent), ("iaf", True, enn.IAFRecurrent),
])
def test_adaptive_and_recurrent_hidden_layers(neuron, recurrent, layer_type):
    network = FeedForwardSNN((4,), 3, hidden_sizes=(6, 5), neuron=neuron, recurrent=recurrent,
                             tau_adapt=50.0, adapt_scale=2.5, spike_threshold=0.3)
    hidden = [m for m in network.modules() if isinstance(m, enn.SpikingLayer)
              and m is not network.layers[-1]]
    assert [type(m) for m in hidden] == [layer_type, layer_type]
    if recurrent:
        assert [m.rec_connect.weight.shape for m in hidden] == [(6, 6), (5, 5)]
    if neuron == "alif":
        assert hidden[0].tau_adapt.item() == pytest.approx(50.0)
        assert hidden[0].adapt_scale.item() == pytest.approx(2.5)
        assert hidden[0].max_spikes_per_step is None  # None = multi-spike, as for LIF
    x = (torch.rand(2, 15, 4) < 0.4).float()
    out = network(x)
    assert out.shape == (2, 15, 3)
    out.square().sum().backward()
    assert network.layers[1].weight.grad.abs().sum() > 0


def _leaky_integrator_readout(currents: torch.Tensor, tau: float) -> torch.Tensor:
    """SE-adLIF's readout (Baronig et al. 2025, its LI layer): u_t = α·u_{t−1} + (1 − α)·I_t."""
    alpha = torch.exp(torch.tensor(-1.0 / tau))
    u, out = torch.zeros_like(currents[:, 0]), []
    for current in currents.unbind(1):
        u = alpha * u + (1 - alpha) * current
        out.append(u)
    return torch.stack(out, 1)


@pytest.mark.parametrize("config", ["shd_adlif", "ssc_adlif"])
def test_se_adlif_configs_have_the_authors_normalised_readout(config):
    yaml = pytest.importorskip("yaml")
    path = Path(__file__).resolve().parents[2] / "configs" / f"{config}.yaml"
    init_args = yaml.safe_load(path.read_text())["model"]["network"]["init_args"]
    network = FeedForwardSNN((140,), 20, **init_args | {"hidden_sizes": [48]})
    captured = {}
    network.layers[-2].register_forward_hook(lambda module, args, out: captured.update(
        spikes=args[0], currents=out))
    x = torch.rand(3, 30, 140) * 6  # strong enough for the adLIF layers to spike
    out = network(x)
    assert captured["spikes"].sum() > 0  # the readout sees spikes, not only its bias
    torch.testing.assert_close(
        out, _leaky_integrator_readout(captured["currents"], init_args["readout_tau_mem"]))


def test_readout_norm_input_needs_readout_neurons():
    plain = FeedForwardSNN((4,), 3, hidden_sizes=(8,), readout_tau_mem=15.0)
    normed = FeedForwardSNN((4,), 3, hidden_sizes=(8,), readout_tau_mem=15.0,
                            readout_norm_input=True)
    normed.load_state_dict(plain.state_dict())
    x = torch.rand(2, 10, 4) * 3
    network_gain = 1 / (1 - torch.exp(torch.tensor(-1 / 15.0)))
    torch.testing.assert_close(plain(x), normed(x) * network_gain)
    with pytest.raises(ValueError, match="readout_norm_input=True needs neurons"):
        FeedForwardSNN((4,), 3, readout="linear", readout_norm_input=True)


def _readout_tau_after_an_adam_step(network: torch.nn.Module, x: torch.Tensor) -> float:
    optimizer = torch.optim.Adam(network.parameters(), lr=0.1)
    network(x).square().sum().backward()
    optimizer.step()
    return network.layers[-1].tau_mem.item()


@pytest.mark.parametrize("readout", ["exp_leak", "lif"])
@pytest.mark.parametrize("train", [True, False])
def test_train_readout_tau_switch_moves_or_freezes_the_readout_tau(readout, train):
    torch.manual_seed(0)
    network = FeedForwardSNN((5,), 3, hidden_sizes=(8,), spike_threshold=0.2, readout=readout,
                             readout_tau_mem=15.0, train_readout_tau=train)
    assert network.layers[-1].tau_mem.requires_grad == train
    tau = _readout_tau_after_an_adam_step(network, torch.rand(2, 9, 5) * 3)
    assert (tau != 15.0) == train
    assert network.layers[1].weight.grad.abs().sum() > 0  # the rest still trains


def test_train_readout_tau_false_needs_readout_neurons():
    with pytest.raises(ValueError, match="train_readout_tau=False needs neurons"):
        FeedForwardSNN((4,), 3, readout="linear", train_readout_tau=False)


@pytest.mark.parametrize("config", ["shd_adlif", "ssc_adlif"])
def test_se_adlif_configs_keep_the_readout_tau_fixed_as_the_authors(config):
    # SE-adLIF's LI readout has a fixed τ (their tau_out_range [15, 15], 'fixed' method).
    yaml = pytest.importorskip("yaml")
    path = Path(__file__).resolve().parents[2] / "configs" / f"{config}.yaml"
    init_args = yaml.safe_load(path.read_text())["model"]["network"]["init_args"]
    torch.manual_seed(0)
    network = FeedForwardSNN((140,), 20, **init_args | {"hidden_sizes": [48]})
    assert isinstance(network.layers[-1], enn.ExpLeak)
    assert _readout_tau_after_an_adam_step(network, torch.rand(3, 30, 140) * 6) == 15.0
    assert network.layers[-2].weight.grad.abs().sum() > 0
