"""ExpLeak against a hand-written float64 sinabs loop, on both backends."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from exodus_lightning import nn as enn
from tests.nn.cases import param_shape
from tests.nn.sinabs_loop import exp_leak_loop


@pytest.mark.parametrize("backend", ["extension", "reference"])
@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    time=st.integers(1, 10),
    features=st.sampled_from([(4,), (2, 3, 3)]),
    shape_kind=st.sampled_from(["scalar", "channel", "neuron"]),
    clip=st.booleans(),
    norm_input=st.booleans(),
    train_alphas=st.booleans(),
)
def test_exp_leak_matches_sinabs_loop(backend, seed, time, features, shape_kind, clip,
                                      norm_input, train_alphas):
    g = torch.Generator().manual_seed(seed)
    shape = param_shape(shape_kind, features)
    tau = 2 + 20 * torch.rand(shape, generator=g, dtype=torch.float64)
    layer = enn.ExpLeak(tau, min_v_mem=-0.3 if clip else None, norm_input=norm_input,
                        train_alphas=train_alphas, record_states=True, backend=backend).double()
    x = torch.randn((2, time, *features), generator=g, dtype=torch.float64)
    v0 = torch.randn((2, *features), generator=g, dtype=torch.float64)
    w_out, w_last = torch.randn_like(x), torch.randn_like(v0)

    x1, v1 = x.clone().requires_grad_(), v0.clone().requires_grad_()
    layer.v_mem = v1
    out = layer(x1)
    ((out * w_out).sum() + (layer.v_mem * w_last).sum()).backward()

    name = "alpha_mem" if train_alphas else "tau_mem"
    param = getattr(layer, name).detach().clone().requires_grad_()
    alpha = param if train_alphas else torch.exp(-1 / param)
    x2, v2 = x.clone().requires_grad_(), v0.clone().requires_grad_()
    ref, ref_last = exp_leak_loop(x2, alpha, v2, min_v_mem=layer.min_v_mem,
                                  norm_input=norm_input)
    ((ref * w_out).sum() + (ref_last * w_last).sum()).backward()

    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(layer.v_mem, ref_last)
    torch.testing.assert_close(x1.grad, x2.grad)
    torch.testing.assert_close(v1.grad, v2.grad)
    torch.testing.assert_close(getattr(layer, name).grad, param.grad)
    expected_trace = ref if not clip else torch.clamp(ref, min=-0.3)
    torch.testing.assert_close(layer.recordings["v_mem"], expected_trace)


def test_exp_leak_defaults_follow_sinabs():
    layer = enn.ExpLeak(10.0)
    assert layer.norm_input is False
    out = layer(torch.ones(1, 3, 1))
    # No normalisation: 1, 1 + α, 1 + α + α²
    a = torch.exp(torch.tensor(-0.1))
    torch.testing.assert_close(out.flatten(), torch.stack([a**0, 1 + a, 1 + a + a * a]))


def test_exp_leak_clip_keeps_output_unclipped():
    layer = enn.ExpLeak(10.0, min_v_mem=-1.0)
    out = layer(torch.tensor([[[-3.0], [0.0]]]))
    a = torch.exp(torch.tensor(-0.1))
    torch.testing.assert_close(out.flatten(), torch.stack([torch.tensor(-3.0), -a]))
    torch.testing.assert_close(layer.v_mem.flatten(), -a.reshape(1))
