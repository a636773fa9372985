"""LIF/IAF layers against a hand-written float64 sinabs loop and against the reference backend."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings

from exodus_lightning import nn as enn
from exodus_lightning.nn import surrogate as sg
from tests.nn.cases import configs, loss_weights, make_case, run_layer, run_loop


def assert_same(got: dict, expected: dict, **tolerance) -> None:
    assert got.keys() == expected.keys()
    for name in expected:
        assert got[name] is not None and expected[name] is not None, name
        torch.testing.assert_close(got[name], expected[name], msg=lambda m, n=name: f"{n}: {m}",
                                   **tolerance)


@pytest.mark.parametrize("backend", ["extension", "reference"])
@settings(max_examples=30, deadline=None)
@given(cfg=configs)
def test_lif_matches_sinabs_loop(backend, cfg):
    case = make_case(cfg, backend=backend)
    weights = loss_weights(case)
    assert_same(run_layer(case, weights), run_loop(case, weights))


def test_cases_spike_and_clip():
    """The random cases are not trivial: they spike, multi-spike and hit the lower bound."""
    cfg = dict(seed=3, batch=3, time=12, features=(3, 2, 2), param_shape="neuron",
               max_spikes=None, reset="subtract", gradient="exodus", tau_syn=False, clip=True,
               norm_input=True, train_alphas=False)
    out = run_layer(make_case(cfg), loss_weights(make_case(cfg)))
    assert (out["spikes"] == 1).any() and (out["spikes"] >= 2).any()
    # A post-reset state exactly on the bound means the clip of that step was active.
    assert (out["v_mem"] == make_case(cfg).layer.min_v_mem.expand_as(out["v_mem"])).any()


def _gaussian_like(v, threshold):
    # A user surrogate (not a built-in): the extension evaluates it in Python.
    return torch.exp(-((v - threshold) ** 2) / 0.5) / math.sqrt(0.5 * math.pi)


SURROGATES = [
    sg.SingleExponential(grad_width=0.3, grad_scale=0.8),
    sg.PeriodicExponential(grad_width=0.4),
    sg.Heaviside(window=0.5),
    sg.Gaussian(sigma=0.3),
    sg.FastSigmoid(slope=5.0),
    sg.SuperSpike(),
    sg.ArcTan(alpha=3.0),
    sg.Triangle(width=0.7, grad_scale=1.5),
    _gaussian_like,
]


@pytest.mark.parametrize("surrogate", SURROGATES, ids=lambda s: getattr(s, "__name__", repr(s)))
def test_surrogates_match_sinabs_loop(surrogate):
    cfg = dict(seed=11, batch=2, time=10, features=(3, 2, 2), param_shape="channel",
               max_spikes=None, reset="subtract", gradient="exodus", tau_syn=True, clip=True,
               norm_input=True, train_alphas=False)
    case = make_case(cfg, surrogate=surrogate)
    weights = loss_weights(case)
    assert_same(run_layer(case, weights), run_loop(case, weights))


@pytest.mark.parametrize("surrogate", [sg.SingleExponential(), _gaussian_like])
@settings(max_examples=15, deadline=None)
@given(cfg=configs)
def test_extension_matches_reference_float32(surrogate, cfg):
    ext = make_case(cfg, dtype=torch.float32, surrogate=surrogate, backend="extension")
    ref = make_case(cfg, dtype=torch.float32, surrogate=surrogate, backend="reference")
    weights = loss_weights(ext)
    assert_same(run_layer(ext, weights), run_layer(ref, weights), rtol=1e-4, atol=1e-4)


def test_iaf_is_lif_without_leak():
    """IAF equals the sinabs loop with α = 1 and no normalisation, synaptic current included."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 15, 4, generator=g, dtype=torch.float64).requires_grad_()
    layer = enn.IAF(spike_threshold=torch.tensor([0.8, 1.0, 1.2, 1.5]), tau_syn=3.0,
                    min_v_mem=-1.0, record_states=True).double()
    spikes = layer(x)
    (spikes.sum() + layer.v_mem.sum()).backward()

    from tests.nn.sinabs_loop import lif_loop

    x_ref = x.detach().clone().requires_grad_()
    tau_syn = layer.tau_syn.detach().clone().requires_grad_()
    zeros = torch.zeros(2, 4, dtype=torch.float64)
    ref, _, _, v_last, _ = lif_loop(x_ref, 1.0, torch.exp(-1 / tau_syn), layer.spike_threshold,
                                 zeros, zeros, min_v_mem=layer.min_v_mem,
                                 surrogate=sg.SingleExponential(), norm_input=False)
    (ref.sum() + v_last.sum()).backward()
    assert spikes.sum() > 0
    torch.testing.assert_close(spikes, ref.detach())
    torch.testing.assert_close(x.grad, x_ref.grad)
    torch.testing.assert_close(layer.tau_syn.grad, tau_syn.grad)
    assert layer.tau_mem is None and not layer.norm_input
    assert {name for name, _ in layer.named_parameters()} == {"tau_syn", "spike_threshold"}


def test_threshold_trains_only_when_asked():
    x = torch.rand(2, 6, 3) * 3
    frozen, trained = enn.LIF(5.0), enn.LIF(5.0, train_threshold=True)
    frozen(x).sum().backward()
    trained(x).sum().backward()
    assert frozen.spike_threshold.grad is None
    assert trained.spike_threshold.grad is not None and trained.spike_threshold.grad != 0


def test_train_alphas_parameters():
    layer = enn.LIF(tau_mem=torch.tensor([10.0, 20.0]), tau_syn=5.0, train_alphas=True)
    names = {name for name, _ in layer.named_parameters()}
    assert names == {"alpha_mem", "alpha_syn", "spike_threshold"}
    torch.testing.assert_close(layer.alpha_mem, torch.exp(-1 / torch.tensor([10.0, 20.0])))
    torch.testing.assert_close(layer.tau_mem_calculated, torch.tensor([10.0, 20.0]))
    torch.testing.assert_close(layer.tau_syn_calculated, torch.tensor(5.0))
    layer(torch.rand(1, 4, 2) * 20).sum().backward()
    assert layer.alpha_mem.grad is not None and layer.alpha_syn.grad is not None


def test_spike_modes_bound_the_count():
    x = torch.full((1, 3, 2), 50.0)
    counts = {k: enn.LIF(10.0, norm_input=False, max_spikes_per_step=k)(x).max().item()
              for k in (None, 1, 3)}
    assert counts == {None: 50.0, 1: 1.0, 3: 3.0}


def test_recordings_are_the_post_reset_state():
    layer = enn.IAF(record_states=True)
    spikes = layer(torch.tensor([[[0.6], [0.6], [0.6]]]))
    # v: 0.6, 1.2 (spike, v+ = 0.2), 0.8: sinabs records the state v+
    torch.testing.assert_close(layer.recordings["v_mem"].flatten(), torch.tensor([0.6, 0.2, 0.8]))
    torch.testing.assert_close(spikes.flatten(), torch.tensor([0.0, 1.0, 0.0]))
    assert enn.IAF()(torch.ones(1, 2, 1)) is not None and enn.IAF().recordings == {}
