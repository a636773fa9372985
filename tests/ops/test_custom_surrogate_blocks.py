"""Custom surrogates in the backward pass (ops/custom_surrogate.py): evaluated in blocks of batch
rows, the same gradients as one call on the whole membrane, bit for bit, for LIF, ALIF and adLIF;
compiled with torch.compile (automatically after some large backward passes, or from the first
with compiled_surrogate), the same up to rounding; a callable that does not compile runs as it
is, with one warning."""

import copy
import itertools
import pickle
import warnings

import numpy as np
import pytest
import torch

from exodus_lightning import ops
from exodus_lightning.ops import cpu_memory
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
    """Returns (N,) (or ALIF's trace): broadcast against the membrane."""
    return 0.5 / threshold


def with_graph_break(v_mem, threshold):
    """Does not compile with fullgraph=True (as, e.g., a call into a C library would not)."""
    torch._dynamo.graph_break()
    return single_exponential(v_mem, threshold)


CALLABLES = {"exp": single_exponential, "power": power_surrogate, "sigmoid": sigmoid_derivative,
             "per_feature": per_feature_only}
LIF_PARAMS = ("alpha", "threshold", "subtract", "min_v_mem")
ALIF_PARAMS = ("alpha", "rho", "beta", "b0", "min_v_mem")
ADLIF_PARAMS = ("alpha", "beta", "a", "b", "threshold")
# (B, T, *F): B not a multiple of the 2-row blocks, T = 1, features of more than one dim, and
# empty batch, time and features.
SHAPES = [(5, 7, 6), (3, 1, 4), (3, 4, 2, 3), (0, 4, 3), (2, 0, 3), (3, 4, 0)]


def subsets(names):
    return [t for n in range(len(names) + 1) for t in itertools.combinations(names, n)]


def lif_layer(x, state, values, surrogate, reset, backend):
    spikes, v_mem, v_last = ops.lif(
        x, values["alpha"], values["threshold"], state[0], subtract=values["subtract"],
        min_v_mem=values["min_v_mem"], max_spikes=None, surrogate=surrogate, reset=reset,
        backend=backend)
    return spikes, v_mem, v_last


def alif_layer(x, state, values, surrogate, reset, backend):
    return ops.alif(x, values["alpha"], values["rho"], values["beta"], values["b0"], *state,
                    min_v_mem=values["min_v_mem"], max_spikes=None, surrogate=surrogate,
                    reset=reset, backend=backend)


def adlif_layer(x, state, values, surrogate, reset, backend):
    gradient = "exodus" if reset == "subtract" else "slayer"  # both variants of the backward
    return ops.adlif(x, values["alpha"], values["beta"], values["a"], values["b"],
                     values["threshold"], *state, surrogate=surrogate, gradient=gradient,
                     backend=backend)


def parameter_values(model, features, gen):
    def uniform(low, high):
        return torch.rand(features, generator=gen) * (high - low) + low

    if model == "lif":
        return {"alpha": uniform(0.6, 0.9), "threshold": uniform(0.5, 1.5),
                "subtract": uniform(0.5, 1.5), "min_v_mem": -uniform(0, 1)}
    if model == "alif":
        return {"alpha": uniform(0.6, 0.9), "rho": uniform(0.8, 0.95),
                "beta": uniform(0.5, 1.8), "b0": uniform(0.5, 1.5), "min_v_mem": -uniform(1, 2)}
    return {"alpha": uniform(0.6, 0.9), "beta": uniform(0.8, 0.99), "a": uniform(-1, 2),
            "b": uniform(0, 2), "threshold": uniform(0.5, 1.5)}


MODELS = {"lif": (lif_layer, 1), "alif": (alif_layer, 2), "adlif": (adlif_layer, 2)}


