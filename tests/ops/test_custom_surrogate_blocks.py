"""Custom surrogates evaluated in blocks of batch rows, or compiled: the same gradients as on the
whole membrane (bit for bit when evaluated as they are, for formulas PyTorch rounds the same at
every position: not sigmoid, whose scalar loop at the end of a vectorised one differs)."""

import itertools

import pytest
import torch

from exodus_lightning import ops
from exodus_lightning.ops import custom_surrogate as cs

from .raw_cases import custom_surrogate as power_surrogate


def single_exponential(v_mem, threshold):
    """SingleExponential's formula as a plain function."""
    width = threshold * 0.5
    return 1.0 / width * torch.exp(-(v_mem - threshold).abs() / width)


def sigmoid_derivative(v_mem, threshold):
    s = torch.sigmoid(4 * (v_mem - threshold))
    return 4 * s * (1 - s)


def per_feature_only(v_mem, threshold):
    """Returns (N,): broadcast against the membrane."""
    return 0.5 / threshold


# Bit for bit in blocks.
EXACT = {"exp": single_exponential, "power": power_surrogate, "per_feature": per_feature_only}
# (B, T, *F): B not a multiple of the 2-row blocks, T = 1, features of more than one dim, empty.
SHAPES = [(5, 7, 6), (3, 1, 4), (3, 4, 2, 3), (0, 4, 3), (2, 0, 3)]
PARAMS = ("alpha", "threshold", "subtract", "min_v_mem")


def gradients(surrogate, shape, trained, dtype=torch.float32, reset="subtract", seed=0):
    """Outputs and input/parameter gradients of ops.lif with a loss on spikes and v_mem."""
    gen = torch.Generator().manual_seed(seed)
    features = shape[2:]
    x = (torch.randn(shape, generator=gen) * 0.8 + 0.6).to(dtype).requires_grad_()
    v_init = torch.randn(shape[:1] + features, generator=gen).requires_grad_()
    values = {
        "alpha": torch.rand(features, generator=gen) * 0.3 + 0.6,
        "threshold": torch.rand(features, generator=gen) + 0.5,
        "subtract": torch.rand(features, generator=gen) + 0.5,
        "min_v_mem": -torch.rand(features, generator=gen),
    }
    params = {name: v.requires_grad_(name in trained) for name, v in values.items()}
    spikes, v_mem, v_last = ops.lif(
        x,
        params["alpha"],
        params["threshold"],
        v_init,
        subtract=params["subtract"],
        min_v_mem=params["min_v_mem"],
        surrogate=surrogate,
        reset=reset,
        backend="extension",
    )
    up_s = torch.randn(spikes.shape, generator=gen).to(dtype)
    up_v = torch.randn(v_mem.shape, generator=gen)
    loss = (spikes * up_s).sum() + (v_mem * up_v).sum() + v_last.sum()
    leaves = [x, v_init, *(params[name] for name in trained)]
    return [spikes, v_mem, *torch.autograd.grad(loss, leaves, allow_unused=True)]


def assert_same(new, old):
    for a, b in zip(new, old, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert a.dtype == b.dtype and torch.equal(a, b)


@pytest.fixture
def whole(monkeypatch):
    """Runs a function with the callable evaluated once on the whole membrane, uncompiled."""

    def run(fn, *args, **kwargs):
        with monkeypatch.context() as m:
            m.setattr(cs, "BLOCK_ELEMENTS", 1 << 62)
            return fn(*args, **kwargs)

    monkeypatch.setattr(cs, "COMPILE_MIN_ELEMENTS", 1 << 62)
    return run


def two_row_blocks(monkeypatch, shape):
    row = 1
    for size in shape[1:]:
        row *= size
    monkeypatch.setattr(cs, "BLOCK_ELEMENTS", 2 * row)


@pytest.mark.parametrize(
    "trained", [t for n in range(5) for t in itertools.combinations(PARAMS, n)], ids="-".join
)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_blocks_match_whole_membrane_bit_for_bit(shape, trained, whole, monkeypatch):
    old = whole(gradients, single_exponential, shape, trained)
    two_row_blocks(monkeypatch, shape)
    assert_same(gradients(single_exponential, shape, trained), old)


@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize(
    "dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64], ids=str
)
@pytest.mark.parametrize("name", EXACT)
def test_blocks_match_for_callables_and_dtypes(name, dtype, reset, whole, monkeypatch):
    shape, trained = (7, 9, 5), ("alpha", "threshold")
    old = whole(gradients, EXACT[name], shape, trained, dtype, reset)
    two_row_blocks(monkeypatch, shape)
    assert_same(gradients(EXACT[name], shape, trained, dtype, reset), old)


def test_blocks_match_sigmoid_up_to_rounding(whole, monkeypatch):
    shape, trained = (7, 9, 5), ("alpha", "threshold")
    old = whole(gradients, sigmoid_derivative, shape, trained)
    two_row_blocks(monkeypatch, shape)
    for a, b in zip(gradients(sigmoid_derivative, shape, trained), old, strict=True):
        torch.testing.assert_close(a, b)


def test_blocks_are_used(whole, monkeypatch):
    """The blocked path is taken: the callable sees blocks of 2 rows (the last one of 1)."""
    seen = []

    def spy(v_mem, threshold):
        seen.append(tuple(v_mem.shape))
        return sigmoid_derivative(v_mem, threshold)

    two_row_blocks(monkeypatch, (5, 7, 6))
    gradients(spy, (5, 7, 6), ())
    assert seen == [(2, 7, 6), (2, 7, 6), (1, 7, 6)]


def test_compiled_surrogate_matches_eager(whole, monkeypatch):
    """Over COMPILE_MIN_ELEMENTS the callable runs compiled: equal up to rounding."""
    shape, trained = (5, 7, 6), ("alpha", "threshold")
    old = whole(gradients, single_exponential, shape, trained)
    monkeypatch.setattr(cs, "COMPILE_MIN_ELEMENTS", 0)
    new = gradients(single_exponential, shape, trained)
    assert cs._compiled[single_exponential].compiled is not None
    for a, b in zip(new, old, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_surrogate_that_does_not_compile_runs_uncompiled(whole, monkeypatch):
    def with_graph_break(v_mem, threshold):
        torch._dynamo.graph_break()  # what, e.g., a call into an unknown C library amounts to
        return single_exponential(v_mem, threshold)

    shape = (3, 4, 5)
    old = whole(gradients, with_graph_break, shape, ("threshold",))
    monkeypatch.setattr(cs, "COMPILE_MIN_ELEMENTS", 0)
    with pytest.warns(UserWarning, match="does not compile"):
        new = gradients(with_graph_break, shape, ("threshold",))
    assert_same(new, old)
    assert_same(gradients(with_graph_break, shape, ("threshold",)), old)  # no second warning
