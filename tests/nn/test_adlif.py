"""The adLIF layer: against the authors' SEAdLIF (a loop from their code, and their module when
a copy is present), the extension against the reference backend, the parametrisation and its
projection, states, and errors."""

from __future__ import annotations

import pytest
import torch

from exodus_lightning import nn as enn
from exodus_lightning.ops.surrogate import ArcTan
from tests.se_adlif import authors_layer, authors_loop

F64 = dict(dtype=torch.float64)


def _layer(neurons=10, seed=0, **kwargs):
    torch.manual_seed(seed)
    return enn.adLIF(neurons, **kwargs).double()


def _drive(batch, time, neurons, seed):
    gen = torch.Generator().manual_seed(seed)
    return 8 + 8 * torch.randn(batch, time, neurons, generator=gen, **F64)


def _params(layer):
    return [layer.kappa_u, layer.kappa_w, layer.a, layer.b]


@pytest.mark.parametrize("backend", ["extension", "reference"])
def test_layer_equals_the_authors_loop_over_two_calls(backend):
    """Two calls (the second from the states the first left) against their step loop, with the
    layer's own parameters; spikes, states, input and parameter gradients."""
    layer = _layer(backend=backend)
    xs = [_drive(3, 60, 10, seed) for seed in (1, 2)]
    weights = [torch.randn(3, 60, 10, generator=torch.Generator().manual_seed(s), **F64)
               for s in (3, 4)]

    leaves = [x.clone().requires_grad_() for x in xs]
    loss = sum((layer(x) * w).sum() for x, w in zip(leaves, weights))
    ours = torch.autograd.grad(loss, [*leaves, *_params(layer)])
    our_states = (layer.u.detach(), layer.w.detach())

    their_leaves = [x.clone().requires_grad_() for x in xs]
    u = w = torch.zeros(3, 10, **F64)
    loss, spikes = 0, []
    for x, weight in zip(their_leaves, weights):
        s, _, _, u, w = authors_loop(x, *_params(layer), u, w)
        spikes.append(s)
        loss = loss + (s * weight).sum()
    theirs = torch.autograd.grad(loss, [*their_leaves, *_params(layer)])

    assert sum(s.sum() for s in spikes) > 0.05 * 2 * 3 * 60 * 10
    torch.testing.assert_close(our_states[0], u.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(our_states[1], w.detach(), rtol=1e-12, atol=1e-12)
    names = ("x1", "x2", "kappa_u", "kappa_w", "a", "b")
    for name, got, want in zip(names, ours, theirs):
        assert want.abs().max() > 0, name
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9,
                                   msg=lambda m, n=name: f"{n}: {m}")


