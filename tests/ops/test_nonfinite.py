"""Non-finite values: the extension and the reference agree, and a NaN is never hidden.

The defined behaviour: a NaN in a neuron's membrane shows in its spike output at that step (the
spike count of NaN is NaN) and in every later membrane value, so a loss computed from the layer
is NaN too; a lower bound clips finite values only (sinabs' relu(w − min) + min keeps NaN);
±inf follow IEEE arithmetic as in the reference loop. Gradients then agree with the reference's
autograd, NaN for NaN.
"""

from __future__ import annotations

import math

import pytest
import torch

from exodus_lightning import ops

MODES = [
    dict(reset="subtract", gradient="exodus", max_spikes=None),
    dict(reset="subtract", gradient="slayer", max_spikes=2),
    dict(reset="zero", gradient="exodus", max_spikes=1),
    dict(reset="zero", gradient="slayer", max_spikes=None),
]


def run(backend, x, v_init, upstream, **kwargs):
    x = x.clone().requires_grad_()
    v_init = v_init.clone().requires_grad_()
    threshold = torch.full(x.shape[2:], kwargs.pop("threshold", 1.0), dtype=x.dtype,
                           requires_grad=True)
    alpha = torch.full(x.shape[2:], 0.9, dtype=x.dtype, requires_grad=True)
    spikes, v_mem, v_last = ops.lif(x, alpha, threshold, v_init, backend=backend, **kwargs)
    loss = sum((out * w).sum() for out, w in zip((spikes, v_mem, v_last), upstream))
    grads = torch.autograd.grad(loss, [x, v_init, alpha, threshold])
    return (spikes, v_mem, v_last, *grads)


def assert_same(x, v_init=None, upstream=None, **kwargs):
    v_init = torch.zeros(x.shape[0], *x.shape[2:], dtype=x.dtype) if v_init is None else v_init
    upstream = upstream or (torch.ones_like(x), 0.1 * torch.ones_like(x), torch.ones_like(v_init))
    got = run("extension", x, v_init, upstream, **dict(kwargs))
    want = run("reference", x, v_init, upstream, **dict(kwargs))
    names = ("spikes", "v_mem", "v_last", "grad x", "grad v_init", "grad alpha", "grad threshold")
    for name, a, b in zip(names, got, want):
        torch.testing.assert_close(a, b, equal_nan=True, rtol=1e-6, atol=1e-6,
                                   msg=lambda m, n=name: f"{n}: {m}")
    return got


def series(*values, dtype=torch.float64):
    return torch.tensor(values, dtype=dtype).reshape(1, -1, 1)


@pytest.mark.parametrize("mode", MODES, ids=lambda m: f"{m['reset']}-{m['gradient']}")
@pytest.mark.parametrize("min_v_mem", [None, -1.0], ids=["noclip", "clip"])
def test_nan_input_is_visible_and_agrees(mode, min_v_mem):
    x = series(0.5, 1.5, math.nan, 0.4, 2.0)
    spikes, v_mem, v_last, grad_x, *_ = assert_same(x, min_v_mem=min_v_mem, **mode)
    assert torch.isnan(spikes[0, 2, 0]), "the NaN step's spike output shows it"
    assert torch.isnan(v_mem[0, 2:, 0]).all() and torch.isnan(v_last).all()
    assert torch.isnan(grad_x[0, :3, 0]).all()


@pytest.mark.parametrize("surrogate", ["SingleExponential", "PeriodicExponential", "Heaviside",
                                       "Gaussian", "FastSigmoid", "ArcTan", "Triangle"])
@pytest.mark.parametrize("value", [math.nan, math.inf], ids=["nan", "inf"])
def test_every_fused_surrogate_treats_non_finite_membranes_as_the_reference(surrogate, value):
    """The kernels' formulas keep a NaN where the reference's do (Triangle's cut-off once
    turned it into 0)."""
    assert_same(series(0.5, 1.5, value, 0.4, 2.0),
                surrogate=getattr(ops.surrogate, surrogate)())


@pytest.mark.parametrize("mode", MODES, ids=lambda m: f"{m['reset']}-{m['gradient']}")
@pytest.mark.parametrize("value", [-math.inf, math.inf], ids=["-inf", "+inf"])
@pytest.mark.parametrize("min_v_mem", [None, -1.0], ids=["noclip", "clip"])
def test_infinite_input_agrees(mode, value, min_v_mem):
    assert_same(series(0.5, value, 0.4, 1.2), min_v_mem=min_v_mem, **mode)


