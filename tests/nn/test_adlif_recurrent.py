"""adLIFRecurrent: the whole-sequence function (ops.adlif_recurrent) against the per-step loop
the layer runs for any other rec_connect, the functional op against its autograd twin, gradcheck,
edge cases, and the authors' SEAdLIF with its recurrent matrix."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.autograd import gradcheck

from exodus_lightning import nn as enn
from exodus_lightning import ops
from exodus_lightning.nn.surrogate import ArcTan
from tests.nn.test_recurrent import uses_scan
from tests.se_adlif import authors_layer
from tests.tolerances import tolerance_of_sums

F64 = dict(dtype=torch.float64)
EXACT = dict(rtol=1e-10, atol=1e-10)

# Settings of the layer that change the scan.
CASES = {
    "authors": {},
    "exodus": dict(gradient="exodus"),
    "arctan": dict(surrogate_grad_fn=ArcTan()),
    "custom_surrogate": dict(surrogate_grad_fn=lambda u, th: 0.3 / (1 + (u - th).abs()) ** 2),
    "fixed_taus": dict(train_tau_u=False, train_tau_w=False, threshold=1.2),
}


def connections(n: int, features: tuple[int, ...], bias: bool, dtype: torch.dtype
                ) -> tuple[nn.Module, nn.Module]:
    """A connection the fused function takes, and the same map as a module it does not (so the
    layer runs its per-step loop)."""
    torch.manual_seed(0)
    linear = nn.Linear(n, n, bias=bias).to(dtype)
    with torch.no_grad():
        linear.weight.mul_(4.0)
    fused = linear if len(features) == 1 else nn.Sequential(nn.Flatten(), linear)
    return fused, nn.Sequential(nn.Flatten(), linear, nn.Identity())


def make_layer(case: str, features: tuple[int, ...], connection: nn.Module,
               dtype: torch.dtype) -> enn.adLIFRecurrent:
    torch.manual_seed(1)  # the same neuron parameters for every connection
    return enn.adLIFRecurrent(features, connection, record_states=True,
                              **CASES[case]).to(dtype)


def drive(batch: int, time: int, features: tuple[int, ...], dtype: torch.dtype = torch.float64
          ) -> torch.Tensor:
    g = torch.Generator().manual_seed(2)
    return (6 + 8 * torch.randn(batch, time, *features, generator=g, **F64)).to(dtype)


def run(layer: enn.adLIFRecurrent, x: torch.Tensor, calls: int = 1,
        u_init: torch.Tensor | None = None, w_init: torch.Tensor | None = None
        ) -> dict[str, torch.Tensor]:
    """Spikes, recordings, states and every gradient of a loss on all of them; the input is
    split into `calls` calls (states carried), u_init and w_init (leaves) start the states."""
    x = x.clone().requires_grad_()
    if u_init is not None:
        layer.init_state_with_shape(u_init.shape, dtype=x.dtype)
        layer.u, layer.w = u_init, w_init
    outs, recs = [], []
    for chunk in x.tensor_split(calls, dim=1):
        outs.append(layer(chunk))
        recs.append(dict(layer.recordings))
    out = torch.cat(outs, 1)
    g = torch.Generator().manual_seed(5)
    loss = (out * torch.randn(out.shape, generator=g, dtype=x.dtype)).sum()
    loss = loss + layer.u.square().sum() + 1e-3 * layer.w.square().sum()
    result = {"out": out, "u": layer.u, "w": layer.w}
    for name in recs[0]:
        trace = torch.cat([r[name] for r in recs], 1)
        loss = loss + 1e-2 * (trace * torch.randn(trace.shape, generator=g, dtype=x.dtype)).sum()
        result[f"rec_{name}"] = trace
    params = {n: q for n, q in layer.named_parameters() if q.requires_grad}
    inits = {} if u_init is None else {"u_init": u_init, "w_init": w_init}
    grads = torch.autograd.grad(loss, [x, *params.values(), *inits.values()], allow_unused=True)
    for name, grad in zip(["x", *params, *inits], grads):
        if grad is not None:
            result[f"grad_{name.replace('rec_connect.1.', 'rec_connect.')}"] = grad
    result["scan"] = torch.tensor(uses_scan(out))
    return {k: v.detach() for k, v in result.items()}


def compare(case: str = "authors", features: tuple[int, ...] = (6,), bias: bool = False,
            dtype: torch.dtype = torch.float64, x: torch.Tensor | None = None,
            tolerances: dict | None = None, **run_args) -> None:
    n = torch.Size(features).numel()
    fused, loop = connections(n, features, bias, dtype)
    x = drive(3, 30, features, dtype) if x is None else x
    got = run(make_layer(case, features, fused, dtype), x, **run_args)
    want = run(make_layer(case, features, loop, dtype), x, **run_args)
    assert bool(got.pop("scan")) and not bool(want.pop("scan"))
    assert want["out"].mean() > 0.05
    for name in got.keys() - want.keys():
        # T = 1: the loop's graph never reaches rec_connect (None), the function's gives zeros.
        assert x.shape[1] == 1 and name.startswith("grad_rec_connect"), name
        want[name] = torch.zeros_like(got[name])
    assert got.keys() == want.keys()
    trained = {"grad_x", "grad_a", "grad_b"}
    if x.shape[1] > 1:
        trained.add("grad_rec_connect.weight")
    if "train_tau_u" not in CASES[case]:
        trained |= {"grad_kappa_u", "grad_kappa_w"}
    assert trained <= got.keys(), sorted(got)
    for name, value in want.items():
        if name.startswith("grad_"):
            tol = tolerances or tolerance_of_sums(value, dtype)
            torch.testing.assert_close(got[name], value, **tol,
                                       msg=lambda m, n=name: f"{n}: {m}")
            if name in trained:
                assert value.abs().max() > 0, name
        else:  # the same floating-point operations in the same order
            assert torch.equal(got[name], value), name


@pytest.mark.parametrize("case", list(CASES))
def test_equals_the_loop_float64(case):
    compare(case)


@pytest.mark.parametrize("bias", [False, True], ids=["no_bias", "bias"])
def test_equals_the_loop_on_a_feature_grid(bias):
    compare("exodus", features=(2, 3), bias=bias)


def test_equals_the_loop_float32():
    compare("authors", dtype=torch.float32)


@pytest.mark.parametrize("case", ["authors", "exodus"])
def test_initial_states_and_states_carried_across_calls(case):
    """Given initial u and w (their gradients too) and three calls in a row, the states
    carrying the graph from one call to the next."""
    g = torch.Generator().manual_seed(9)
    u_init = (torch.rand(3, 6, generator=g, **F64) * 0.5).requires_grad_()
    w_init = (torch.rand(3, 6, generator=g, **F64) * 2.0).requires_grad_()
    compare(case, u_init=u_init, w_init=w_init, calls=3, tolerances=EXACT)


@pytest.mark.parametrize("batch, time", [(1, 9), (2, 1)], ids=["batch1", "T1"])
def test_small_shapes(batch, time):
    x = drive(batch, time, (6,)) + 8
    compare("authors", x=x, tolerances=EXACT)


def test_no_time_steps():
    """T = 0 (the layer): empty spikes, states unchanged."""
    layer = enn.adLIFRecurrent(4)
    layer(torch.rand(2, 5, 4) * 20)
    states = (layer.u.clone(), layer.w.clone())
    out = layer(torch.rand(2, 0, 4))
    assert out.shape == (2, 0, 4)
    assert torch.equal(layer.u, states[0]) and torch.equal(layer.w, states[1])


def test_op_without_time_steps():
    """T = 0 through the function: empty outputs, the states passed through, zero gradients
    for the weight, bias and neuron parameters."""
    x = torch.rand(2, 0, 3, **F64, requires_grad=True)
    weight = torch.rand(3, 3, **F64, requires_grad=True)
    bias = torch.rand(3, **F64, requires_grad=True)
    params = [torch.full((3,), value, **F64, requires_grad=True)
              for value in (0.9, 0.95, 1.5, 2.0, 1.0)]
    states = [torch.rand(2, 3, **F64, requires_grad=True) for _ in range(2)]
    spikes, u_mem, w, u_last, w_last = ops.adlif_recurrent(x, weight, bias, *params, *states,
                                                           backend="extension")
    assert spikes.shape == u_mem.shape == w.shape == (2, 0, 3)
    assert torch.equal(u_last, states[0]) and torch.equal(w_last, states[1])
    (u_last.sum() + w_last.sum() + spikes.sum()).backward()
    for tensor in (weight, bias, *params):
        assert torch.equal(tensor.grad, torch.zeros_like(tensor))
    for state in states:
        assert torch.equal(state.grad, torch.ones_like(state))


SETTINGS = [
    dict(),
    dict(gradient="exodus"),
    dict(surrogate=lambda u, th: torch.exp(-(u - th).abs())),
    dict(gradient="exodus", surrogate=ArcTan()),
]


@pytest.mark.parametrize("settings", SETTINGS, ids=range(len(SETTINGS)))
def test_op_equals_its_autograd_twin(settings):
    """ops.adlif_recurrent against ops.adlif_recurrent_reference: every output bit for bit and
    every input gradient (threshold included) to 1e-10."""
    g = torch.Generator().manual_seed(4)

    def leaf(*shape, scale=1.0, shift=0.0):
        return (torch.rand(*shape, generator=g, **F64) * scale + shift).requires_grad_()

    x = (torch.randn(2, 20, 5, generator=g, **F64) * 3 + 3).requires_grad_()
    inputs = dict(weight=leaf(5, 5, scale=2.0, shift=-1.0), bias=leaf(5, scale=0.2),
                  alpha=leaf(5, scale=0.3, shift=0.6), beta=leaf(5, scale=0.2, shift=0.75),
                  a=leaf(5, scale=2.0), b=leaf(5, scale=3.0),
                  threshold=leaf(5, scale=0.4, shift=0.8), u_init=leaf(2, 5, scale=0.5),
                  w_init=leaf(2, 5, scale=0.5))
    got = ops.adlif_recurrent(x, **inputs, **settings, backend="extension")
    want = ops.adlif_recurrent(x, **inputs, **settings, backend="reference")
    assert want[0].mean() > 0.1
    for a, b in zip(got, want):
        assert torch.equal(a, b)
    gen = torch.Generator().manual_seed(6)
    weights = [torch.randn(w.shape, generator=gen, **F64) for w in want]
    leaves = [x, *inputs.values()]

    def grads(outs):
        loss = sum((o * w).sum() for o, w in zip(outs, weights))
        return torch.autograd.grad(loss, leaves)

    for name, a, b in zip(["x", *inputs], grads(got), grads(want)):
        assert b.abs().max() > 0, name
        torch.testing.assert_close(a, b, **EXACT, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("gradient", ["slayer", "exodus"])
def test_gradcheck(gradient):
    """Finite differences where the true derivative exists: with a zero surrogate the spikes
    are constants of the gradient, so every other term (the feedback of those spikes, the
    leak, the adaptation, the reset, the initial states) is checked."""
    g = torch.Generator().manual_seed(7)
    x = (torch.randn(2, 8, 3, generator=g, **F64) * 2 + 2).requires_grad_()
    weight = (torch.randn(3, 3, generator=g, **F64) * 2).requires_grad_()
    bias = (torch.randn(3, generator=g, **F64) * 0.1).requires_grad_()
    params = [torch.full((3,), value, **F64, requires_grad=True)
              for value in (0.8, 0.9, 0.7, 1.5, 1.0)]
    u_init = (torch.rand(2, 3, generator=g, **F64) * 0.3).requires_grad_()
    w_init = (torch.rand(2, 3, generator=g, **F64) * 0.4).requires_grad_()

    def traces(*inputs):
        result = ops.adlif_recurrent(*inputs, surrogate=lambda u, th: torch.zeros_like(u),
                                     gradient=gradient, backend="extension")
        return result[1:]

    inputs = (x, weight, bias, *params, u_init, w_init)
    spikes = ops.adlif_recurrent(*inputs)[0]
    assert spikes.sum() > 3
    assert gradcheck(traces, inputs, eps=1e-7, atol=1e-6)


def test_default_connection_is_the_authors():
    """nn.Linear(N, N, bias=False), orthogonal, on the fused path (after a Flatten on a
    multi-axis feature shape)."""
    layer = enn.adLIFRecurrent(5).double()
    assert type(layer.rec_connect) is nn.Linear and layer.rec_connect.bias is None
    weight = layer.rec_connect.weight
    torch.testing.assert_close(weight @ weight.T, torch.eye(5, **F64), rtol=0, atol=1e-6)
    x = drive(2, 6, (5,)).requires_grad_()
    assert uses_scan(layer(x))
    grid = enn.adLIFRecurrent((2, 3))
    assert type(grid.rec_connect) is nn.Sequential and grid.rec_connect[1].weight.shape == (6, 6)
    assert uses_scan(grid(drive(2, 6, (2, 3), torch.float32).requires_grad_()))


def test_reference_backend_and_conv_connection_run_the_loop():
    """backend="reference" and a convolution run the per-step loop; the reference backend gives
    the extension's spikes."""
    x = drive(2, 12, (6,))
    layers = [make_layer("authors", (6,), connections(6, (6,), False, torch.float64)[0],
                         torch.float64) for _ in range(2)]
    layers[1].backend = "reference"
    outs = [layer(x.clone().requires_grad_()) for layer in layers]
    assert uses_scan(outs[0]) and not uses_scan(outs[1])
    assert torch.equal(outs[0], outs[1])
    conv = enn.adLIFRecurrent((2, 5), nn.Conv1d(2, 2, 3, padding=1)).double()
    out = conv(drive(2, 7, (2, 5)).requires_grad_())
    assert out.shape == (2, 7, 2, 5) and not uses_scan(out)


