"""torch.compile(fullgraph=True) and autocast with the custom ops."""

from __future__ import annotations

import pytest
import torch

from exodus_lightning import ops
from exodus_lightning.ops import surrogate as sg


class TinySNN(torch.nn.Module):
    """Linear → synaptic current → LIF → linear readout, written with the functional ops."""

    def __init__(self, surrogate=None, train_threshold=True):
        super().__init__()
        self.fc1 = torch.nn.Linear(6, 8)
        self.fc2 = torch.nn.Linear(8, 3)
        # A fixed threshold takes the backward path without parameter gradients.
        self.threshold = torch.nn.Parameter(torch.full((8,), 0.8),
                                            requires_grad=train_threshold)
        self.surrogate = surrogate

    def forward(self, x):
        current, _ = ops.leaky_integrate(self.fc1(x), 0.7, backend="extension")
        spikes, _, _ = ops.lif(current, 0.9, self.threshold, surrogate=self.surrogate,
                               backend="extension")
        return self.fc2(spikes).mean(1)


def outputs_and_grads(model, x):
    model.zero_grad()
    out = model(x)
    out.square().sum().backward()
    return out.detach(), [p.grad.clone() for p in model.parameters() if p.requires_grad]


class SmoothStep:
    """A user-defined surrogate: the generic (non-fused) path must compile too."""

    def __call__(self, v_mem, threshold):
        s = torch.sigmoid(4 * (v_mem - threshold))
        return 4 * s * (1 - s)


@pytest.mark.slow
@pytest.mark.parametrize("train_threshold", [True, False], ids=["trained", "fixed"])
@pytest.mark.parametrize("surrogate", [None, sg.ArcTan(), SmoothStep()],
                         ids=["default", "arctan", "custom"])
def test_compile_fullgraph_matches_eager(surrogate, train_threshold):
    torch._dynamo.reset()
    model = TinySNN(surrogate, train_threshold)
    x = torch.randn(4, 20, 6) * 2
    eager_out, eager_grads = outputs_and_grads(model, x)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    out, grads = outputs_and_grads(compiled, x)
    torch.testing.assert_close(out, eager_out)
    for a, b in zip(grads, eager_grads):
        torch.testing.assert_close(a, b)


@pytest.mark.slow
@pytest.mark.parametrize("surrogate", [sg.ArcTan(), SmoothStep()], ids=["arctan", "custom"])
def test_compile_fullgraph_with_changing_shapes(surrogate):
    """A smaller last batch or another sequence length recompiles with symbolic sizes: the
    custom surrogate's path must trace with them too (it once called math.gcd on them)."""
    torch._dynamo.reset()
    model = TinySNN(surrogate)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    for shape in [(4, 20, 6), (3, 17, 6), (2, 11, 6)]:
        x = torch.randn(*shape) * 2
        eager_out, eager_grads = outputs_and_grads(model, x)
        out, grads = outputs_and_grads(compiled, x)
        torch.testing.assert_close(out, eager_out)
        for a, b in zip(grads, eager_grads):
            torch.testing.assert_close(a, b)


@pytest.mark.slow
def test_compile_inductor_runs():
    torch._dynamo.reset()
    model = TinySNN()
    x = torch.randn(4, 20, 6) * 2
    eager_out, eager_grads = outputs_and_grads(model, x)
    out, grads = outputs_and_grads(torch.compile(model, fullgraph=True), x)
    torch.testing.assert_close(out, eager_out, rtol=1e-4, atol=1e-5)
    for a, b in zip(grads, eager_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_autocast_runs_and_stays_close_to_float32(dtype):
    model = TinySNN()
    x = torch.randn(4, 30, 6) * 2
    ref_out, ref_grads = outputs_and_grads(model, x)
    with torch.autocast("cpu", dtype=dtype):
        current = model.fc1(x)
        assert current.dtype == dtype
        spikes, v_mem, v_last = ops.lif(current, 0.9, model.threshold, backend="extension")
    assert spikes.dtype == dtype and v_mem.dtype == torch.float32 and v_last.dtype == torch.float32
    out, grads = outputs_and_grads(model, x)  # float32 again: autocast left no state behind
    torch.testing.assert_close(out, ref_out)
    with torch.autocast("cpu", dtype=dtype):
        low_out, low_grads = outputs_and_grads(model, x)
    # Half-precision inputs round the current; spikes may flip near threshold, so compare
    # coarse statistics: outputs and gradient directions.
    assert torch.nn.functional.cosine_similarity(low_out.float().flatten(), ref_out.flatten(),
                                                 dim=0) > 0.95
    for a, b in zip(low_grads, ref_grads):
        assert torch.nn.functional.cosine_similarity(a.float().flatten(), b.flatten(),
                                                     dim=0) > 0.9


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_half_inputs_match_reference_with_float32_state(dtype):
    x = (torch.randn(3, 40, 5) + 0.5).to(dtype).requires_grad_()
    got = ops.lif(x, 0.9, 1.0, backend="extension")
    want = ops.lif(x, 0.9, 1.0, backend="reference")
    for a, b in zip(got, want):
        assert a.dtype == b.dtype
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    g_got, = torch.autograd.grad(got[0].float().sum() + got[1].sum(), x)
    g_want, = torch.autograd.grad(want[0].float().sum() + want[1].sum(), x)
    assert g_got.dtype == dtype
    torch.testing.assert_close(g_got, g_want, rtol=1e-2, atol=1e-2)
