"""LIFRecurrent / IAFRecurrent: the whole-sequence function (ops.lif_recurrent) against the
per-step loop the layers run for any other rec_connect, and the functional op against its
autograd twin: forward bit for bit, every gradient in float64, gradcheck, edge cases."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.autograd import gradcheck

from exodus_lightning import nn as enn
from exodus_lightning import ops
from exodus_lightning.nn.recurrent import linear_connection
from exodus_lightning.nn.surrogate import PeriodicExponential, SingleExponential
from tests.tolerances import tolerance

FEATURES = (2, 3)
N = 6

# Settings of the layer's dynamics that change the scan (each on its own; the ops test below
# crosses them).
CASES = {
    "plain": {},
    "syn": dict(tau_syn=3.0),
    "syn_late_clip": dict(tau_syn=torch.linspace(2, 6, N).reshape(FEATURES), decay_early=False,
                          min_v_mem=-0.4),
    "norm_syn": dict(tau_syn=4.0, norm_input=True),
    "zero_single": dict(reset="zero", max_spikes_per_step=1),
    "zero_exodus": dict(reset="zero", gradient="exodus", min_v_mem=-0.3),
    "subtract_value_max2": dict(subtract_value=0.6, max_spikes_per_step=2),
    "slayer_periodic": dict(gradient="slayer", surrogate_grad_fn=PeriodicExponential()),
    "custom_surrogate": dict(surrogate_grad_fn=lambda v, th: 1 / (1 + (v - th).abs()) ** 2),
    "alphas": dict(train_alphas=True, tau_syn=5.0, norm_input=True),
}


def make_layer(kind: str, case: str, connection: nn.Module, dtype: torch.dtype
               ) -> nn.Module:
    kwargs = dict(CASES[case], record_states=True, train_threshold=True)
    if kind == "lif":
        kwargs.setdefault("norm_input", False)
        layer = enn.LIFRecurrent(torch.linspace(5, 20, N).reshape(FEATURES), connection,
                                 spike_threshold=torch.linspace(0.8, 1.2, N).reshape(FEATURES),
                                 **kwargs)
    else:
        for name in ("norm_input", "train_alphas"):
            kwargs.pop(name, None)
        layer = enn.IAFRecurrent(connection, spike_threshold=1.1, **kwargs)
    return layer.to(dtype)


def connections(bias: bool, dtype: torch.dtype) -> tuple[nn.Module, nn.Module]:
    """A connection the fused function takes, and the same map as a module it does not (so the
    layer runs its per-step loop)."""
    torch.manual_seed(0)
    linear = nn.Linear(N, N, bias=bias).to(dtype)
    with torch.no_grad():
        linear.weight.mul_(1.5)
    return (nn.Sequential(nn.Flatten(), linear),
            nn.Sequential(nn.Flatten(), linear, nn.Identity()))


def uses_scan(out: torch.Tensor) -> bool:
    """Whether the whole-sequence function is in out's graph."""
    seen, todo = set(), [out.grad_fn]
    while todo:
        fn = todo.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        if "_Scan" in type(fn).__name__:
            return True
        todo += [next_fn for next_fn, _ in fn.next_functions]
    return False


def run(layer: nn.Module, x: torch.Tensor, v_init: torch.Tensor | None = None,
        calls: int = 1) -> dict[str, torch.Tensor]:
    """Spikes, recordings, states and every gradient of a loss on all of them; the input is
    split into `calls` calls (states carried), and v_init (a leaf) starts the membrane."""
    x = x.clone().requires_grad_()
    if v_init is not None:
        layer.init_state_with_shape(v_init.shape, dtype=x.dtype)
        layer.v_mem = v_init
    outs, recs = [], []
    for chunk in x.tensor_split(calls, dim=1):
        outs.append(layer(chunk))
        recs.append(dict(layer.recordings))
    out = torch.cat(outs, 1)
    g = torch.Generator().manual_seed(5)
    loss = (out * torch.randn(out.shape, generator=g, dtype=x.dtype)).sum()
    loss = loss + layer.v_mem.square().sum()
    if getattr(layer, "tau_syn", None) is not None or getattr(layer, "alpha_syn", None) is not None:
        loss = loss + layer.i_syn.square().sum()
    result = {"out": out, "v_mem": layer.v_mem}
    for name in recs[0]:
        trace = torch.cat([r[name] for r in recs], 1)
        loss = loss + (trace * torch.randn(trace.shape, generator=g, dtype=x.dtype)).sum()
        result[f"rec_{name}"] = trace
    params = {n: q for n, q in layer.named_parameters() if q.requires_grad}
    grads = torch.autograd.grad(loss, [x, *params.values()]
                                + ([] if v_init is None else [v_init]), allow_unused=True)
    names = ["x", *params] + ([] if v_init is None else ["v_init"])
    result |= {f"grad_{n}": g for n, g in zip(names, grads) if g is not None}
    result["scan"] = torch.tensor(uses_scan(out))
    return {k: v.detach() for k, v in result.items()}