def gradients(model, surrogate, shape, trained, dtype=torch.float32, reset="subtract", seed=0,
              backend="extension"):
    """Outputs and gradients of the input, initial states and ``trained`` parameters, with a
    loss on every output."""
    layer, states = MODELS[model]
    gen = torch.Generator().manual_seed(seed)
    features = shape[2:]
    x = (torch.randn(shape, generator=gen) * 0.8 + 0.6).to(dtype).requires_grad_()
    state_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    state = [(torch.randn(shape[:1] + features, generator=gen) * 0.5).to(state_dtype)
             for _ in range(states)]
    if model == "alif":  # the adaptation is a spike trace: b0 + β·b_init > 0
        state[1] = state[1].abs()
    state = [s.requires_grad_() for s in state]
    values = parameter_values(model, features, gen)
    params = {name: v.to(state_dtype).requires_grad_(name in trained)
              for name, v in values.items()}
    outputs = layer(x, state, params, surrogate, reset, backend)
    loss = sum((out * torch.randn(out.shape, generator=gen).to(out.dtype)).sum()
               for out in outputs)
    leaves = [x, *state, *(params[name] for name in trained)]
    return [*outputs, *torch.autograd.grad(loss, leaves, allow_unused=True)]


def assert_same(new, old):
    for a, b in zip(new, old, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert a.dtype == b.dtype and a.shape == b.shape
            assert torch.equal(a, b), (a - b).abs().max()


@pytest.fixture(autouse=True)
def one_thread():
    """Blocks run single-threaded only (custom_surrogate.BLOCKS_MAX_THREADS)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def whole(monkeypatch):
    """Runs a function with the callable evaluated once on the whole membrane (the old path)."""

    def run(fn, *args, **kwargs):
        with monkeypatch.context() as m:
            m.setattr(cs, "BLOCK_ELEMENTS", 1 << 62)
            return fn(*args, **kwargs)

    return run


def two_row_blocks(monkeypatch, shape):
    """Blocks of two batch rows, whatever the row size (no alignment)."""
    row = 1
    for size in shape[1:]:
        row *= size
    monkeypatch.setattr(cs, "BLOCK_ELEMENTS", 2 * row)
    monkeypatch.setattr(cs, "ALIGN_ELEMENTS", 1)


@pytest.mark.parametrize(("model", "trained"), [
    *(("lif", t) for t in subsets(LIF_PARAMS)),
    *(("alif", t) for t in subsets(ALIF_PARAMS)),
    *(("adlif", t) for t in subsets(ADLIF_PARAMS)),
], ids=lambda v: "-".join(v) if isinstance(v, tuple) else v)
def test_blocks_match_whole_membrane_for_every_parameter_mask(model, trained, whole,
                                                              monkeypatch):
    shape = (5, 7, 6)
    old = whole(gradients, model, single_exponential, shape, trained)
    two_row_blocks(monkeypatch, shape)
    assert_same(gradients(model, single_exponential, shape, trained), old)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("model", MODELS)
def test_blocks_match_whole_membrane_for_shapes(model, shape, whole, monkeypatch):
    trained = {"lif": LIF_PARAMS, "alif": ALIF_PARAMS, "adlif": ADLIF_PARAMS}[model]
    old = whole(gradients, model, single_exponential, shape, trained)
    two_row_blocks(monkeypatch, shape)
    assert_same(gradients(model, single_exponential, shape, trained), old)


@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize(
    "dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64], ids=str
)
@pytest.mark.parametrize("name", ["exp", "power", "per_feature"])
@pytest.mark.parametrize("model", MODELS)
def test_blocks_match_for_callables_and_dtypes(model, name, dtype, reset, whole, monkeypatch):
    shape, trained = (7, 9, 5), ("alpha", "beta") if model != "lif" else ("alpha", "threshold")
    old = whole(gradients, model, CALLABLES[name], shape, trained, dtype, reset)
    two_row_blocks(monkeypatch, shape)
    assert_same(gradients(model, CALLABLES[name], shape, trained, dtype, reset), old)


@pytest.mark.parametrize("model", MODELS)
def test_aligned_blocks_match_sigmoid_bit_for_bit(model, whole, monkeypatch):
    """sigmoid rounds differently in PyTorch's scalar loop after a vectorised one: blocks of a
    multiple of ALIGN_ELEMENTS elements leave the same elements to it as the whole membrane."""
    shape, trained = (130, 9, 5), ("alpha",)  # odd rows of 45: 64 rows make whole vectors
    old = whole(gradients, model, sigmoid_derivative, shape, trained)
    monkeypatch.setattr(cs, "BLOCK_ELEMENTS", 2 * 45)
    seen = []

    def spy(v_mem, threshold):
        seen.append(v_mem.shape[0])
        return sigmoid_derivative(v_mem, threshold)

    assert_same(gradients(model, spy, shape, trained), old)
    assert seen == [64, 64, 2]
    if torch.backends.cpu.get_cpu_capability() != "DEFAULT":  # vectorised: the control differs
        monkeypatch.setattr(cs, "ALIGN_ELEMENTS", 1)
        new = gradients(model, sigmoid_derivative, shape, trained)
        assert not all(torch.equal(a, b) for a, b in zip(new, old) if a is not None)


@pytest.mark.parametrize("model", MODELS)
def test_blocks_match_the_reference_backend(model, monkeypatch):
    """In blocks (ALIF: with its threshold trace cut per block) against the BPTT loop."""
    shape = (5, 7, 6)
    trained = {"lif": LIF_PARAMS, "alif": ALIF_PARAMS, "adlif": ADLIF_PARAMS}[model]
    reference = gradients(model, sigmoid_derivative, shape, trained, torch.float64,
                          backend="reference")
    two_row_blocks(monkeypatch, shape)
    extension = gradients(model, sigmoid_derivative, shape, trained, torch.float64)
    for a, b in zip(extension, reference, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("model", MODELS)
def test_several_threads_evaluate_the_whole_membrane_at_once(model, monkeypatch):
    """With 2 intra-op threads the callable runs once (blocks would wait on every thread)."""
    seen = []

    def spy(v_mem, threshold):
        seen.append(tuple(v_mem.shape))
        return sigmoid_derivative(v_mem, threshold)

    two_row_blocks(monkeypatch, (5, 7, 6))
    torch.set_num_threads(2)
    gradients(model, spy, (5, 7, 6), ())
    assert seen == [(5, 7, 6)]


@pytest.mark.parametrize("model", MODELS)
def test_blocks_are_used(model, monkeypatch):
    """The callable sees blocks of 2 rows (the last one of 1); ALIF's trace comes with them."""
    seen = []

    def spy(v_mem, threshold):
        seen.append((tuple(v_mem.shape), tuple(threshold.shape)))
        return sigmoid_derivative(v_mem, threshold)

    two_row_blocks(monkeypatch, (5, 7, 6))
    gradients(model, spy, (5, 7, 6), ())
    trace = model == "alif"
    assert seen == [((b, 7, 6), (b, 7, 6) if trace else (6,)) for b in (2, 2, 1)]


def test_rows_per_block():
    assert cs.rows_per_block(32, 300 * 2048) == 1  # more than BLOCK_ELEMENTS a row: one row
    assert cs.rows_per_block(32, 1 << 14) == 16  # BLOCK_ELEMENTS' worth
    assert cs.rows_per_block(8, 1 << 14) == 8  # at most the batch
    assert cs.rows_per_block(10**6, 3) == 87424  # 2¹⁸ / 3 rounded up to a multiple of 64
    assert cs.rows_per_block(1000, 299 * 2047) == 64  # odd rows: 64 of them make whole vectors
    assert cs.rows_per_block(7, 0) == 7 and cs.rows_per_block(0, 5) == 1


def test_compiled_surrogate_matches_eager(whole):
    shape, trained = (5, 7, 6), ("alpha", "threshold")
    old = whole(gradients, "lif", single_exponential, shape, trained)
    compiled = ops.compiled_surrogate(single_exponential)
    new = gradients("lif", compiled, shape, trained)
    assert compiled._compiled is not None and compiled._compiled.write is not None
    for a, b in zip(new, old, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model", MODELS)
def test_surrogate_that_does_not_compile_runs_in_blocks(model, whole, monkeypatch):
    shape, trained = (5, 7, 6), ("alpha",)
    old = whole(gradients, model, with_graph_break, shape, trained)
    two_row_blocks(monkeypatch, shape)
    compiled = ops.compiled_surrogate(with_graph_break)
    with pytest.warns(UserWarning, match="does not compile"):
        new = gradients(model, compiled, shape, trained)
    assert_same(new, old)
    assert_same(gradients(model, compiled, shape, trained), old)  # no second warning or try


def test_compiled_surrogate_is_the_callable():
    compiled = ops.compiled_surrogate(power_surrogate)
    v, theta = torch.randn(2, 3, 4), torch.ones(4)
    assert torch.equal(compiled(v, theta), power_surrogate(v, theta))
    assert ops.compiled_surrogate(compiled) is compiled
    fused = ops.surrogate.SingleExponential()
    assert ops.compiled_surrogate(fused) is fused  # fused in the kernels already
    assert pickle.loads(pickle.dumps(compiled)).fn is power_surrogate
    assert copy.deepcopy(compiled)._compiled is None
    with pytest.raises(TypeError, match="compiled_surrogate needs a callable"):
        ops.compiled_surrogate(1.0)


def test_empty_huge_pages():
    t = cpu_memory.empty_huge_pages((3, 1 << 20), torch.float32, torch.device("cpu"))
    assert t.shape == (3, 1 << 20) and t.dtype == torch.float32 and t.is_contiguous()
    t.fill_(2.0)  # writable
    assert t.sum().item() == 6 * (1 << 20)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16], ids=str)
