"""Bad input fails early with an error that names the argument and what is allowed."""

from __future__ import annotations

import pytest
import torch

from exodus_lightning import ops

X = torch.randn(2, 5, 3)


@pytest.mark.parametrize("kwargs, error, pattern", [
    (dict(x=torch.randn(5)), ValueError, "x must have shape"),
    (dict(x=torch.ones(2, 5, 3, dtype=torch.int64)), TypeError, "x must be a floating"),
    (dict(x=[[1.0]]), TypeError, "x must be a torch.Tensor"),
    (dict(alpha=-0.1), ValueError, r"alpha must lie in \[0, 1\]"),
    (dict(alpha=1.2), ValueError, r"alpha must lie in \[0, 1\]"),
    (dict(alpha=torch.tensor([0.5, 0.9, 1.5])), ValueError, "alpha must lie"),
    (dict(alpha=torch.rand(4)), ValueError, "alpha of shape .* does not broadcast"),
    (dict(alpha=torch.tensor([1, 1, 1])), TypeError, "alpha must be a floating tensor"),
    (dict(alpha="0.9"), TypeError, "alpha must be a float or a tensor"),
    (dict(threshold=0.0), ValueError, "threshold must be > 0"),
    (dict(threshold=0.5, min_v_mem=0.5), ValueError, "threshold must be > min_v_mem"),
    (dict(threshold=torch.tensor([1.0, 0.2, 1.0]), min_v_mem=0.3), ValueError,
     "threshold must be > min_v_mem"),
    (dict(max_spikes=0), ValueError, "max_spikes must be None"),
    (dict(max_spikes=-1), ValueError, "max_spikes must be None"),
    (dict(max_spikes=1.5), ValueError, "max_spikes must be None"),
    (dict(max_spikes=2**32 + 1), ValueError, "max_spikes must be None"),  # was truncated to 1
    (dict(reset="hard"), ValueError, "reset must be one of"),
    (dict(gradient="bptt"), ValueError, "gradient must be one of"),
    (dict(backend="cuda"), ValueError, "backend must be one of"),
    (dict(surrogate=3.0), TypeError, "surrogate must be a callable"),
    (dict(v_init=torch.zeros(3, 3)), ValueError, r"v_init must have shape \(batch, \*features\)"),
    (dict(v_init=torch.zeros(2, 3, dtype=torch.int32)), TypeError, "v_init must be a floating"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_bad_arguments_raise_named_errors(kwargs, error, pattern):
    call = dict(x=X, alpha=0.9, threshold=1.0)
    call.update(kwargs)
    x, alpha, threshold = call.pop("x"), call.pop("alpha"), call.pop("threshold")
    with pytest.raises(error, match=pattern):
        ops.lif(x, alpha, threshold, **call)


@pytest.mark.parametrize("backend", ["extension", "reference"])
def test_validation_is_the_same_for_both_backends(backend):
    with pytest.raises(ValueError, match="threshold must be > 0"):
        ops.lif(X, 0.9, -1.0, backend=backend)


@pytest.mark.parametrize("op", ["lif", "alif", "lif_recurrent"])
@pytest.mark.parametrize("backend", ["extension", "reference"])
def test_a_parameter_with_a_batch_axis_of_one_is_per_feature(op, backend):
    """(1, *features) (sinabs broadcasts parameters against (batch, *features)) acts as
    (*features); a batch axis of 2 is an error."""
    x = torch.randn(2, 6, 3, 2) * 2
    per_feature = torch.tensor([[0.6], [0.9], [1.2]])

    def run(threshold):
        if op == "lif":
            return ops.lif(x, 0.9, threshold, backend=backend)[0]
        if op == "alif":
            return ops.alif(x, 0.9, 0.95, 0.5, threshold, backend=backend)[0]
        flat = x.flatten(2)
        weight = torch.eye(6) * 0.1
        lead = threshold.shape[:-2]  # the same thresholds, one per flat feature
        flat_threshold = threshold.expand(*lead, 3, 2).reshape(*lead, 6)
        return ops.lif_recurrent(flat, weight, None, 0.9, flat_threshold, backend=backend)[0]

    assert torch.equal(run(per_feature.unsqueeze(0)), run(per_feature))
    with pytest.raises(ValueError, match="does not broadcast"):
        run(torch.stack([per_feature, per_feature]))


def test_parameter_on_another_device_is_named():
    meta_alpha = torch.tensor(0.9, device="meta")
    with pytest.raises(ValueError, match="alpha is on meta but x is on cpu"):
        ops.lif(X, meta_alpha, 1.0)


def test_raw_op_checks_shapes():
    lib = torch.ops.exodus_lightning
    ops.load_extension("cpu")
    x = torch.randn(2, 5, 3)
    with pytest.raises(RuntimeError, match="alpha must be 1-D with one value per feature"):
        lib.lif_forward(x, torch.zeros(2, 3), torch.ones(4), torch.ones(3), torch.ones(3), None,
                        0, 0, 0, 0, [0.5, 1.0])
    with pytest.raises(RuntimeError, match="v_init must have shape"):
        lib.lif_forward(x, torch.zeros(2, 4), torch.ones(3), torch.ones(3), torch.ones(3), None,
                        0, 0, 0, 0, [0.5, 1.0])


def test_raw_op_rejects_a_spike_cap_beyond_int32():
    from exodus_lightning.ops._extension import load

    load("cpu")
    x = torch.randn(1, 3, 2)
    p = torch.ones(2)
    with pytest.raises(RuntimeError, match="max_spikes must be 0"):
        torch.ops.exodus_lightning.lif_forward(x, torch.zeros(1, 2), p * 0.9, p, p, None,
                                               2**32 + 1, 0, 0, 0, [0.5, 1.0])


def test_value_checks_of_device_tensors_only_on_request(monkeypatch):
    """No host sync by default: tensors off the CPU are checked only with the switch on."""
    from exodus_lightning.ops.value_checks import checking

    meta = torch.full((3,), -1.0, device="meta")
    monkeypatch.delenv("EXODUS_LIGHTNING_CHECK_VALUES", raising=False)
    assert not checking(meta)
    assert checking(-1.0) and checking(torch.ones(3))
    monkeypatch.setenv("EXODUS_LIGHTNING_CHECK_VALUES", "1")
    assert checking(meta)


@pytest.mark.parametrize("value", [float("inf"), float("nan"), -0.5])
def test_subtract_must_be_finite_and_nonnegative(value):
    """inf or NaN would turn every later membrane NaN (v − subtract · 0)."""
    with pytest.raises(ValueError, match="subtract must be finite and >= 0"):
        ops.lif(X, 0.9, 1.0, subtract=value)
    with pytest.raises(ValueError, match="subtract must be finite and >= 0"):
        ops.lif_recurrent(X, torch.eye(3), None, 0.9, 1.0, subtract=value)
    from exodus_lightning import nn as enn

    with pytest.raises(ValueError, match="subtract_value must be finite and >= 0"):
        enn.LIF(10.0, subtract_value=value)


@pytest.mark.parametrize("op", ["alif", "alif_recurrent"])
def test_alif_initial_adaptation_must_not_be_negative(op):
    """b0 + β·b_init ≤ 0 would give negative or infinite spike counts (b0 = 1, β = 2)."""
    b_init = torch.full((2, 3), -1.0)
    call = (lambda b: ops.alif(X, 0.9, 0.9, 2.0, 1.0, b_init=b)) if op == "alif" else (
        lambda b: ops.alif_recurrent(X, torch.eye(3), None, 0.9, 0.9, 2.0, 1.0, b_init=b))
    with pytest.raises(ValueError, match=r"b_init gives a first adaptive threshold b0 \+ "
                                         r"beta \* b_init <= 0 \(minimum -1"):
        call(b_init)
    call(b_init / 4)  # a negative start that keeps b0 + β·b_init > 0 is allowed


def test_numpy_scalars_are_numbers():
    """np.float32 is no float subclass (np.float64 is): both are numbers, as are NumPy ints
    for max_spikes."""
    np = pytest.importorskip("numpy")
    expected = ops.lif(X * 3, 0.9, 0.8, max_spikes=2)[0]
    for backend in ("extension", "reference"):
        got = ops.lif(X * 3, np.float32(0.9), np.float32(0.8), max_spikes=np.int64(2),
                      backend=backend)[0]
        assert torch.equal(got, expected)
    with pytest.raises(ValueError, match="max_spikes must be None"):
        ops.lif(X, 0.9, 1.0, max_spikes=np.float64(2.0))


@pytest.mark.parametrize("op", ["lif", "leaky", "alif", "adlif"])
@pytest.mark.parametrize("backend", ["extension", "reference"])
def test_alpha_zero_is_a_neuron_without_memory(op, backend):
    """α = 0 (what exp(−1/τ) of a tiny τ rounds to) is allowed: the state is this step's input
    alone; the backends agree on values and gradients, which are finite."""
    x = torch.randn(2, 6, 3, dtype=torch.float64, requires_grad=True)
    alpha = torch.tensor([0.0, 0.5, 0.0], dtype=torch.float64, requires_grad=True)
    calls = {
        "lif": lambda b: ops.lif(x, alpha, 1.0, max_spikes=None, backend=b)[:2],
        "leaky": lambda b: ops.leaky_integrate(x, alpha, backend=b)[:1],
        "alif": lambda b: ops.alif(x, alpha, 0.9, 0.5, 1.0, backend=b)[:2],
        "adlif": lambda b: ops.adlif(x, alpha, 0.9, 0.5, 0.5, backend=b)[:2],
    }
    outputs, reference = calls[op](backend), calls[op]("reference")
    for got, expected in zip(outputs, reference):
        torch.testing.assert_close(got, expected)
    if op == "leaky":
        torch.testing.assert_close(outputs[0][..., 0], x[..., 0])  # no memory at α = 0
    weights = [torch.randn_like(o) for o in outputs]
    grads, grads_reference = (
        torch.autograd.grad(sum((o * w).sum() for o, w in zip(outs, weights)), (x, alpha))
        for outs in (outputs, reference))
    for got, expected in zip(grads, grads_reference):
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got, expected)
