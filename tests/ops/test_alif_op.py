"""The functional ALIF op: finite differences, opcheck, torch.compile, half inputs, edge cases
and argument errors (raw-op parity with the reference on every backend is in test_raw_ops.py)."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

from exodus_lightning import ops
from exodus_lightning.ops import surrogate as sg
from exodus_lightning.ops._library import ALIF_PARAM_GRAD_BITS

from .test_opcheck import skip_autograd_on_emulation


def _no_surrogate(v_mem, threshold):
    """dS/dV = 0: the spikes are then constants of the gradient, as for finite differences."""
    return torch.zeros_like(v_mem)


def _inputs(b=2, t=14, n=4, seed=3, dtype=torch.float64, grad=True):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, t, n, generator=gen, dtype=dtype) * 1.2 + 0.6
    params = [torch.full((n,), value, dtype=dtype) for value in (0.8, 0.85, 0.7, 1.0)]
    v_init = torch.randn(b, n, generator=gen, dtype=dtype) * 0.3
    b_init = torch.rand(b, n, generator=gen, dtype=dtype) * 0.4
    tensors = [x, *params, v_init, b_init]
    return [t.requires_grad_(grad) for t in tensors]


@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("min_v_mem", [None, -0.4], ids=["noclip", "clip"])
def test_alif_gradcheck_with_a_zero_surrogate(reset, min_v_mem):
    """With dS/dV = 0 the op's gradient is the true derivative of its piecewise-smooth outputs
    (spikes fixed), so finite differences check every non-surrogate term of the scan: decays,
    the reset by the adaptive threshold, the clip, the adaptation and the initial states."""
    inputs = _inputs()

    def outputs(*args):
        _, v_mem, b, v_last, b_last = ops.alif(*args, min_v_mem=min_v_mem, max_spikes=None,
                                               surrogate=_no_surrogate, reset=reset,
                                               backend="extension")
        return v_mem, b, v_last, b_last

    spikes = ops.alif(*inputs, reset=reset, max_spikes=None)[0]
    assert spikes.sum() > 5  # resets and adaptation really happen inside the checked window
    assert gradcheck(outputs, inputs, eps=1e-7, atol=1e-6)


def _raw_args(device="cpu", grad=False, min_v=True):
    x, alpha, rho, beta, b0, v_init, b_init = _inputs(grad=grad)
    min_v_mem = torch.full((4,), -0.5, dtype=torch.float64, requires_grad=grad) if min_v else None
    tensors = [t.to(device) if t is not None else None
               for t in (x, v_init, b_init, alpha, rho, beta, b0, min_v_mem)]
    return (*tensors, 1, 0, 0, 0, [0.5, 1.0])


@pytest.mark.parametrize("requires_grad", [False, True], ids=["nograd", "grad"])
@pytest.mark.parametrize("min_v", [False, True], ids=["noclip", "clip"])
def test_opcheck_alif_forward(raw_backend, requires_grad, min_v):
    lib, device = raw_backend
    skip_autograd_on_emulation(lib, requires_grad)
    args = _raw_args(device, requires_grad, min_v)
    if requires_grad:
        args = tuple(a.detach().requires_grad_() if isinstance(a, torch.Tensor) else a
                     for a in args)
    torch.library.opcheck(lib.alif_forward.default, args)


@pytest.mark.parametrize("param_grads", [0, 1, 6, sum(ALIF_PARAM_GRAD_BITS.values())],
                         ids=["none", "alpha", "rho_beta", "all"])
@pytest.mark.parametrize("upstream", [True, False], ids=["all", "last_only"])
def test_opcheck_alif_backward(raw_backend, param_grads, upstream):
    lib, device = raw_backend
    x, v_init, b_init, alpha, rho, beta, b0, min_v, *codes = _raw_args(device)
    spikes, v_mem, b, _, _ = lib.alif_forward(x, v_init, b_init, alpha, rho, beta, b0, min_v,
                                              *codes)
    given = (torch.randn_like(spikes), torch.randn_like(v_mem), torch.randn_like(b)) if upstream \
        else (None, None, None)
    args = (*given, torch.randn_like(v_init), torch.randn_like(b_init), v_mem, b, None, v_init,
            b_init, alpha, rho, beta, b0, min_v, *codes, param_grads)
    torch.library.opcheck(lib.alif_backward.default, args)


class TinyALIF(torch.nn.Module):
    def __init__(self, surrogate=None):
        super().__init__()
        self.fc = torch.nn.Linear(6, 6)
        self.b0 = torch.nn.Parameter(torch.full((6,), 0.8))
        self.beta = torch.nn.Parameter(torch.full((6,), 0.5))
        self.surrogate = surrogate

    def forward(self, x):
        spikes, v_mem, *_ = ops.alif(self.fc(x), 0.9, 0.95, self.beta, self.b0,
                                     surrogate=self.surrogate, min_v_mem=-1.0)
        return spikes.sum(1) + v_mem.mean(1)


@pytest.mark.parametrize("surrogate", [None, sg.ArcTan(), _no_surrogate],
                         ids=["default", "arctan", "custom"])
def test_compile_fullgraph_matches_eager(surrogate):
    torch._dynamo.reset()
    model = TinyALIF(surrogate)
    x = torch.randn(4, 20, 6) * 2

    def run(m):
        out = m(x)
        grads = torch.autograd.grad(out.square().sum(), list(model.parameters()))
        return out, grads

    eager_out, eager_grads = run(model)
    out, grads = run(torch.compile(model, fullgraph=True, backend="aot_eager"))
    torch.testing.assert_close(out, eager_out)
    for a, b in zip(grads, eager_grads):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_half_inputs_match_reference_with_float32_state(dtype):
    x = (torch.randn(3, 40, 5) + 0.8).to(dtype).requires_grad_()
    got = ops.alif(x, 0.9, 0.9, 1.0, 1.0, backend="extension")
    want = ops.alif(x, 0.9, 0.9, 1.0, 1.0, backend="reference")
    for a, b in zip(got, want):
        assert a.dtype == b.dtype
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    g_got, = torch.autograd.grad(got[0].float().sum() + got[1].sum(), x)
    g_want, = torch.autograd.grad(want[0].float().sum() + want[1].sum(), x)
    assert g_got.dtype == dtype
    torch.testing.assert_close(g_got, g_want, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("shape", [(2, 0, 3), (0, 5, 3), (2, 5, 0)], ids=["T0", "B0", "N0"])
@pytest.mark.parametrize("backend", ["extension", "reference"])
def test_empty_shapes_pass_the_states_through(shape, backend):
    x = torch.randn(shape, requires_grad=True)
    v_init = torch.randn(shape[0], shape[2], requires_grad=True)
    b_init = torch.rand(shape[0], shape[2], requires_grad=True)
    spikes, v_mem, b, v_last, b_last = ops.alif(x, 0.9, 0.9, 1.0, 1.0, v_init, b_init,
                                                backend=backend)
    assert spikes.shape == v_mem.shape == b.shape == shape
    torch.testing.assert_close(v_last, v_init)
    torch.testing.assert_close(b_last, b_init)
    (v_last.sum() + 2 * b_last.sum()).backward()
    torch.testing.assert_close(v_init.grad, torch.ones_like(v_init))
    torch.testing.assert_close(b_init.grad, torch.full_like(b_init, 2.0))


def test_nan_input_is_visible_in_the_spikes():
    x = torch.ones(1, 4, 2)
    x[0, 1, 0] = float("nan")
    spikes = ops.alif(x, 0.9, 0.9, 1.0, 0.5, backend="extension")[0]
    assert torch.isnan(spikes[0, 1, 0]) and not torch.isnan(spikes[0, :, 1]).any()


@pytest.mark.parametrize("kwargs, error, pattern", [
    (dict(rho=1.5), ValueError, "rho must lie in"),
    (dict(beta=-0.1), ValueError, "beta must be finite and >= 0"),
    (dict(b0=0.0), ValueError, "b0 must be > 0"),
    (dict(b0=0.5, min_v_mem=0.6), ValueError, "b0 must be > min_v_mem"),
    (dict(alpha=-0.1), ValueError, "alpha must lie in"),
    (dict(b_init=torch.zeros(3, 4)), ValueError, r"b_init must have shape \(batch, \*features\)"),
    (dict(max_spikes=0), ValueError, "max_spikes"),
    (dict(reset="hard"), ValueError, "reset must be one of"),
])
def test_bad_arguments_raise_named_errors(kwargs, error, pattern):
    arguments = dict(x=torch.randn(2, 5, 3), alpha=0.9, rho=0.9, beta=1.0, b0=1.0) | kwargs
    with pytest.raises(error, match=pattern):
        ops.alif(**arguments)


def test_raw_op_names_a_wrong_trace_shape():
    x, v_init, b_init, alpha, rho, beta, b0, min_v, *codes = _raw_args()
    spikes, v_mem, b, _, _ = torch.ops.exodus_lightning.alif_forward(
        x, v_init, b_init, alpha, rho, beta, b0, min_v, *codes)
    with pytest.raises(RuntimeError, match="b has shape"):
        torch.ops.exodus_lightning.alif_backward(
            spikes, None, None, v_init, b_init, v_mem, b[:, 1:], None, v_init, b_init, alpha,
            rho, beta, b0, min_v, *codes, 0)