def test_equals_the_authors_module_with_recurrence(tmp_path, monkeypatch):
    """Their SEAdLIF with use_recurrent (their input map, their recurrent matrix, their states
    step by step) against our layer on W·in + bias with their matrix as rec_connect."""
    torch.manual_seed(0)
    theirs = authors_layer(tmp_path, monkeypatch, inputs=12, neurons=10, recurrent=True)
    ours = enn.adLIFRecurrent(10, nn.Linear(10, 10, bias=False)).double()
    with torch.no_grad():
        theirs.weight.mul_(15.0)
        theirs.bias.fill_(8.0)
        theirs.recurrent.mul_(3.0)
        ours.rec_connect.weight.copy_(theirs.recurrent)
        ours.kappa_u.copy_(theirs.tau_u_trainer.weight)
        ours.kappa_w.copy_(theirs.tau_w_trainer.weight)
        ours.a.copy_(theirs.a)
        ours.b.copy_(theirs.b)
    data = torch.randn(2, 60, 12, **F64)
    state = tuple(torch.zeros(2, 10, **F64) for _ in range(3))
    their_spikes = []
    for x_t in data.unbind(1):
        z, state = theirs(x_t, state)
        their_spikes.append(z)
    their_spikes = torch.stack(their_spikes, 1)
    spikes = ours(nn.functional.linear(data, theirs.weight, theirs.bias))
    assert uses_scan(spikes)
    weights = torch.randn(spikes.shape, **F64)
    their_params = [theirs.weight, theirs.recurrent, theirs.tau_u_trainer.weight,
                    theirs.tau_w_trainer.weight, theirs.a, theirs.b]
    our_params = [theirs.weight, ours.rec_connect.weight, ours.kappa_u, ours.kappa_w, ours.a,
                  ours.b]
    want = torch.autograd.grad((their_spikes * weights).sum(), their_params)
    got = torch.autograd.grad((spikes * weights).sum(), our_params)
    assert torch.equal(spikes, their_spikes) and spikes.mean() > 0.05
    torch.testing.assert_close(ours.u, state[0])
    torch.testing.assert_close(ours.w, state[2])
    for name, g, t in zip(("weight", "recurrent", "kappa_u", "kappa_w", "a", "b"), got, want):
        assert t.abs().max() > 0, name
        torch.testing.assert_close(g, t, **EXACT, msg=lambda m, n=name: f"{n}: {m}")