def test_huge_input_tiny_threshold_reset_to_zero():
    """floor(1e30 / 1e-9) overflows float32 to inf; the reset to zero still gives 0, not NaN."""
    x = series(1e30, 0.5, dtype=torch.float32)
    spikes, v_mem, v_last, grad_x, *_ = assert_same(x, threshold=1e-9, reset="zero")
    assert torch.isinf(spikes[0, 0, 0]) and v_mem[0, 1, 0] == 0.5 and v_last.item() == 0
    assert torch.isfinite(grad_x).all()


@pytest.mark.parametrize("min_v", [None, -1.0], ids=["noclip", "clip"])
@pytest.mark.parametrize("reset", [0, 1], ids=["subtract", "zero"])
def test_cuda_kernels_treat_non_finite_values_like_the_cpu_kernels(min_v, reset):
    """The same cases through the CUDA kernels' host emulation: bit for bit, NaN for NaN."""
    from exodus_lightning.ops._extension import load
    from exodus_lightning.ops.cuda_emulation import emulated_ops

    load("cpu")
    x = torch.tensor([0.5, 1.5, math.nan, 0.4, -math.inf, 0.3, math.inf, 2.0, 1e300, 0.1],
                     dtype=torch.float64).reshape(1, -1, 1).repeat(2, 1, 3)
    v0 = torch.zeros(2, 3, dtype=torch.float64)
    p = torch.ones(3, dtype=torch.float64)
    bound = None if min_v is None else torch.full((3,), min_v, dtype=torch.float64)
    args = (x, v0, 0.9 * p, p, p, bound, 0, reset, 0, 0, [0.5, 1.0])
    outs = []
    for lib in (torch.ops.exodus_lightning, emulated_ops()):
        spikes, v_mem, v_last = lib.lif_forward(*args)
        grads = lib.lif_backward(torch.ones_like(spikes), None, torch.ones_like(v_last), v_mem,
                                 None, v0, 0.9 * p, p, p, bound, 0, reset, 0, 0, [0.5, 1.0], 15)
        outs.append((spikes, v_mem, v_last, *grads))
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, equal_nan=True, rtol=0, atol=0)


@pytest.mark.parametrize("mode", MODES, ids=lambda m: f"{m['reset']}-{m['gradient']}")
def test_nan_state_and_nan_upstream_gradient_agree(mode):
    x = series(0.5, 1.5, 0.2, 1.1)
    v_init = torch.tensor([[math.nan]], dtype=torch.float64)
    assert_same(x, v_init=v_init, **mode)
    upstream = (series(1.0, math.nan, 1.0, 1.0), torch.zeros_like(x), torch.ones(1, 1,
                                                                                 dtype=x.dtype))
    _, _, _, grad_x, *_ = assert_same(x, upstream=upstream, **mode)
    assert torch.isnan(grad_x[0, :2, 0]).all()


def test_threshold_must_be_finite():
    x = series(0.5, 1.5)
    with pytest.raises(ValueError, match="threshold must be finite"):
        ops.lif(x, 0.9, math.inf)
    with pytest.raises(ValueError, match="threshold must be finite"):
        ops.lif(x, 0.9, torch.tensor([math.inf], dtype=torch.float64))
    with pytest.raises(ValueError, match="min_v_mem must not be NaN"):
        ops.lif(x, 0.9, 1.0, min_v_mem=math.nan)


@pytest.mark.parametrize("backend", ["extension", "reference"])
def test_zero_time_steps_backward_on_both_backends(backend):
    x = torch.randn(2, 0, 3, requires_grad=True)
    v_init = torch.randn(2, 3, requires_grad=True)
    spikes, v_mem, v_last = ops.lif(x, 0.9, 1.0, v_init, backend=backend)
    grad_x, grad_v = torch.autograd.grad(spikes.sum() + v_mem.sum() + v_last.sum(), [x, v_init])
    assert grad_x.shape == x.shape and torch.equal(grad_v, torch.ones_like(v_init))
    y, y_last = ops.leaky_integrate(x, 0.8, v_init, backend=backend)
    grad_x, grad_v = torch.autograd.grad(y.sum() + y_last.sum(), [x, v_init])
    assert grad_x.shape == x.shape and torch.equal(grad_v, torch.ones_like(v_init))


def test_meta_inputs_give_shapes_without_reading_values():
    x = torch.empty(2, 5, 3, device="meta")
    spikes, v_mem, v_last = ops.lif(x, 0.9, torch.ones(3, device="meta"))
    assert spikes.shape == v_mem.shape == x.shape and v_last.shape == (2, 3)
