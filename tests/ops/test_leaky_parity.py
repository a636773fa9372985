"""The extension's leaky integrator equals the reference: values and gradients."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from exodus_lightning import ops
from tests.tolerances import tolerance

from .conftest import DEVICES


def outputs_and_grads(backend, x, alpha, v_init, w_y, w_last):
    y, y_last = ops.leaky_integrate(x, alpha, v_init, backend=backend)
    loss = (y * w_y).sum() + (y_last * w_last).sum()
    leaves = [t for t in (x, alpha, v_init) if isinstance(t, torch.Tensor) and t.requires_grad]
    return (y, y_last, *torch.autograd.grad(loss, leaves))


@settings(max_examples=20, deadline=None)
@given(
    batch=st.integers(1, 3), time=st.integers(1, 300),
    features=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    per_feature=st.booleans(), with_state=st.booleans(), seed=st.integers(0, 2**16),
)
@pytest.mark.parametrize("device", DEVICES)
def test_leaky_matches_reference(device, batch, time, features, per_feature, with_state, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, time, *features, generator=gen, dtype=torch.float64).requires_grad_()
    shape = features if per_feature else ()
    alpha = (torch.rand(shape, generator=gen, dtype=torch.float64) * 0.9 + 0.1).requires_grad_()
    v_init = None
    if with_state:
        v_init = torch.randn(batch, *features, generator=gen, dtype=torch.float64)
        v_init.requires_grad_()
    w_y, w_last = torch.randn_like(x), torch.randn(batch, *features, dtype=torch.float64)
    def on(t):
        return t if t is None else t.detach().to(device).requires_grad_(t.requires_grad)

    got = outputs_and_grads("extension", on(x), on(alpha), on(v_init), on(w_y), on(w_last))
    want = outputs_and_grads("reference", x, alpha, v_init, w_y, w_last)
    for a, b in zip(got, want):
        torch.testing.assert_close(a.cpu(), b, **tolerance(torch.float64))


def test_leaky_float32_and_closed_form():
    """y_t = Σ_k α^(t−k) x_k for constant input: a geometric series."""
    x = torch.ones(2, 50, 3)
    y, y_last = ops.leaky_integrate(x, 0.5, backend="extension")
    t = torch.arange(1, 51, dtype=torch.float32)
    expected = (1 - 0.5**t) / (1 - 0.5)
    torch.testing.assert_close(y[0, :, 0], expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(y_last, y[:, -1])


@pytest.mark.parametrize("alpha", [1.0, 0.0, 1.5, -0.2])
def test_leaky_alpha_validation(alpha):
    x = torch.randn(1, 3, 2)
    if 0 <= alpha <= 1:
        ops.leaky_integrate(x, alpha)
    else:
        with pytest.raises(ValueError, match="alpha must lie in"):
            ops.leaky_integrate(x, alpha)
