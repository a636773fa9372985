"""Autocast, torch.compile and CUDA."""

from __future__ import annotations

import pytest
import torch

from exodus_lightning import nn as enn
from tests.helpers import run_if


def small_network(backend: str = "auto") -> torch.nn.Sequential:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(3, 6),
        enn.LIF(torch.full((6,), 5.0), tau_syn=3.0, min_v_mem=-1.0, backend=backend),
        torch.nn.Linear(6, 2),
        enn.ExpLeak(4.0, backend=backend),
    )


def run(net: torch.nn.Module, x: torch.Tensor, calls: int = 2):
    """Several calls (states carried), backward through all; outputs and gradients."""
    outs = [net(x) for _ in range(calls)]
    torch.stack(outs).float().square().sum().backward()
    return [o.detach() for o in outs], {n: p.grad for n, p in net.named_parameters()}


def test_autocast_bfloat16_matches_reference_backend():
    x = torch.rand(4, 10, 3) * 4
    results = {}
    for backend in ("extension", "reference"):
        net = small_network(backend)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            outs, grads = run(net, x)
            assert outs[0].dtype == torch.bfloat16
            assert net[1].v_mem.dtype == torch.float32
        results[backend] = outs, grads
    (outs_e, grads_e), (outs_r, grads_r) = results["extension"], results["reference"]
    for a, b in zip(outs_e, outs_r, strict=True):
        torch.testing.assert_close(a, b)
    for name in grads_r:
        torch.testing.assert_close(grads_e[name], grads_r[name], rtol=2e-2, atol=2e-2, msg=name)
    assert net[1].spike_threshold.grad is None and grads_e["1.tau_mem"].abs().sum() > 0


@pytest.mark.slow
def test_compile_fullgraph_matches_eager():
    x = torch.rand(4, 10, 3) * 4
    eager_outs, eager_grads = run(small_network(), x)
    net = small_network()
    compiled_outs, _ = run(torch.compile(net, fullgraph=True), x)
    compiled_grads = {n: p.grad for n, p in net.named_parameters()}
    for a, b in zip(compiled_outs, eager_outs, strict=True):
        torch.testing.assert_close(a, b)
    for name in eager_grads:
        torch.testing.assert_close(compiled_grads[name], eager_grads[name], msg=name)


@run_if(gpu=True)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_cpu(dtype):
    x = torch.rand(4, 10, 3, dtype=dtype) * 4
    cpu_outs, cpu_grads = run(small_network().to(dtype), x)
    gpu_net = small_network().to("cuda", dtype)
    gpu_outs, gpu_grads = run(gpu_net, x.cuda())
    assert gpu_net[1].v_mem.device.type == "cuda"
    for a, b in zip(gpu_outs, cpu_outs, strict=True):
        torch.testing.assert_close(a.cpu(), b)
    for name in cpu_grads:
        torch.testing.assert_close(gpu_grads[name].cpu(), cpu_grads[name], msg=name)


@run_if(gpu=True)
def test_cuda_autocast_float16():
    net = small_network().cuda()
    with torch.autocast("cuda", dtype=torch.float16):
        outs, grads = run(net, torch.rand(4, 10, 3, device="cuda") * 4)
    assert outs[0].dtype == torch.float16 and net[1].v_mem.dtype == torch.float32
    assert all(torch.isfinite(g).all() for g in grads.values())


@run_if(gpu=True)
def test_state_follows_module_to_cuda():
    layer = enn.LIF(5.0, tau_syn=2.0)
    layer(torch.rand(2, 3, 4))
    layer.cuda()
    assert layer.v_mem.device.type == "cuda" and layer.i_syn.device.type == "cuda"
    assert layer(torch.rand(2, 3, 4, device="cuda")).device.type == "cuda"