def test_layer_equals_the_authors_module(tmp_path, monkeypatch):
    torch.manual_seed(0)
    theirs = authors_layer(tmp_path, monkeypatch, inputs=12, neurons=10)
    ours = _layer()
    with torch.no_grad():
        theirs.weight.mul_(15.0)
        theirs.bias.fill_(10.0)
        ours.kappa_u.copy_(theirs.tau_u_trainer.weight)
        ours.kappa_w.copy_(theirs.tau_w_trainer.weight)
        ours.a.copy_(theirs.a)
        ours.b.copy_(theirs.b)
    data = torch.randn(2, 150, 12, **F64)
    state = tuple(torch.zeros(2, 10, **F64) for _ in range(3))
    their_spikes = []
    for x_t in data.unbind(1):
        z, state = theirs(x_t, state)
        their_spikes.append(z)
    their_spikes = torch.stack(their_spikes, 1)
    spikes = ours(torch.nn.functional.linear(data, theirs.weight, theirs.bias))
    weights = torch.randn(spikes.shape, **F64)
    their_params = [theirs.tau_u_trainer.weight, theirs.tau_w_trainer.weight, theirs.a, theirs.b]
    want = torch.autograd.grad((their_spikes * weights).sum(), [theirs.weight, *their_params])
    got = torch.autograd.grad((spikes * weights).sum(), [theirs.weight, *_params(ours)])
    assert torch.equal(spikes, their_spikes)
    torch.testing.assert_close(ours.u, state[0])
    torch.testing.assert_close(ours.w, state[2])
    for name, g, t in zip(("weight", "kappa_u", "kappa_w", "a", "b"), got, want):
        torch.testing.assert_close(g, t, rtol=1e-10, atol=1e-10,
                                   msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("gradient", ["slayer", "exodus"])
@pytest.mark.parametrize("surrogate", [None, ArcTan()], ids=["authors", "arctan"])
def test_extension_equals_reference_backend(gradient, surrogate):
    kwargs = dict(gradient=gradient, record_states=True)
    if surrogate is not None:
        kwargs["surrogate_grad_fn"] = surrogate
    layers = [_layer(backend=backend, **kwargs) for backend in ("extension", "reference")]
    x = _drive(2, 50, 10, seed=5)
    results = []
    for layer in layers:
        leaf = x.clone().requires_grad_()
        out = layer(leaf)
        loss = (out * torch.linspace(-1, 1, 50, **F64)[:, None]).sum() + layer.w.sum()
        loss = loss + layer.recordings["u_mem"].mean() + layer.recordings["w"].mean()
        results.append((out, layer.u, layer.w, torch.autograd.grad(loss, [leaf, *_params(layer)])))
    (out, u, w, grads), (out_r, u_r, w_r, grads_r) = results
    assert torch.equal(out, out_r) and out.sum() > 0
    torch.testing.assert_close(u, u_r, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(w, w_r, rtol=1e-12, atol=1e-12)
    for g, g_r in zip(grads, grads_r):
        torch.testing.assert_close(g, g_r, rtol=1e-10, atol=1e-10)


def test_parameters_start_in_the_published_ranges_and_map_to_the_time_constants():
    layer = enn.adLIF(1000)
    assert all(p.requires_grad for p in _params(layer))
    for param, (low, high) in zip(_params(layer), ((0, 1), (0, 1), (0, 1), (0, 2))):
        assert low <= param.min() and param.max() <= high and param.std() > 0.2 * (high - low)
    assert 5 <= layer.tau_u.min() and layer.tau_u.max() <= 25
    assert 60 <= layer.tau_w.min() and layer.tau_w.max() <= 300
    with torch.no_grad():
        layer.kappa_u.fill_(0.25)
    torch.testing.assert_close(layer.alpha, torch.full((1000,), torch.exp(torch.tensor(-0.1))))
    a, b = layer.coupling
    torch.testing.assert_close(a, 120 * layer.a)
    torch.testing.assert_close(b, 120 * layer.b)


def test_out_of_range_values_run_clipped_and_the_projection_restores_them():
    layer = _layer(4)
    with torch.no_grad():
        layer.kappa_u.copy_(torch.tensor([-0.5, 0.0, 1.0, 1.5]))
        layer.a.copy_(torch.tensor([-1.0, 0.0, 0.5, 3.0]))
        layer.b.copy_(torch.tensor([2.5, 2.0, 1.0, -0.1]))
    torch.testing.assert_close(layer.tau_u, torch.tensor([5.0, 5.0, 25.0, 25.0], **F64))
    a, b = layer.coupling
    torch.testing.assert_close(a, 120 * torch.tensor([0.0, 0.0, 0.5, 1.0], **F64))
    torch.testing.assert_close(b, 120 * torch.tensor([2.0, 2.0, 1.0, 0.0], **F64))
    # The gradient passes everywhere, bounds included (a value projected onto a bound can leave
    # it again, as in the authors' training).
    layer.tau_u.sum().backward()
    assert (layer.kappa_u.grad == 20).all()
    enn.apply_parameter_constraints(torch.nn.Sequential(layer))
    assert layer.kappa_u.tolist() == [0.0, 0.0, 1.0, 1.0]
    assert layer.a.tolist() == [0.0, 0.0, 0.5, 1.0]
    assert layer.b.tolist() == [2.0, 2.0, 1.0, 0.0]


def test_frozen_parameters_get_no_gradient():
    layer = _layer(train_tau_u=False, train_b=False)
    layer(_drive(2, 20, 10, seed=1)).sum().backward()
    assert layer.kappa_u.grad is None and layer.b.grad is None
    assert layer.kappa_w.grad is not None and layer.a.grad is not None


def test_states_persist_reset_and_follow_a_new_batch_size():
    layer = _layer()
    x = _drive(3, 20, 10, seed=2)
    layer(x)
    u, w = layer.u.clone(), layer.w.clone()
    assert u.shape == w.shape == (3, 10) and w.abs().sum() > 0
    second = layer(x)
    layer.reset_states()
    assert not layer.u.any() and not layer.w.any()
    assert not torch.equal(layer(x), second)  # the second call started from (u, w), not zeros
    layer(x)
    on_new_batch_size = layer(x[:1])  # starts from rest, as the authors' layer (not resampled)
    assert layer.u.shape == (1, 10)
    layer.reset_states()
    assert torch.equal(on_new_batch_size, layer(x[:1]))
    state = layer.state_dict()
    fresh = _layer(seed=9)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.u, layer.u) and torch.equal(fresh.a, layer.a)


def test_multidimensional_features():
    layer = _layer((2, 3))
    out = layer(_drive(2, 30, 6, seed=4).reshape(2, 30, 2, 3))
    assert out.shape == (2, 30, 2, 3) and out.sum() > 0


@pytest.mark.parametrize("kwargs, error, pattern", [
    (dict(num_neurons=0), ValueError, "num_neurons must be a positive int"),
    (dict(tau_u_range=(25.0, 5.0)), ValueError, "tau_u_range must be"),
    (dict(tau_w_range=(0.0, 5.0)), ValueError, "tau_w_range must be"),
    (dict(b_range=(1.0, 0.0)), ValueError, "b_range must be"),
    (dict(q=float("nan")), ValueError, "q must be finite"),
    (dict(threshold=0.0), ValueError, "threshold must be finite and > 0"),
    (dict(gradient="bptt"), ValueError, "gradient must be one of"),
    (dict(surrogate_grad_fn=1.0), TypeError, "surrogate_grad_fn must be a callable"),
])
def test_bad_arguments_raise_named_errors(kwargs, error, pattern):
    arguments = dict(num_neurons=4) | kwargs
    with pytest.raises(error, match=pattern):
        enn.adLIF(**arguments)


def test_wrong_feature_shape_is_named():
    with pytest.raises(enn.ShapeError, match=r"built for features \(4,\)"):
        enn.adLIF(4)(torch.randn(2, 5, 3))


class TinyNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(6, 8)
        self.neurons = enn.adLIF(8, backend="extension")

    def forward(self, x):
        return self.neurons(self.fc(x) * 6 + 4).mean(1)


def _outputs_and_grads(model, x):
    model.zero_grad()
    enn.reset_states(model)
    out = model(x)
    out.square().sum().backward()
    return out.detach(), [p.grad.clone() for p in model.parameters()]


def test_compile_fullgraph_matches_eager():
    torch._dynamo.reset()
    model = TinyNet()
    x = torch.randn(4, 30, 6)
    eager_out, eager_grads = _outputs_and_grads(model, x)
    assert eager_out.sum() > 0
    out, grads = _outputs_and_grads(torch.compile(model, fullgraph=True, backend="aot_eager"), x)
    torch.testing.assert_close(out, eager_out)
    for a, b in zip(grads, eager_grads):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_autocast_gives_half_spikes_and_float32_states(dtype):
    model = TinyNet()
    x = torch.randn(4, 30, 6)
    with torch.autocast("cpu", dtype=dtype):
        spikes = model.neurons(model.fc(x) * 6 + 4)
    assert spikes.dtype == dtype and model.neurons.u.dtype == model.neurons.w.dtype == torch.float32
    spikes.float().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_float64_layer_uses_the_threshold_given_not_its_float32_rounding():
    # The authors keep the threshold as a Python float.
    layer = enn.adLIF(4, threshold=0.8731)
    assert layer.threshold.dtype == torch.float32
    assert layer.double().threshold.item() == 0.8731
