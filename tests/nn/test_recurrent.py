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
from exodus_lightning.nn import activation as act
from exodus_lightning.nn.recurrent import linear_connection
from exodus_lightning.nn.surrogate import PeriodicExponential, SingleExponential
from tests.tolerances import tolerance_of_sums

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
    """Whether the whole-sequence op (or its autograd-function form) is in out's graph."""
    seen, todo = set(), [out.grad_fn]
    while todo:
        fn = todo.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        if any(name in type(fn).__name__ for name in ("_Scan", "recurrent_scan")):
            return True
        todo += [next_fn for next_fn, _ in fn.next_functions]
    return False


def run(layer: nn.Module, x: torch.Tensor, v_init: torch.Tensor | None = None,
        calls: int = 1, b_init: torch.Tensor | None = None, i_syn_loss: bool = True
        ) -> dict[str, torch.Tensor]:
    """Spikes, recordings, states and every gradient of a loss on all of them; the input is
    split into `calls` calls (states carried), and v_init (a leaf) starts the membrane (b_init
    the adaptation of an ALIF layer). i_syn_loss=False leaves the last synaptic state out of
    the loss (sinabs' ALIF never writes it)."""
    x = x.clone().requires_grad_()
    if v_init is not None:
        layer.init_state_with_shape(v_init.shape, dtype=x.dtype)
        layer.v_mem = v_init
    if b_init is not None:
        layer.b = b_init
    outs, recs = [], []
    for chunk in x.tensor_split(calls, dim=1):
        outs.append(layer(chunk))
        recs.append(dict(layer.recordings))
    out = torch.cat(outs, 1)
    g = torch.Generator().manual_seed(5)
    loss = (out * torch.randn(out.shape, generator=g, dtype=x.dtype)).sum()
    loss = loss + layer.v_mem.square().sum()
    if i_syn_loss and (getattr(layer, "tau_syn", None) is not None
                       or getattr(layer, "alpha_syn", None) is not None):
        loss = loss + layer.i_syn.square().sum()
    result = {"out": out, "v_mem": layer.v_mem}
    if hasattr(layer, "adapt_scale"):  # ours or sinabs' ALIF
        loss = loss + layer.b.square().sum() + layer.spike_threshold.sum()
        result |= {"b": layer.b, "spike_threshold": layer.spike_threshold}
    for name in recs[0]:
        trace = torch.cat([r[name] for r in recs], 1)
        loss = loss + (trace * torch.randn(trace.shape, generator=g, dtype=x.dtype)).sum()
        result[f"rec_{name}"] = trace
    params = {n: q for n, q in layer.named_parameters() if q.requires_grad}
    inits = {name: value for name, value in (("v_init", v_init), ("b_init", b_init))
             if value is not None}
    grads = torch.autograd.grad(loss, [x, *params.values(), *inits.values()], allow_unused=True)
    names = ["x", *params, *inits]
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
            torch.testing.assert_close(got[name], value, **tolerance_of_sums(value, dtype),
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


# --- ALIFRecurrent: the whole-sequence function (ops.alif_recurrent) -------------------------

# Settings of the ALIF layer's dynamics that change the scan; every case trains tau_mem and
# tau_adapt (or the alphas), b0 and adapt_scale.
ALIF_CASES = {
    "plain": {},
    "multi_no_norm": dict(spike_fn=act.MultiSpike, norm_input=False),
    "max2_clip": dict(max_spikes_per_step=2, min_v_mem=-0.4),
    "zero_single": dict(reset="zero"),
    "zero_exodus_clip": dict(reset="zero", gradient="exodus", min_v_mem=-0.3),
    "syn_norm": dict(tau_syn=3.0),
    "syn_no_norm_clip": dict(tau_syn=torch.linspace(2, 6, N).reshape(FEATURES), norm_input=False,
                             min_v_mem=-0.5),
    "alphas_syn": dict(train_alphas=True, tau_syn=4.0),
    "slayer_periodic": dict(gradient="slayer", surrogate_grad_fn=PeriodicExponential()),
    "custom_surrogate": dict(surrogate_grad_fn=lambda v, th: 1 / (1 + (v - th).abs()) ** 2),
}


def make_alif_layer(case: str, connection: nn.Module, dtype: torch.dtype) -> nn.Module:
    layer = enn.ALIFRecurrent(torch.linspace(3, 9, N).reshape(FEATURES),
                              torch.linspace(8, 30, N).reshape(FEATURES), connection,
                              adapt_scale=torch.linspace(0.5, 1.5, N).reshape(FEATURES),
                              spike_threshold=torch.linspace(0.8, 1.2, N).reshape(FEATURES),
                              record_states=True, train_threshold=True, train_adapt_scale=True,
                              **ALIF_CASES[case])
    return layer.to(dtype)


def alif_drive(case: str, batch: int = 3, time: int = 25, dtype: torch.dtype = torch.float64
               ) -> torch.Tensor:
    # (1 − α) scales a normalised input (more so inside the synaptic decay): a larger drive.
    scale = 1.0 if ALIF_CASES[case].get("norm_input") is False else 3.0
    return drive(batch, time, dtype) * scale + 0.5


def compare_alif(case: str, bias: bool, dtype: torch.dtype, x: torch.Tensor | None = None,
                 tolerances: dict | None = None, **run_args) -> None:
    fused_connection, loop_connection = connections(bias, dtype)
    x = alif_drive(case, dtype=dtype) if x is None else x
    got = run(make_alif_layer(case, fused_connection, dtype), x, **run_args)
    want = run(make_alif_layer(case, loop_connection, dtype), x, **run_args)
    assert bool(got.pop("scan")) and not bool(want.pop("scan"))
    assert want["out"].sum() > min(5, x.shape[1])
    for name in got.keys() - want.keys():
        # T = 1: the loop's graph never reaches rec_connect (None), the function's gives zeros.
        assert x.shape[1] == 1 and name.startswith("grad_rec_connect"), name
        want[name] = torch.zeros_like(got[name])
    assert got.keys() == want.keys()
    trained = ["grad_rec_connect.1.weight", "grad_b0", "grad_adapt_scale"]
    trained += (["grad_alpha_mem", "grad_alpha_adapt"] if ALIF_CASES[case].get("train_alphas")
                else ["grad_tau_mem", "grad_tau_adapt"])
    assert all(name in got for name in trained), sorted(got)
    for name, value in want.items():
        if name.startswith("grad_"):
            tol = tolerances or tolerance_of_sums(value, dtype)
            torch.testing.assert_close(got[name], value, **tol,
                                       msg=lambda m, n=name: f"{n}: {m}")
        else:  # the same floating-point operations in the same order
            assert torch.equal(got[name], value), name


@pytest.mark.parametrize("case", list(ALIF_CASES))
def test_alif_equals_the_loop_float64(case):
    compare_alif(case, bias=True, dtype=torch.float64)


@pytest.mark.parametrize("case", ["plain", "syn_norm", "zero_exodus_clip"])
def test_alif_equals_the_loop_float32_without_bias(case):
    compare_alif(case, bias=False, dtype=torch.float32)


@pytest.mark.parametrize("case", ["plain", "max2_clip", "syn_norm", "syn_no_norm_clip"])
def test_alif_initial_states_and_states_carried_across_calls(case):
    """Given initial membrane and adaptation (their gradients too, to 1e-10) and three calls
    in a row, the states carrying the graph from one call to the next."""
    g = torch.Generator().manual_seed(9)
    v_init = (torch.rand(3, *FEATURES, generator=g, dtype=torch.float64) * 0.5).requires_grad_()
    b_init = (torch.rand(3, *FEATURES, generator=g, dtype=torch.float64) * 0.5).requires_grad_()
    compare_alif(case, bias=True, dtype=torch.float64, v_init=v_init, b_init=b_init, calls=3,
                 tolerances=dict(rtol=1e-10, atol=1e-10))


@pytest.mark.parametrize("batch, time", [(1, 7), (2, 1)], ids=["batch1", "T1"])
@pytest.mark.parametrize("case", ["plain", "syn_norm"])
def test_alif_small_shapes(case, batch, time):
    x = alif_drive(case, batch, time) * 2
    compare_alif(case, bias=True, dtype=torch.float64, x=x,
                 tolerances=dict(rtol=1e-12, atol=1e-12))


def test_alif_no_time_steps():
    """T = 0 (the layer): empty spikes, states unchanged."""
    fused_connection, _ = connections(True, torch.float32)
    layer = enn.ALIFRecurrent(4.0, 10.0, fused_connection, tau_syn=3.0)
    layer(torch.rand(2, 4, *FEATURES) * 8)
    states = {name: getattr(layer, name).clone() for name in ("v_mem", "b", "i_syn")}
    out = layer(torch.rand(2, 0, *FEATURES))
    assert out.shape == (2, 0, *FEATURES)
    for name, value in states.items():
        assert torch.equal(getattr(layer, name), value), name


def test_alif_op_without_time_steps():
    """T = 0 through the function itself: empty outputs, the states passed through, zero
    gradients for the weight, bias and neuron parameters."""
    x = torch.rand(2, 0, 3, dtype=torch.float64, requires_grad=True)
    weight = torch.rand(3, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.rand(3, dtype=torch.float64, requires_grad=True)
    params = [torch.full((3,), value, dtype=torch.float64, requires_grad=True)
              for value in (0.9, 0.8, 1.2, 1.0, 0.7)]
    states = [torch.rand(2, 3, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    spikes, v_mem, b, i_syn, v_last, b_last, i_last = ops.alif_recurrent(
        x, weight, bias, *params[:4], *states[:2], syn_decay=params[4], i_init=states[2],
        norm_input=True)
    assert spikes.shape == v_mem.shape == b.shape == i_syn.shape == (2, 0, 3)
    assert torch.equal(v_last, states[0]) and torch.equal(b_last, states[1])
    assert torch.equal(i_last, states[2])
    (v_last.sum() + b_last.sum() + i_last.sum() + spikes.sum()).backward()
    for tensor in (weight, bias, *params):
        assert torch.equal(tensor.grad, torch.zeros_like(tensor))
    for state in states:
        assert torch.equal(state.grad, torch.ones_like(state))


ALIF_SETTINGS = [
    dict(),
    dict(syn_decay=0.7, norm_input=True),
    dict(syn_decay=0.6, min_v_mem=-0.3, max_spikes=None),
    dict(reset="zero", norm_input=True, min_v_mem=-0.2),
    dict(max_spikes=2, syn_decay=0.8, gradient="slayer"),
    dict(surrogate=lambda v, th: torch.exp(-(v - th).abs()), min_v_mem=-0.2, syn_decay=0.5),
]


@pytest.mark.parametrize("settings", ALIF_SETTINGS, ids=range(len(ALIF_SETTINGS)))
def test_alif_op_equals_its_autograd_twin(settings):
    """ops.alif_recurrent against ops.alif_recurrent_reference: every output and every input
    gradient, parameters as tensors requiring grad (a gradient the twin's graph does not reach,
    such as b0's under the zero reset, must be zero)."""
    g = torch.Generator().manual_seed(4)

    def leaf(*shape, scale=1.0, shift=0.0):
        return (torch.rand(*shape, generator=g, dtype=torch.float64) * scale + shift
                ).requires_grad_()

    x = (torch.randn(2, 20, 5, generator=g, dtype=torch.float64) * 1.5 + 0.8).requires_grad_()
    if settings.get("norm_input"):
        x = (x.detach() * 4).requires_grad_()
    inputs = dict(weight=leaf(5, 5, scale=1.0, shift=-0.4), bias=leaf(5, scale=0.2),
                  alpha=leaf(5, scale=0.3, shift=0.6), rho=leaf(5, scale=0.2, shift=0.75),
                  beta=leaf(5, scale=1.0, shift=0.3), b0=leaf(5, scale=0.4, shift=0.8),
                  v_init=leaf(2, 5, scale=0.5), b_init=leaf(2, 5, scale=0.5))
    for name in ("syn_decay", "min_v_mem"):
        if name in settings:
            inputs[name] = torch.full((5,), float(settings[name]), dtype=torch.float64,
                                      requires_grad=True)
    if "syn_decay" in settings:
        inputs["i_init"] = leaf(2, 5, scale=0.5)
    options = {k: v for k, v in settings.items() if k not in inputs}

    def outputs(backend):
        result = ops.alif_recurrent(x, **inputs, **options, backend=backend)
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
        return torch.autograd.grad(loss, leaves, allow_unused=True)

    for name, a, b, leaf_ in zip(["x", *inputs], grads(got), grads(want), leaves):
        b = torch.zeros_like(leaf_) if b is None else b
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10,
                                   msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("syn_decay", [None, 0.7])
def test_alif_gradcheck(syn_decay, reset):
    """Finite differences where the true derivative exists: with a zero surrogate the spikes
    are constants of the gradient, so every other term (the feedback of those spikes, the
    reset by the adaptive threshold, the adaptation, the clip, the synaptic current, the norm,
    the initial states) is checked."""
    g = torch.Generator().manual_seed(7)
    x = (torch.randn(2, 8, 3, generator=g, dtype=torch.float64) * 2 + 1.5).requires_grad_()
    weight = (torch.randn(3, 3, generator=g, dtype=torch.float64) * 0.5).requires_grad_()
    bias = (torch.randn(3, generator=g, dtype=torch.float64) * 0.1).requires_grad_()
    params = [torch.full((3,), value, dtype=torch.float64, requires_grad=True)
              for value in (0.8, 0.85, 0.7, 0.9)]
    v_init = (torch.rand(2, 3, generator=g, dtype=torch.float64) * 0.3).requires_grad_()
    b_init = (torch.rand(2, 3, generator=g, dtype=torch.float64) * 0.4).requires_grad_()
    decay = None if syn_decay is None else torch.full((3,), syn_decay, dtype=torch.float64,
                                                      requires_grad=True)
    i_init = None if syn_decay is None else (torch.rand(2, 3, generator=g, dtype=torch.float64)
                                             * 0.3).requires_grad_()
    options = dict(min_v_mem=-0.5, norm_input=True, max_spikes=None, reset=reset)

    def traces(x, weight, bias, alpha, rho, beta, b0, v_init, b_init, decay, i_init):
        result = ops.alif_recurrent(
            x, weight, bias, alpha, rho, beta, b0, v_init, b_init, syn_decay=decay,
            i_init=i_init, surrogate=lambda v, th: torch.zeros_like(v), backend="extension",
            **options)
        return tuple(r for r in result[1:] if r is not None)

    inputs = (x, weight, bias, *params, v_init, b_init, decay, i_init)
    spikes = ops.alif_recurrent(*inputs[:9], syn_decay=decay, i_init=i_init, **options)[0]
    assert spikes.sum() > 3
    assert gradcheck(traces, inputs, eps=1e-7, atol=1e-6)


def test_alif_bad_arguments_name_the_fix():
    x = torch.rand(2, 4, 3)
    with pytest.raises(ValueError, match=r"weight must be a \(3, 3\)"):
        ops.alif_recurrent(x, torch.zeros(3, 4), None, 0.9, 0.9, 1.0, 1.0)
    with pytest.raises(TypeError, match="float32 or float64"):
        ops.alif_recurrent(x.half(), torch.zeros(3, 3).half(), None, 0.9, 0.9, 1.0, 1.0)
    with pytest.raises(ValueError, match="syn_decay"):
        ops.alif_recurrent(x, torch.zeros(3, 3), None, 0.9, 0.9, 1.0, 1.0, syn_decay=1.5)
    with pytest.raises(ValueError, match="b_init must have shape"):
        ops.alif_recurrent(x, torch.zeros(3, 3), None, 0.9, 0.9, 1.0, 1.0,
                           b_init=torch.zeros(3, 3))


def test_alif_other_connections_run_the_loop():
    conv = nn.Conv1d(2, 2, 3, padding=1)
    layer = enn.ALIFRecurrent(8.0, 20.0, conv)
    x = torch.rand(2, 5, 2, 4) * 8
    out = layer(x.requires_grad_())
    assert not uses_scan(out)
    out.sum().backward()
    assert conv.weight.grad is not None


@pytest.mark.parametrize("kwargs", [
    dict(),
    dict(tau_syn=4.0, min_v_mem=-0.5),
    dict(spike_fn="MultiSpike", reset_fn="MembraneReset", norm_input=False),
    dict(tau_syn=3.0, norm_input=False, train_alphas=True),
], ids=["defaults", "syn_clip", "multi_zero", "syn_no_norm_alphas"])
def test_alif_fused_path_equals_sinabs(kwargs):
    """sinabs' ALIFRecurrent (float32: sinabs computes its spike gradient in float32) with a
    biased Linear connection: spikes, states, input, weight, bias and time-constant
    gradients."""
    sl = pytest.importorskip("sinabs.layers")
    sa = pytest.importorskip("sinabs.activation")
    kwargs = dict(kwargs, surrogate_grad_fn=sa.SingleExponential(), adapt_scale=1.2,
                  tau_mem=torch.tensor(6.0), tau_adapt=torch.tensor(20.0))
    if "spike_fn" in kwargs:
        kwargs["spike_fn"] = getattr(sa, kwargs["spike_fn"])
        kwargs["reset_fn"] = getattr(sa, kwargs["reset_fn"])()
    if "tau_syn" in kwargs:
        kwargs["tau_syn"] = torch.tensor(kwargs["tau_syn"])
    fused_connection, _ = connections(True, torch.float32)
    x = drive(dtype=torch.float32) * (1 if kwargs.get("norm_input") is False else 4) + 0.5
    got = run(enn.ALIFRecurrent(rec_connect=fused_connection, **kwargs), x, i_syn_loss=False)
    fused_connection[1].zero_grad()
    want = run(sl.ALIFRecurrent(rec_connect=fused_connection, **kwargs), x, i_syn_loss=False)
    assert bool(got.pop("scan")) and want["out"].sum() > 5
    assert torch.equal(got["out"], want["out"])
    decays = [n for n in want if n.startswith(("grad_alpha", "grad_tau"))]
    assert len(decays) >= 2
    for name in ("v_mem", "b", "spike_threshold", "grad_x", "grad_rec_connect.1.weight",
                 "grad_rec_connect.1.bias", *decays):
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-4,
                                   msg=lambda m, n=name: f"{n}: {m}")