def test_bad_arguments_name_the_fix():
    x = torch.rand(2, 4, 3)
    with pytest.raises(ValueError, match=r"weight must be a \(3, 3\)"):
        ops.adlif_recurrent(x, torch.rand(2, 2), None, 0.9, 0.9, 1.0, 1.0)
    with pytest.raises(ValueError, match="bias must be None or a"):
        ops.adlif_recurrent(x, torch.rand(3, 3), torch.rand(2), 0.9, 0.9, 1.0, 1.0)
    with pytest.raises(ValueError, match=r"weight.to\(x\)"):
        ops.adlif_recurrent(x, torch.rand(3, 3, **F64), None, 0.9, 0.9, 1.0, 1.0)
    with pytest.raises(TypeError, match="float32 or float64"):
        ops.adlif_recurrent(x.half(), torch.rand(3, 3).half(), None, 0.9, 0.9, 1.0, 1.0)
    with pytest.raises(TypeError, match="rec_connect must be an nn.Module"):
        enn.adLIFRecurrent(3, torch.rand(3, 3))
    with pytest.raises(enn.ShapeError, match="adLIFRecurrent was built for features"):
        enn.adLIFRecurrent(3)(torch.rand(2, 4, 5))


def test_autocast_runs_the_loop():
    """Under autocast (bfloat16 matmuls) the layer runs the per-step loop, spikes in the
    input's dtype (the feedback is cast to it), gradients reaching the input and the recurrent
    weight; the states stay float32 and are carried into a float32 call."""
    torch.manual_seed(0)
    layer = enn.adLIFRecurrent(6)
    x = (drive(2, 10, (6,), torch.float32) + 8).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
    assert out.dtype == torch.float32 and not uses_scan(out) and out.mean() > 0.05
    assert layer.u.dtype == layer.w.dtype == torch.float32
    out.float().sum().backward()
    assert x.grad.abs().max() > 0 and layer.rec_connect.weight.grad.abs().max() > 0
    layer.detach_states()  # the values carried on; the graph backward freed cut (else a warning)
    assert uses_scan(layer(x))


def test_recurrent_adlif_network():
    """FeedForwardSNN(neuron="adlif", recurrent=True): the hidden layer an adLIFRecurrent on
    the fused path, gradients reaching its recurrent weight, parameters projected by
    apply_parameter_constraints."""
    from exodus_lightning.models import FeedForwardSNN

    torch.manual_seed(0)
    net = FeedForwardSNN((12,), 3, hidden_sizes=(8,), neuron="adlif", recurrent=True,
                         gradient="slayer")
    (hidden,) = [m for m in net.modules() if isinstance(m, enn.adLIFRecurrent)]
    out = net(torch.rand(2, 15, 12) * 30)
    assert uses_scan(out)
    out.square().sum().backward()
    assert hidden.rec_connect.weight.grad.abs().max() > 0
    with torch.no_grad():
        hidden.a.fill_(5.0)
    enn.apply_parameter_constraints(net)
    assert hidden.a.max() == hidden.a_range[1]
