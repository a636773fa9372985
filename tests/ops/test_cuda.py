"""The CUDA path end to end (run only where a GPU is present).

The kernels' arithmetic, variants and masks are checked against the reference by
test_raw_ops.py, and autograd through the ops by test_lif_parity.py and test_leaky_parity.py (on
the GPU here, and on the CPU and as a host emulation everywhere); this file checks what only a GPU
has: autograd through the ops on CUDA tensors, half precision backward, streams, device
guards, device checks, no host synchronisation, CUDA graphs, torch.compile, and indices past 2³¹.
"""

from __future__ import annotations

import pytest
import torch

from exodus_lightning import ops
from exodus_lightning.ops._extension import load
from tests.helpers import run_if

lib = torch.ops.exodus_lightning


def cpu_inputs(dtype=torch.float64):
    return dict(
        x=torch.randn(4, 60, 3, 33, dtype=dtype) * 1.5 + 0.3,
        alpha=torch.rand(3, 1, dtype=dtype) * 0.5 + 0.45,
        threshold=torch.rand(33, dtype=dtype) * 0.5 + 0.75,
        v_init=torch.randn(4, 3, 33, dtype=dtype),
    )


@run_if(gpu=True)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
def test_cuda_half_inputs_forward_and_backward(dtype):
    x32 = (torch.randn(3, 50, 64) + 0.5).to(dtype).float()
    weights = torch.randn_like(x32).to(dtype).float()
    ref_x = x32.clone().requires_grad_()
    spikes_ref, v_ref, _ = ops.lif(ref_x, 0.9, 1.0, backend="reference")
    (grad_ref,) = torch.autograd.grad((spikes_ref * weights).sum(), ref_x)
    xh = x32.to(dtype).cuda().requires_grad_()
    spikes, v_mem, _ = ops.lif(xh, 0.9, 1.0, backend="extension")
    assert spikes.dtype == dtype and v_mem.dtype == torch.float32
    (grad,) = torch.autograd.grad((spikes.float() * weights.cuda()).sum(), xh)
    assert grad.dtype == dtype
    torch.testing.assert_close(spikes.float().cpu(), spikes_ref)
    torch.testing.assert_close(v_mem.cpu(), v_ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(grad.float().cpu(), grad_ref, rtol=1e-2, atol=1e-2)


@run_if(gpu=True)
def test_cuda_autocast_training_step():
    layer = torch.nn.Linear(32, 48).cuda()
    x = torch.randn(4, 40, 32, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        current = layer(x)
        assert current.dtype == torch.bfloat16
        spikes, _, _ = ops.lif(current, 0.9, 0.5, backend="extension")
    spikes.float().sum().backward()
    assert layer.weight.grad is not None and torch.isfinite(layer.weight.grad).all()


@run_if(gpu=True)
def test_cuda_runs_on_the_current_stream():
    """Inputs made on a side stream behind a long kernel: the op must wait for them there."""
    load("cuda")
    side = torch.cuda.Stream()
    base = torch.randn(8, 200, 4096, device="cuda") + 0.4
    want = ops.lif(base, 0.9, 1.0, backend="extension")[0]
    torch.cuda.synchronize()
    with torch.cuda.stream(side):
        torch.cuda._sleep(50_000_000)  # ~25 ms of GPU time before x exists
        x = base * 1.0
        got = ops.lif(x, 0.9, 1.0, backend="extension")[0]
    side.synchronize()
    assert torch.equal(got, want)


@run_if(gpu=True)
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_cuda_device_guard_on_the_second_gpu():
    cpu = cpu_inputs(torch.float32)
    want = ops.lif(cpu["x"], 0.9, 1.0, backend="reference")
    with torch.cuda.device(0):
        got = ops.lif(cpu["x"].to("cuda:1"), 0.9, 1.0, backend="extension")
    for a, b in zip(got, want):
        assert a.device == torch.device("cuda:1")
        torch.testing.assert_close(a.cpu(), b, rtol=1e-5, atol=1e-5)


def _lif_raw_args(device="cuda"):
    x = torch.randn(2, 10, 6, device=device) + 0.5
    v0 = torch.zeros(2, 6, device=device)
    p = torch.full((6,), 0.9, device=device)
    return [x, v0, p, p + 0.1, p + 0.1, p - 1.5]


@run_if(gpu=True)
def test_cuda_raw_ops_reject_tensors_on_another_device():
    """A CPU tensor among CUDA ones is an error naming it, never an illegal memory access."""
    load("cuda")
    codes = (0, 0, 0, 0, [0.5, 1.0])
    args = _lif_raw_args()
    for i in range(len(args)):
        moved = list(args)
        moved[i] = moved[i].cpu()
        with pytest.raises(RuntimeError, match="is on cpu|on cpu"):
            lib.lif_forward(*moved, *codes)
    spikes, v_mem, v_last = lib.lif_forward(*args, *codes)
    back = [torch.ones_like(spikes), torch.ones_like(v_mem), torch.ones_like(v_last), v_mem,
            torch.ones_like(v_mem), *args[1:]]
    for i in range(len(back)):
        moved = list(back)
        moved[i] = moved[i].cpu()
        with pytest.raises(RuntimeError, match="on cpu"):
            lib.lif_backward(*moved, *codes, 15)
    x, v0, alpha = args[:3]
    for i in range(3):
        moved = [x, v0, alpha]
        moved[i] = moved[i].cpu()
        with pytest.raises(RuntimeError, match="on cpu"):
            lib.leaky_forward(*moved)
    y, _ = lib.leaky_forward(x, v0, alpha)
    for i in range(5):
        moved = [torch.ones_like(y), torch.ones_like(v0), y, v0, alpha]
        moved[i] = moved[i].cpu()
        with pytest.raises(RuntimeError, match="on cpu"):
            lib.leaky_backward(*moved)
    torch.cuda.synchronize()  # no asynchronous error left behind


@run_if(gpu=True)
def test_cuda_training_step_does_not_synchronise():
    """Forward and backward with float and tensor parameters make no host sync."""
    x = torch.randn(4, 30, 64, device="cuda", requires_grad=True)
    threshold = torch.full((64,), 0.8, device="cuda", requires_grad=True)
    ops.lif(x, 0.9, threshold, backend="extension")  # build and warm up first
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        spikes, v_mem, _ = ops.lif(x, 0.9, threshold, min_v_mem=-1.0, backend="extension")
        (spikes.sum() + v_mem.mean()).backward()
        y, _ = ops.leaky_integrate(x, 0.7, backend="extension")
        y.sum().backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert threshold.grad is not None


@run_if(gpu=True)
def test_cuda_value_checks_on_request(monkeypatch):
    bad = torch.full((8,), -1.0, device="cuda")
    x = torch.randn(2, 5, 8, device="cuda")
    ops.lif(x, 0.9, bad, backend="extension")  # not checked by default: no host sync
    monkeypatch.setenv("EXODUS_LIGHTNING_CHECK_VALUES", "1")
    with pytest.raises(ValueError, match="threshold must be > 0"):
        ops.lif(x, 0.9, bad, backend="extension")
    with pytest.raises(ValueError, match="threshold must be > 0"):
        ops.lif(x, 0.9, -1.0, backend="extension")  # numbers are always checked


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
def test_cuda_graph_captures_a_training_step():
    """Forward, backward and optimiser step captured once and replayed equal eager steps."""
    torch.manual_seed(0)
    x = torch.randn(8, 25, 32, device="cuda")
    target = torch.randn(8, 25, 48, device="cuda")

    def make():
        torch.manual_seed(1)
        weight = torch.nn.Parameter(torch.randn(32, 48, device="cuda") * 0.3)
        threshold = torch.nn.Parameter(torch.full((48,), 0.7, device="cuda"))
        return weight, threshold, torch.optim.SGD([weight, threshold], lr=0.05)

    def step(weight, threshold, optimiser):
        optimiser.zero_grad(set_to_none=False)
        spikes, v_mem, _ = ops.lif(x @ weight, 0.9, threshold, backend="extension")
        loss = ((spikes + 0.1 * v_mem - target) ** 2).mean()
        loss.backward()
        optimiser.step()
        return loss

    eager = make()
    for _ in range(4):
        step(*eager)

    captured = make()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up on a side stream, as torch.cuda.graph requires
        step(*captured)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step(*captured)
    for _ in range(3):  # warm-up + 3 replays = the 4 eager steps
        graph.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(captured[0], eager[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(captured[1], eager[1], rtol=1e-5, atol=1e-6)


@run_if(gpu=True)
@pytest.mark.slow
def test_cuda_indices_past_two_to_the_31():
    """2.3·10⁹ elements (half precision): the last neurons of the last batch row are right."""
    free, _ = torch.cuda.mem_get_info()
    if free < 40 * 2**30:
        pytest.skip("needs ~35 GB of free GPU memory")
    batch, time, features = 2, 1100, 2**20
    assert batch * time * features > 2**31
    x = torch.empty(batch, time, features, device="cuda", dtype=torch.float16)
    x.normal_(0.4, 1.0)
    x.requires_grad_()
    spikes, v_mem, v_last = ops.lif(x, 0.9, 1.0, backend="extension")
    grad = torch.ones_like(spikes)
    (grad_x,) = torch.autograd.grad(spikes, x, grad)
    tail = slice(features - 64, features)
    x_ref = x.detach()[1:, :, tail].float().cpu().requires_grad_()
    s_ref, v_ref, last_ref = ops.lif(x_ref, 0.9, 1.0, backend="reference")
    (g_ref,) = torch.autograd.grad(s_ref.sum(), x_ref)
    torch.testing.assert_close(spikes[1:, :, tail].float().cpu(), s_ref)
    torch.testing.assert_close(v_mem[1:, :, tail].cpu(), v_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(v_last[1:, tail].cpu(), last_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad_x[1:, :, tail].float().cpu(), g_ref, rtol=1e-2, atol=1e-2)


def _custom_exponential(v_mem, threshold):
    width = threshold * 0.5
    return 1.0 / width * torch.exp(-(v_mem - threshold).abs() / width)


@run_if(gpu=True)
@pytest.mark.parametrize("how", ["uncompiled", "compiled"])
def test_cuda_custom_surrogate_matches_the_cpu(how):
    """A custom callable on CUDA: run as it is (whole membrane) and compiled (Triton), against
    the same callable on the CPU extension."""
    wrap = {"uncompiled": ops.uncompiled_surrogate, "compiled": ops.compiled_surrogate}[how]
    surrogate = wrap(_custom_exponential)
    grads, given = {}, cpu_inputs(torch.float32)
    for device in ("cpu", "cuda"):
        inputs = {k: v.to(device).requires_grad_(k in ("x", "alpha")) for k, v in given.items()}
        spikes, v_mem, _ = ops.lif(inputs["x"], inputs["alpha"], inputs["threshold"],
                                   inputs["v_init"], surrogate=surrogate, max_spikes=None,
                                   backend="extension")
        weights = torch.linspace(-1, 1, spikes.numel(), device=device).view_as(spikes)
        grads[device] = torch.autograd.grad((spikes * weights).sum() + v_mem.sum(),
                                            [inputs["x"], inputs["alpha"]])
    for cuda, cpu in zip(grads["cuda"], grads["cpu"], strict=True):
        torch.testing.assert_close(cuda.cpu(), cpu, rtol=1e-4, atol=1e-4)
    if how == "compiled":
        assert surrogate._compiled is not None and surrogate._compiled.write is not None