def drive(batch: int = 3, time: int = 25, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(2)
    return (torch.randn(batch, time, *FEATURES, generator=g) * 1.2 + 0.5).to(dtype)


def compare(kind: str, case: str, bias: bool, dtype: torch.dtype, **run_args) -> None:
    fused_connection, loop_connection = connections(bias, dtype)
    x = drive(dtype=dtype)
    if kind == "iaf":
        x = x / 3
    got = run(make_layer(kind, case, fused_connection, dtype), x, **run_args)
    want = run(make_layer(kind, case, loop_connection, dtype), x, **run_args)
    assert bool(got.pop("scan")) and not bool(want.pop("scan"))
    assert want["out"].sum() > 5 and got.keys() == want.keys()
    assert "grad_rec_connect.1.weight" in got and "grad_spike_threshold" in got
    for name, value in want.items():
        if name.startswith("grad_"):
            torch.testing.assert_close(got[name], value, **tolerance(dtype),
                                       msg=lambda m, n=name: f"{n}: {m}")
        else:  # the same floating-point operations in the same order
            assert torch.equal(got[name], value), name


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("kind", ["lif", "iaf"])
def test_equals_the_loop_float64(kind, case):
    compare(kind, case, bias=True, dtype=torch.float64)


@pytest.mark.parametrize("case", ["plain", "syn", "zero_exodus"])
def test_equals_the_loop_float32_without_bias(case):
    compare("lif", case, bias=False, dtype=torch.float32)


@pytest.mark.parametrize("case", ["plain", "syn_late_clip", "norm_syn"])
def test_initial_state_and_states_carried_across_calls(case):
    """A given initial membrane (its gradient too) and three calls in a row, the states
    carrying the graph from one call to the next."""
    v_init = (torch.rand(3, *FEATURES, dtype=torch.float64) * 0.5).requires_grad_()
    compare("lif", case, bias=True, dtype=torch.float64, v_init=v_init, calls=3)


@pytest.mark.parametrize("batch, time", [(1, 7), (2, 1)], ids=["batch1", "T1"])
def test_small_shapes(batch, time):
    fused_connection, loop_connection = connections(True, torch.float64)
    x = drive(batch, time) * 3
    got = run(make_layer("lif", "syn", fused_connection, torch.float64), x)
    want = run(make_layer("lif", "syn", loop_connection, torch.float64), x)
    assert bool(got.pop("scan")) and not bool(want.pop("scan"))
    assert want["out"].sum() > 0
    for name, value in want.items():
        torch.testing.assert_close(got[name], value, rtol=1e-12, atol=1e-12,
                                   msg=lambda m, n=name: f"{n}: {m}")


def test_no_time_steps():
    """T = 0: empty spikes, states unchanged (as the loop)."""
    fused_connection, _ = connections(True, torch.float32)
    layer = enn.LIFRecurrent(8.0, fused_connection, tau_syn=3.0)
    layer(torch.rand(2, 4, *FEATURES) * 5)
    v_mem = layer.v_mem.clone()
    out = layer(torch.rand(2, 0, *FEATURES))
    assert out.shape == (2, 0, *FEATURES) and torch.equal(layer.v_mem, v_mem)


def test_linear_connections_recognised():
    lin = nn.Linear(N, N)
    flat = torch.Size([N])
    assert linear_connection(lin, flat) is lin
    assert linear_connection(nn.Sequential(lin), flat) is lin
    assert linear_connection(nn.Sequential(nn.Flatten(), lin), torch.Size(FEATURES)) is lin
    assert linear_connection(nn.Linear(N, N, bias=False), flat) is not None
    # A Linear on the last axis of 2-d features is not a map of the flat features.
    assert linear_connection(nn.Linear(3, 3), torch.Size(FEATURES)) is None
    assert linear_connection(nn.Linear(N, N + 1), flat) is None
    assert linear_connection(nn.Sequential(nn.Flatten(), lin, nn.ReLU()), flat) is None
    assert linear_connection(nn.Sequential(nn.Flatten(0), lin), flat) is None
    assert linear_connection(nn.utils.parametrizations.weight_norm(nn.Linear(N, N)), flat) is None
    hooked = nn.Linear(N, N)
    hooked.register_forward_hook(lambda *args: None)
    assert linear_connection(hooked, flat) is None


def test_other_connections_run_the_loop():
    conv = nn.Conv1d(2, 2, 3, padding=1)
    layer = enn.LIFRecurrent(8.0, conv)
    x = torch.rand(2, 5, 2, 4) * 4
    out = layer(x.requires_grad_())
    assert not uses_scan(out)
    out.sum().backward()
    assert conv.weight.grad is not None


ALL_SETTINGS = [
    dict(),
    dict(beta=0.7, norm_input=True),
    dict(beta=0.6, decay_early=False, min_v_mem=-0.3),
    dict(reset="zero", max_spikes=1, norm_input=True),
    dict(subtract=0.8, max_spikes=2, beta=0.8, gradient="slayer"),
    dict(surrogate=lambda v, th: torch.exp(-(v - th).abs()), min_v_mem=-0.2, beta=0.5),
]


@pytest.mark.parametrize("settings", ALL_SETTINGS, ids=range(len(ALL_SETTINGS)))
def test_op_equals_its_autograd_twin(settings):
    """ops.lif_recurrent against ops.lif_recurrent_reference: every output and every input
    gradient, parameters as tensors requiring grad."""
    g = torch.Generator().manual_seed(4)

    def leaf(*shape, scale=1.0, shift=0.0):
        return (torch.rand(*shape, generator=g, dtype=torch.float64) * scale + shift
                ).requires_grad_()

    x = (torch.randn(2, 20, 5, generator=g, dtype=torch.float64) + 0.4).requires_grad_()
    inputs = dict(weight=leaf(5, 5, scale=1.0, shift=-0.4), bias=leaf(5, scale=0.2),
                  alpha=leaf(5, scale=0.3, shift=0.6), threshold=leaf(5, scale=0.4, shift=0.8),
                  v_init=leaf(2, 5, scale=0.5))
    for name in ("beta", "subtract", "min_v_mem"):
        if name in settings:
            shape = (5,)
            inputs[name] = torch.full(shape, float(settings[name]), dtype=torch.float64,
                                      requires_grad=True)
    if "beta" in settings:
        inputs["i_init"] = leaf(2, 5, scale=0.5)
    options = {k: v for k, v in settings.items() if k not in inputs}

    def outputs(backend):
        result = ops.lif_recurrent(x, **inputs, **options, backend=backend)
        return [r for r in result if r is not None]

    got, want = outputs("extension"), outputs("reference")
    assert want[0].sum() > 5
    for a, b in zip(got, want):
        assert torch.equal(a, b)
    gen = torch.Generator().manual_seed(6)
    weights = [torch.randn(w.shape, generator=gen, dtype=torch.float64) for w in want]
    leaves = [x, *inputs.values()]

    def grads(outs):
        loss = sum((o * w).sum() for o, w in zip(outs, weights))
        return torch.autograd.grad(loss, leaves)

    for name, a, b in zip(["x", *inputs], grads(got), grads(want)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10,
                                   msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("beta", [None, 0.7])
def test_gradcheck(beta):
    """Finite differences where the true derivative exists: with a zero surrogate the spikes
    are constant between threshold crossings, so the membrane's gradient (through the
    feedback of those spikes, the reset, the clip, the synaptic current) is exact."""
    g = torch.Generator().manual_seed(7)
    x = (torch.randn(2, 8, 3, generator=g, dtype=torch.float64) + 0.6).requires_grad_()
    weight = (torch.randn(3, 3, generator=g, dtype=torch.float64) * 0.5).requires_grad_()
    bias = (torch.randn(3, generator=g, dtype=torch.float64) * 0.1).requires_grad_()
    alpha = torch.full((3,), 0.8, dtype=torch.float64, requires_grad=True)
    threshold = torch.full((3,), 0.9, dtype=torch.float64, requires_grad=True)
    v_init = (torch.rand(2, 3, generator=g, dtype=torch.float64) * 0.3).requires_grad_()
    beta_t = None if beta is None else torch.full((3,), beta, dtype=torch.float64,
                                                  requires_grad=True)

    def membrane(x, weight, bias, alpha, threshold, v_init, beta_t):
        _, v_mem, i_syn, v_last, _ = ops.lif_recurrent(
            x, weight, bias, alpha, threshold, v_init, beta=beta_t, min_v_mem=-0.5,
            norm_input=True, surrogate=lambda v, th: torch.zeros_like(v), backend="extension")
        return v_mem, v_last

    spikes = ops.lif_recurrent(x, weight, bias, alpha, threshold, v_init, beta=beta_t,
                               min_v_mem=-0.5, norm_input=True)[0]
    assert spikes.sum() > 3
    assert gradcheck(membrane, (x, weight, bias, alpha, threshold, v_init, beta_t), eps=1e-7,
                     atol=1e-6)


def test_bad_arguments_name_the_fix():
    x = torch.rand(2, 4, 3)
    with pytest.raises(ValueError, match=r"weight must be a \(3, 3\)"):
        ops.lif_recurrent(x, torch.zeros(3, 4), None, 0.9, 1.0)
    with pytest.raises(ValueError, match="bias must be None or a"):
        ops.lif_recurrent(x, torch.zeros(3, 3), torch.zeros(2), 0.9, 1.0)
    with pytest.raises(ValueError, match="weight.to"):
        ops.lif_recurrent(x, torch.zeros(3, 3, dtype=torch.float64), None, 0.9, 1.0)
    with pytest.raises(TypeError, match="float32 or float64"):
        ops.lif_recurrent(x.half(), torch.zeros(3, 3).half(), None, 0.9, 1.0)


def test_surrogate_of_the_layer_reaches_the_scan():
    """A different surrogate changes the fused path's gradient as it changes the loop's."""
    fused_connection, _ = connections(False, torch.float64)
    x = drive()
    grads = []
    for surrogate in (SingleExponential(), PeriodicExponential()):
        layer = make_layer("lif", "plain", fused_connection, torch.float64)
        layer.surrogate_grad_fn = surrogate
        grads.append(run(layer, x)["grad_x"])
    assert not torch.allclose(*grads)


@pytest.mark.parametrize("kwargs", [
    dict(tau_mem=12.0, norm_input=False),
    dict(tau_mem=12.0, tau_syn=4.0, norm_input=True, train_alphas=True, min_v_mem=-0.5),
    dict(tau_mem=12.0, spike_fn="SingleSpike", reset_fn="MembraneReset", norm_input=False),
], ids=["defaults", "syn_norm_alphas_clip", "single_zero"])
def test_fused_path_equals_sinabs(kwargs):
    """sinabs' LIFRecurrent (float32: sinabs computes its spike gradient in float32) with a
    biased Linear connection."""
    sl = pytest.importorskip("sinabs.layers")
    sa = pytest.importorskip("sinabs.activation")
    kwargs = dict(kwargs, surrogate_grad_fn=sa.SingleExponential())
    if "spike_fn" in kwargs:
        kwargs["spike_fn"] = getattr(sa, kwargs["spike_fn"])
        kwargs["reset_fn"] = getattr(sa, kwargs["reset_fn"])()
    fused_connection, _ = connections(True, torch.float32)
    x = drive(dtype=torch.float32) * (4 if kwargs.get("norm_input") else 1)
    got = run(enn.LIFRecurrent(rec_connect=fused_connection, **kwargs), x)
    linear = fused_connection[1]
    linear.zero_grad()
    want = run(sl.LIFRecurrent(rec_connect=fused_connection, **kwargs), x)
    assert bool(got.pop("scan")) and want["out"].sum() > 5
    for name in ("out", "v_mem", "grad_x", "grad_rec_connect.1.weight", "grad_rec_connect.1.bias",
                 *(n for n in want if n.startswith("grad_alpha") or n.startswith("grad_tau"))):
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-4,
                                   msg=lambda m, n=name: f"{n}: {m}")


def test_op_without_time_steps():
    """T = 0 through the function itself: empty outputs, the states passed through, zero
    gradients for the weight and bias."""
    x = torch.rand(2, 0, 3, dtype=torch.float64, requires_grad=True)
    weight = torch.rand(3, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.rand(3, dtype=torch.float64, requires_grad=True)
    v_init = torch.rand(2, 3, dtype=torch.float64, requires_grad=True)
    spikes, v_mem, _, v_last, _ = ops.lif_recurrent(x, weight, bias, 0.9, 1.0, v_init)
    assert spikes.shape == v_mem.shape == (2, 0, 3) and torch.equal(v_last, v_init)
    (v_last.sum() + spikes.sum()).backward()
    assert torch.equal(weight.grad, torch.zeros_like(weight))
    assert torch.equal(bias.grad, torch.zeros_like(bias))
    assert torch.equal(v_init.grad, torch.ones_like(v_init))


@pytest.mark.parametrize("case", ["plain", "syn_late_clip", "zero_exodus", "norm_syn"])
def test_only_input_and_weight_gradients(case):
    """No neuron parameter trained (the adjoint's cheapest variant): x, weight and bias."""
    fused_connection, loop_connection = connections(True, torch.float64)
    x = drive()
    results = []
    for connection in (fused_connection, loop_connection):
        layer = make_layer("lif", case, connection, torch.float64)
        for name, param in layer.named_parameters():
            if not name.startswith("rec_connect"):
                param.requires_grad_(False)
        results.append(run(layer, x))
    got, want = results
    assert bool(got.pop("scan")) and not bool(want.pop("scan"))
    assert set(n for n in got if n.startswith("grad_")) == {
        "grad_x", "grad_rec_connect.1.weight", "grad_rec_connect.1.bias"}
    for name, value in want.items():
        torch.testing.assert_close(got[name], value, rtol=1e-10, atol=1e-10,
                                   msg=lambda m, n=name: f"{n}: {m}")
