"""Finite-difference checks in float64 where the true derivative exists.

The spike function is a step, so finite differences of spikes are zero while the surrogate is
not; but with gradient="slayer" and a loss on the membrane outputs only, the op's gradient *is*
the true derivative (the reset is constant between threshold crossings). That checks the
non-surrogate parts of the scan (decay, clip, reset, parameters, initial state) exactly.
"""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

from exodus_lightning import ops


@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("min_v_mem", [None, -0.4], ids=["noclip", "clip"])
def test_lif_membrane_gradcheck(reset, min_v_mem):
    gen = torch.Generator().manual_seed(3)
    x = (torch.randn(2, 12, 4, generator=gen, dtype=torch.float64) * 1.2 + 0.3).requires_grad_()
    alpha = torch.full((4,), 0.8, dtype=torch.float64, requires_grad=True)
    threshold = torch.full((4,), 1.1, dtype=torch.float64, requires_grad=True)
    v_init = (torch.randn(2, 4, generator=gen, dtype=torch.float64) * 0.3).requires_grad_()

    def membrane(x, alpha, threshold, v_init):
        _, v_mem, v_last = ops.lif(x, alpha, threshold, v_init, min_v_mem=min_v_mem,
                                   reset=reset, gradient="slayer", max_spikes=None,
                                   backend="extension")
        return v_mem, v_last

    spikes = ops.lif(x, alpha, threshold, v_init, reset=reset, backend="extension")[0]
    assert spikes.sum() > 3  # resets really happen inside the checked window
    assert gradcheck(membrane, (x, alpha, threshold, v_init), eps=1e-7, atol=1e-6)


def test_leaky_gradcheck():
    x = torch.randn(2, 15, 3, dtype=torch.float64, requires_grad=True)
    alpha = torch.tensor([0.3, 0.7, 0.95], dtype=torch.float64, requires_grad=True)
    v_init = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda *a: ops.leaky_integrate(*a, backend="extension"), (x, alpha, v_init))


@pytest.mark.parametrize("op", ["leaky", "lif", "lif_custom_surrogate", "alif", "adlif"])
def test_double_backward_is_an_error_not_zeros(op):
    """The fused backward passes are first order: going through them a second time raises
    (PyTorch would otherwise treat them as constants); the reference backend differentiates
    twice."""
    run = {
        "leaky": lambda x, b: ops.leaky_integrate(x, 0.9, backend=b)[0],
        "lif": lambda x, b: ops.lif(x, 0.9, 1.0, backend=b)[1],
        "lif_custom_surrogate": lambda x, b: ops.lif(
            x, 0.9, 1.0, surrogate=lambda v, t: torch.sigmoid(v - t), backend=b)[0],
        "alif": lambda x, b: ops.alif(x, 0.9, 0.9, 0.5, 1.0, backend=b)[1],
        "adlif": lambda x, b: ops.adlif(x, 0.9, 0.9, 0.5, 0.5, 1.0, backend=b)[1],
    }[op]
    x0 = torch.randn(2, 10, 4, dtype=torch.float64,
                     generator=torch.Generator().manual_seed(0)) + 0.5
    x = x0.clone().requires_grad_()
    (expected,) = torch.autograd.grad(run(x, "reference").square().sum(), x, create_graph=True)
    (second,) = torch.autograd.grad(expected.sum(), x)
    assert second.abs().sum() > 0
    x = x0.clone().requires_grad_()
    (g,) = torch.autograd.grad(run(x, "extension").square().sum(), x, create_graph=True)
    torch.testing.assert_close(g, expected.detach())  # the first order is as without the graph
    with pytest.raises(RuntimeError, match="second-order gradients .* backend='reference'"):
        torch.autograd.grad(g.sum(), x)