def test_compiled_surrogate_on_empty_shapes_and_dtypes(dtype, whole):
    """Empty batch, time or features, float64 and half inputs: no error, the eager values."""
    compiled = ops.compiled_surrogate(single_exponential)
    for shape in [(0, 4, 3), (2, 0, 3), (3, 4, 0), (5, 7, 6)]:
        old = whole(gradients, "lif", single_exponential, shape, LIF_PARAMS, dtype)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            new = gradients("lif", compiled, shape, LIF_PARAMS, dtype)
        assert not [w for w in caught if "does not compile" in str(w.message)], shape
        for a, b in zip(new, old, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.fixture
def auto_compile_small(monkeypatch):
    """Plain callables compiled from their third backward pass on a (5, 7, 6) membrane."""
    monkeypatch.setattr(cs, "AUTO_COMPILE_ELEMENTS", 5 * 7 * 6)
    monkeypatch.setattr(cs, "AUTO_COMPILE_AFTER", 2)


def test_plain_callable_is_compiled_after_large_backward_passes(auto_compile_small):
    def surrogate(v_mem, threshold):  # a callable of this test's own
        return single_exponential(v_mem, threshold)

    shape, trained = (5, 7, 6), ("alpha", "threshold")
    exact = gradients("lif", ops.uncompiled_surrogate(surrogate), shape, trained)
    assert auto_state(surrogate) is None  # uncompiled_surrogate: never counted
    gradients("lif", surrogate, (4, 7, 6), trained)  # under AUTO_COMPILE_ELEMENTS: not counted
    assert auto_state(surrogate) is None
    for calls in (1, 2):
        assert_same(gradients("lif", surrogate, shape, trained), exact)  # runs as it is
        assert auto_state(surrogate).large_calls == calls
        assert auto_state(surrogate).compiled is None
    for _ in range(2):
        compiled = gradients("lif", surrogate, shape, trained)
        state = auto_state(surrogate)
        assert state.compiled is not None and state.compiled.write is not None
        for a, b in zip(compiled, exact, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model", MODELS)
def test_auto_compile_of_a_callable_that_does_not_compile(model, auto_compile_small, whole):
    def surrogate(v_mem, threshold):
        return with_graph_break(v_mem, threshold)

    shape, trained = (5, 7, 6), ("alpha",)
    old = whole(gradients, model, ops.uncompiled_surrogate(surrogate), shape, trained)
    for _ in range(2):
        assert_same(gradients(model, surrogate, shape, trained), old)
    with pytest.warns(UserWarning, match="does not compile"):
        assert_same(gradients(model, surrogate, shape, trained), old)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning or try
        assert_same(gradients(model, surrogate, shape, trained), old)


def auto_state(fn):
    """fn's record of large backward passes (and compiled formula), None if it has none."""
    ref, state = cs._AUTO_COMPILE.get(id(fn), (None, None))
    return state if ref is not None and ref() is fn else None


class UnhashableSurrogate:
    """A callable with value equality and no hash, like sinabs' surrogates (dataclasses)."""

    __hash__ = None

    def __eq__(self, other):
        return isinstance(other, UnhashableSurrogate)

    def __call__(self, v_mem, threshold):
        return single_exponential(v_mem, threshold)


class NoWeakReferences:
    """A callable that cannot be referred to weakly (__slots__ without __weakref__)."""

    __slots__ = ()

    def __call__(self, v_mem, threshold):
        return single_exponential(v_mem, threshold)


def test_callables_are_kept_by_identity(auto_compile_small):
    """An unhashable callable is compiled too (kept by identity); one that cannot be referred
    to weakly runs as it is; a lambda made per step is forgotten with it."""
    shape, trained = (5, 7, 6), ("alpha",)
    exact = gradients("lif", ops.uncompiled_surrogate(single_exponential), shape, trained)
    unhashable, equal_one = UnhashableSurrogate(), UnhashableSurrogate()
    for _ in range(3):
        new = gradients("lif", unhashable, shape, trained)
    assert auto_state(unhashable).compiled is not None and auto_state(equal_one) is None
    for a, b in zip(new, exact, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for _ in range(3):
        assert_same(gradients("lif", NoWeakReferences(), shape, trained), exact)
    kept = len(cs._AUTO_COMPILE)
    for _ in range(4):
        assert_same(gradients("lif", lambda v, t: single_exponential(v, t), shape, trained),
                    exact)
    assert len(cs._AUTO_COMPILE) == kept  # each lambda forgotten with it


def test_uncompiled_surrogate_is_the_callable():
    uncompiled = ops.uncompiled_surrogate(power_surrogate)
    v, theta = torch.randn(2, 3, 4), torch.ones(4)
    assert torch.equal(uncompiled(v, theta), power_surrogate(v, theta))
    assert ops.uncompiled_surrogate(uncompiled) is uncompiled
    assert ops.compiled_surrogate(uncompiled).fn is power_surrogate  # the last word counts
    assert ops.uncompiled_surrogate(ops.compiled_surrogate(power_surrogate)).fn is power_surrogate
    fused = ops.surrogate.SingleExponential()
    assert ops.uncompiled_surrogate(fused) is fused
    assert pickle.loads(pickle.dumps(uncompiled)).fn is power_surrogate
    with pytest.raises(TypeError, match="uncompiled_surrogate needs a callable"):
        ops.uncompiled_surrogate("exp")


def test_many_callables_compile_in_one_process():
    """torch.compile's per-function limit of compiled graphs (8) is not shared between them."""
    for index in range(10):  # ten functions, each with code of its own
        surrogate = eval(f"lambda v, t: {index + 1} * single_exponential(v, t)")  # noqa: S307
        compiled = ops.compiled_surrogate(surrogate)
        gradients("lif", compiled, (3, 4, 5), ("alpha",))
        assert compiled._compiled.write is not None, index


def test_compiled_sigma_reuses_its_memory_across_layers_and_steps():
    """On CPU σ's memory is kept between backward passes (no page faults for a fresh one):
    layers of other sizes share it, and every gradient stays what the callable gives."""
    compiled = ops.compiled_surrogate(single_exponential)
    exact = ops.uncompiled_surrogate(single_exponential)
    trained = ("alpha", "threshold")
    for shape in [(5, 7, 6), (3, 7, 6), (5, 9, 6), (5, 7, 6)]:  # smaller, then larger, σ
        new = gradients("lif", compiled, shape, trained, seed=sum(shape))
        old = gradients("lif", exact, shape, trained, seed=sum(shape))
        for a, b in zip(new, old, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    spare = compiled._compiled._spare
    assert spare is not None and spare.numel() == 5 * 9 * 6  # the largest σ
    other_dtype = compiled._compiled._buffer(torch.empty(3, 7, 6, dtype=torch.float64))
    assert other_dtype.dtype == torch.float64 and compiled._compiled._spare is spare  # kept
    taken = compiled._compiled._buffer(torch.empty(3, 7, 6))
    assert taken.data_ptr() == spare.data_ptr() and compiled._compiled._spare is None
    fresh = compiled._compiled._buffer(torch.empty(3, 7, 6))  # while taken: never shared
    assert fresh.data_ptr() != taken.data_ptr()


def test_release_kept_memory(auto_compile_small):
    """Both the compiled_surrogate wrappers' and the automatically compiled callables' σ."""
    def surrogate(v_mem, threshold):  # compiled automatically from its third backward pass
        return single_exponential(v_mem, threshold)

    compiled = ops.compiled_surrogate(single_exponential)
    gradients("lif", compiled, (5, 7, 6), ("alpha",))
    for _ in range(3):
        gradients("lif", surrogate, (5, 7, 6), ("alpha",))
    kept = [compiled._compiled, auto_state(surrogate).compiled]
    assert all(formula._spare is not None for formula in kept)
    cs.release_kept_memory()
    assert all(formula._spare is None for formula in kept)
    gradients("lif", compiled, (5, 7, 6), ("alpha",))  # allocates and keeps it again
    assert compiled._compiled._spare is not None


def test_compiles_with_a_computed_threshold_where_warnings_are_errors():
    """A threshold computed from a parameter (a non-leaf tensor, as nn layers pass it) does not
    make torch.compile warn (under pytest -W error, or warnings.simplefilter("error"))."""
    compiled = ops.compiled_surrogate(sigmoid_derivative)
    log_threshold = torch.zeros(6, requires_grad=True)
    x = torch.randn(5, 7, 6, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        spikes, _, _ = ops.lif(x, 0.9, log_threshold.exp(), surrogate=compiled)
        spikes.sum().backward()
    assert compiled._compiled.write is not None
    assert log_threshold.grad is not None and torch.isfinite(log_threshold.grad).all()


@pytest.mark.parametrize("op", ["lif", "alif", "adlif", "lif_recurrent", "alif_recurrent",
                                "adlif_recurrent"])
def test_a_surrogate_may_return_a_python_number(op):
    """A straight-through estimator written as ``lambda v, threshold: 1.0``: anything that
    broadcasts is allowed, a number too, on both backends."""
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 6, 3, dtype=torch.float64, generator=g) + 0.8
    weight = torch.randn(3, 3, dtype=torch.float64, generator=g) * 0.3
    calls = {
        "lif": lambda x, **k: ops.lif(x, 0.9, 1.0, **k),
        "alif": lambda x, **k: ops.alif(x, 0.9, 0.9, 0.5, 1.0, **k),
        "adlif": lambda x, **k: ops.adlif(x, 0.9, 0.9, 0.5, 0.5, 1.0, **k),
        "lif_recurrent": lambda x, **k: ops.lif_recurrent(x, weight, None, 0.9, 1.0, **k),
        "alif_recurrent": lambda x, **k: ops.alif_recurrent(x, weight, None, 0.9, 0.9, 0.5,
                                                            1.0, **k),
        "adlif_recurrent": lambda x, **k: ops.adlif_recurrent(x, weight, None, 0.9, 0.9, 0.5,
                                                              0.5, 1.0, **k),
    }
    grads = []
    for backend in ("extension", "reference"):
        x = x0.clone().requires_grad_()
        spikes = calls[op](x, surrogate=lambda v, threshold: 1.0, backend=backend)[0]
        grads.append(torch.autograd.grad((spikes * torch.arange(6.0).view(1, 6, 1)).sum(),
                                         x)[0])
    assert grads[1].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1])


def test_a_surrogate_returning_a_number_is_a_fill_on_the_device_not_a_host_copy():
    """A straight-through 1.0 on CUDA: torch.full there, not a copy from host memory (which
    waits for the device every backward pass and cannot be captured in a CUDA graph). Checked
    on fake CUDA tensors, so no GPU is needed to see which ops run."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils._python_dispatch import TorchDispatchMode

    class Record(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(str(func))
            return func(*args, **(kwargs or {}))

    with FakeTensorMode():
        v_mem = torch.empty(2, 3, 4, device="cuda", dtype=torch.bfloat16)
        threshold = torch.empty(4, device="cuda")
        with Record() as record:
            sigma = cs.evaluate(lambda v, theta: 1.0, v_mem, threshold)
    assert sigma.device.type == "cuda" and sigma.dtype == torch.bfloat16
    assert sigma.shape == v_mem.shape and sigma.is_contiguous()
    assert "aten.full.default" in record.ops
    assert not any("copy" in op for op in record.ops), record.ops
    # the values, on the CPU: the number everywhere, also a NumPy scalar
    v_mem = torch.randn(2, 3, 4)
    for value in (1.0, 2, np.float32(0.5)):
        sigma = cs.evaluate(lambda v, theta, value=value: value, v_mem, torch.ones(4))
        assert torch.equal(sigma, torch.full_like(v_mem, float(value)))
