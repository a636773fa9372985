"""CUDA kernels equal the reference (run only where a GPU is present)."""

from __future__ import annotations

import pytest
import torch

from exodus_lightning import ops
from tests.helpers import run_if

from .test_lif_parity import MODES


def lif_with_grads(backend, x, alpha, threshold, v_init, weights, **kwargs):
    spikes, v_mem, v_last = ops.lif(x, alpha, threshold, v_init, backend=backend, **kwargs)
    loss = (spikes * weights[0]).sum() + (v_mem * weights[1]).sum() + (v_last * weights[2]).sum()
    return (spikes, v_mem, v_last, *torch.autograd.grad(loss, [x, alpha, threshold, v_init]))


@run_if(gpu=True)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("min_v_mem", [None, -0.5], ids=["noclip", "clip"])
def test_cuda_lif_matches_cpu_reference(dtype, mode, min_v_mem):
    cpu = dict(
        x=torch.randn(4, 60, 3, 33, dtype=dtype) * 1.5 + 0.3,
        alpha=torch.rand(3, 1, dtype=dtype) * 0.5 + 0.45,
        threshold=torch.rand(33, dtype=dtype) * 0.5 + 0.75,
        v_init=torch.randn(4, 3, 33, dtype=dtype),
    )
    weights = (torch.randn_like(cpu["x"]), 0.1 * torch.randn_like(cpu["x"]),
               torch.randn_like(cpu["v_init"]))
    leaves = {k: v.clone().requires_grad_() for k, v in cpu.items()}
    want = lif_with_grads("reference", **leaves, weights=weights, min_v_mem=min_v_mem, **mode)
    gpu = {k: v.cuda().requires_grad_() for k, v in cpu.items()}
    got = lif_with_grads("extension", **gpu, weights=[w.cuda() for w in weights],
                         min_v_mem=min_v_mem, **mode)
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-5)
    for a, b in zip(got, want):
        torch.testing.assert_close(a.cpu(), b, **tol)


@run_if(gpu=True)
def test_cuda_leaky_and_half_inputs():
    x = torch.randn(3, 50, 40, dtype=torch.float64, requires_grad=True)
    y_ref, _ = ops.leaky_integrate(x, 0.8, backend="reference")
    g_ref, = torch.autograd.grad(y_ref.square().sum(), x)
    xc = x.detach().cuda().requires_grad_()
    y, _ = ops.leaky_integrate(xc, 0.8, backend="extension")
    g, = torch.autograd.grad(y.square().sum(), xc)
    torch.testing.assert_close(y.cpu(), y_ref)
    torch.testing.assert_close(g.cpu(), g_ref)
    for dtype in (torch.float16, torch.bfloat16):
        xh = (torch.randn(2, 30, 64, device="cuda") + 0.5).to(dtype)
        got = ops.lif(xh, 0.9, 1.0, backend="extension")
        want = ops.lif(xh.cpu(), 0.9, 1.0, backend="reference")
        for a, b in zip(got, want):
            torch.testing.assert_close(a.cpu(), b, rtol=1e-6, atol=1e-6)


@run_if(gpu=True)
def test_cuda_compile_fullgraph():
    def step(x, threshold):
        return ops.lif(x, 0.9, threshold, backend="extension")[0].sum()

    x = torch.randn(4, 20, 16, device="cuda", requires_grad=True)
    threshold = torch.ones(16, device="cuda", requires_grad=True)
    eager = torch.autograd.grad(step(x, threshold), [x, threshold])
    compiled = torch.autograd.grad(torch.compile(step, fullgraph=True)(x, threshold),
                                   [x, threshold])
    for a, b in zip(compiled, eager):
        torch.testing.assert_close(a, b)


@run_if(gpu=True)
@pytest.mark.parametrize("mode", MODES)
def test_cuda_fixed_parameters_give_the_same_input_gradient(mode):
    """Fixed α and θ: the CUDA backward skips the parameter gradients, not the input's."""
    x = torch.randn(3, 50, 40, dtype=torch.float64) * 1.5 + 0.3
    weights = torch.randn_like(x)
    grads = []
    for backend, device in (("reference", "cpu"), ("extension", "cuda")):
        leaf = x.to(device).requires_grad_()
        spikes, _, _ = ops.lif(leaf, 0.9, 1.0, backend=backend, **mode)
        grads.append(torch.autograd.grad((spikes * weights.to(device)).sum(), leaf)[0].cpu())
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-10, atol=1e-10)
