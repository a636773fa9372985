"""The functional adLIF op: finite differences, opcheck, torch.compile, half inputs, edge cases
and argument errors (raw-op parity with the reference on every backend is in test_raw_ops.py,
the scan against autograd in test_adlif_math.py)."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

from exodus_lightning import ops
from exodus_lightning.ops import surrogate as sg
from exodus_lightning.ops._library import ADLIF_PARAM_GRAD_BITS

from .test_opcheck import skip_autograd_on_emulation


def _no_surrogate(u_mem, threshold):
    """dS/du = 0: the spikes are then constants of the gradient, as for finite differences."""
    return torch.zeros_like(u_mem)


def _inputs(b=2, t=14, n=4, seed=3, dtype=torch.float64, grad=True):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, t, n, generator=gen, dtype=dtype) * 3 + 3
    # α, β, a, b, θ: SE-adLIF-like values (a, b include the factor q).
    params = [torch.full((n,), value, dtype=dtype) for value in (0.9, 0.98, 20.0, 40.0, 1.0)]
    u_init = torch.randn(b, n, generator=gen, dtype=dtype) * 0.3
    w_init = torch.randn(b, n, generator=gen, dtype=dtype) * 0.3
    tensors = [x, *params, u_init, w_init]
    return [t.requires_grad_(grad) for t in tensors]


@pytest.mark.parametrize("gradient", ["slayer", "exodus"])
def test_adlif_gradcheck_with_a_zero_surrogate(gradient):
    """With dS/du = 0 the op's gradient is the true derivative of its piecewise-smooth outputs
    (spikes fixed), so finite differences check every non-surrogate term of the scan: the
    decays, the input scaling, the reset, the coupling a, the spike drive b and the states."""
    inputs = _inputs()

    def outputs(*args):
        _, u_mem, w, u_last, w_last = ops.adlif(*args, surrogate=_no_surrogate,
                                                gradient=gradient, backend="extension")
        return u_mem, w, u_last, w_last

    spikes = ops.adlif(*inputs)[0]
    assert spikes.sum() > 5  # resets and adaptation really happen inside the checked window
    assert gradcheck(outputs, inputs, eps=1e-7, atol=1e-6)


def _raw_args(device="cpu", grad=False):
    x, alpha, beta, a, b, threshold, u_init, w_init = _inputs(grad=grad)
    tensors = [t.to(device) for t in (x, u_init, w_init, alpha, beta, a, b, threshold)]
    return (*tensors, 1, 0, [0.2, 0.2])


@pytest.mark.parametrize("requires_grad", [False, True], ids=["nograd", "grad"])
def test_opcheck_adlif_forward(raw_backend, requires_grad):
    lib, device = raw_backend
    skip_autograd_on_emulation(lib, requires_grad)
    args = _raw_args(device, requires_grad)
    if requires_grad:
        args = tuple(a.detach().requires_grad_() if isinstance(a, torch.Tensor) else a
                     for a in args)
    torch.library.opcheck(lib.adlif_forward.default, args)


@pytest.mark.parametrize("param_grads", [0, 1, 6, sum(ADLIF_PARAM_GRAD_BITS.values())],
                         ids=["none", "alpha", "beta_a", "all"])
@pytest.mark.parametrize("upstream", [True, False], ids=["all", "last_only"])
def test_opcheck_adlif_backward(raw_backend, param_grads, upstream):
    lib, device = raw_backend
    x, u_init, w_init, alpha, beta, a, b, threshold, *codes = _raw_args(device)
    spikes, u_mem, w, _, _ = lib.adlif_forward(x, u_init, w_init, alpha, beta, a, b, threshold,
                                               *codes)
    given = (torch.randn_like(spikes), torch.randn_like(u_mem), torch.randn_like(w)) if upstream \
        else (None, None, None)
    x_given = x if param_grads & ADLIF_PARAM_GRAD_BITS["alpha"] else None
    args = (*given, torch.randn_like(u_init), torch.randn_like(w_init), u_mem, w, x_given, None,
            u_init, w_init, alpha, beta, a, b, threshold, *codes, param_grads)
    torch.library.opcheck(lib.adlif_backward.default, args)


class TinyAdLIF(torch.nn.Module):
    def __init__(self, surrogate=None):
        super().__init__()
        self.fc = torch.nn.Linear(6, 6)
        self.alpha = torch.nn.Parameter(torch.full((6,), 0.9))
        self.a = torch.nn.Parameter(torch.full((6,), 10.0))
        self.b = torch.nn.Parameter(torch.full((6,), 30.0))
        self.surrogate = surrogate

    def forward(self, x):
        spikes, u_mem, w, *_ = ops.adlif(self.fc(x) * 4 + 2, self.alpha, 0.98, self.a, self.b,
                                         surrogate=self.surrogate)
        return spikes.sum(1) + u_mem.mean(1) + w.mean(1)


@pytest.mark.parametrize("surrogate", [None, sg.ArcTan(), _no_surrogate],
                         ids=["default", "arctan", "custom"])
def test_compile_fullgraph_matches_eager(surrogate):
    torch._dynamo.reset()
    model = TinyAdLIF(surrogate)
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
    x = (3 * torch.randn(3, 40, 5) + 3).to(dtype).requires_grad_()
    alpha = torch.full((5,), 0.9, requires_grad=True)
    got = ops.adlif(x, alpha, 0.98, 20.0, 40.0, backend="extension")
    want = ops.adlif(x, alpha, 0.98, 20.0, 40.0, backend="reference")
    for a, b in zip(got, want):
        assert a.dtype == b.dtype
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    # Without a spike gradient the backward op reads x in the state dtype (for dL/dα).
    for loss in (lambda o: o[0].float().sum() + o[1].sum(), lambda o: o[1].sum() + o[2].sum()):
        g_got = torch.autograd.grad(loss(got), (x, alpha), retain_graph=True)
        g_want = torch.autograd.grad(loss(want), (x, alpha), retain_graph=True)
        assert g_got[0].dtype == dtype
        for a, b in zip(g_got, g_want):
            torch.testing.assert_close(a, b, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("shape", [(2, 0, 3), (0, 5, 3), (2, 5, 0)], ids=["T0", "B0", "N0"])
@pytest.mark.parametrize("backend", ["extension", "reference"])
def test_empty_shapes_pass_the_states_through(shape, backend):
    x = torch.randn(shape, requires_grad=True)
    u_init = torch.randn(shape[0], shape[2], requires_grad=True)
    w_init = torch.randn(shape[0], shape[2], requires_grad=True)
    alpha = torch.full((shape[2],), 0.9, requires_grad=True)
    spikes, u_mem, w, u_last, w_last = ops.adlif(x, alpha, 0.98, 20.0, 40.0, 1.0, u_init, w_init,
                                                 backend=backend)
    assert spikes.shape == u_mem.shape == w.shape == shape
    torch.testing.assert_close(u_last, u_init)
    torch.testing.assert_close(w_last, w_init)
    (u_last.sum() + 2 * w_last.sum() + spikes.sum()).backward()
    torch.testing.assert_close(u_init.grad, torch.ones_like(u_init))
    torch.testing.assert_close(w_init.grad, torch.full_like(w_init, 2.0))
    assert alpha.grad is None or not alpha.grad.any()


def test_batch_of_one_and_a_single_step():
    x = torch.tensor([[[1.5, 0.5]]], dtype=torch.float64, requires_grad=True)
    got = ops.adlif(x, 0.5, 0.9, 2.0, 3.0, backend="extension")
    want = ops.adlif(x, 0.5, 0.9, 2.0, 3.0, backend="reference")
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # u = 0.5·1.5 = 0.75 does not cross θ = 1; w = 0.1·2·0.75.
    assert got[0].sum() == 0 and got[2][0, 0, 0].item() == pytest.approx(0.15)


def test_nan_input_is_visible_in_the_spikes():
    x = torch.full((1, 4, 2), 3.0)
    x[0, 1, 0] = float("nan")
    spikes = ops.adlif(x, 0.5, 0.9, 2.0, 3.0, backend="extension")[0]
    assert torch.isnan(spikes[0, 1:, 0]).all() and not torch.isnan(spikes[0, :, 1]).any()
    assert spikes[0, 0, 0] == 1.0


def test_infinite_input_with_the_detached_reset_keeps_the_gradient_finite():
    """u = inf spikes and resets to 0 (a select, as the reference): finite states afterwards."""
    x = torch.ones(1, 3, 1, dtype=torch.float64)
    x[0, 0, 0] = float("inf")
    x.requires_grad_()
    spikes, u_mem, w, u_last, w_last = ops.adlif(x, 0.5, 0.9, 0.0, 3.0, backend="extension")
    assert spikes[0, 0, 0] == 1.0 and torch.isfinite(w).all() and torch.isfinite(u_last).all()
    w_last.sum().backward()
    assert torch.isfinite(x.grad[0, 1:]).all()


@pytest.mark.parametrize("kwargs, error, pattern", [
    (dict(alpha=1.5), ValueError, "alpha must lie in"),
    (dict(alpha=-0.1), ValueError, "alpha must lie in"),
    (dict(beta=-0.1), ValueError, "beta must lie in"),
    (dict(a=float("inf")), ValueError, "a must be finite"),
    (dict(b=torch.tensor([1.0, float("nan"), 1.0])), ValueError, "b must be finite"),
    (dict(threshold=0.0), ValueError, "threshold must be > 0"),
    (dict(alpha=torch.full((4,), 0.9)), ValueError, "alpha of shape"),
    (dict(w_init=torch.zeros(3, 4)), ValueError, r"w_init must have shape \(batch, \*features\)"),
    (dict(gradient="bptt"), ValueError, "gradient must be one of"),
    (dict(surrogate=3.0), TypeError, "surrogate must be a callable"),
])
def test_bad_arguments_raise_named_errors(kwargs, error, pattern):
    arguments = dict(x=torch.randn(2, 5, 3), alpha=0.9, beta=0.98, a=20.0, b=40.0) | kwargs
    with pytest.raises(error, match=pattern):
        ops.adlif(**arguments)


def test_raw_op_names_a_wrong_trace_shape_and_a_missing_x():
    x, u_init, w_init, alpha, beta, a, b, threshold, *codes = _raw_args()
    spikes, u_mem, w, _, _ = torch.ops.exodus_lightning.adlif_forward(
        x, u_init, w_init, alpha, beta, a, b, threshold, *codes)
    with pytest.raises(RuntimeError, match="w has shape"):
        torch.ops.exodus_lightning.adlif_backward(
            spikes, None, None, u_init, w_init, u_mem, w[:, 1:], None, None, u_init, w_init,
            alpha, beta, a, b, threshold, *codes, 0)
    with pytest.raises(RuntimeError, match="needs x for grad_alpha"):
        torch.ops.exodus_lightning.adlif_backward(
            spikes, None, None, u_init, w_init, u_mem, w, None, None, u_init, w_init, alpha,
            beta, a, b, threshold, *codes, ADLIF_PARAM_GRAD_BITS["alpha"])


def test_x_is_kept_for_backward_only_when_alpha_needs_a_gradient():
    x, alpha, beta, a, b, threshold, u_init, w_init = _inputs(grad=False)
    x.requires_grad_()
    saved = []

    def pack(t):
        saved.append(t)
        return t

    for alpha_grad in (False, True):
        saved.clear()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            ops.adlif(x, alpha.clone().requires_grad_(alpha_grad), beta, a, b, threshold,
                      backend="extension")
        assert any(t is x for t in saved) == alpha_grad
