"""The adLIF math of docs/adlif_math.md, checked before any kernel exists.

- The reverse scan of two adjoints (written here as a float64 loop) equals autograd of
  ``adlif_reference`` on every gradient, with many spikes and long sequences.
- ``adlif_reference`` equals a loop written from the authors' code (IGITUGraz/SE-adlif,
  ``SEAdLIF.forward``): their spike (heaviside plus the forward-gradient-injection surrogate), their
  reset with the detached spike, their parametrisation of τ_u, τ_w, a, b by κ_u, κ_w, ã, b̃ and q.
- Optionally, against the authors' module itself, imported from a copy of their repository
  (``SE_ADLIF_SRC``: a checkout or a bare git directory); skipped when there is none.
"""

from __future__ import annotations

import pytest
import torch

from exodus_lightning.ops.reference import adlif_reference
from exodus_lightning.ops.surrogate import SingleExponential
from tests.se_adlif import (
    SLAYER_ALPHA,
    SLAYER_C,
    TAU_U,
    TAU_W,
    Q,
    authors_layer,
    authors_loop,
    decay,
    slayer,
)

F64 = dict(dtype=torch.float64)


def _problem(batch: int, time: int, features: int, seed: int):
    """Inputs with many spikes, parameters in the authors' ranges (thresholds
    per neuron), and an upstream gradient on every output."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.rand(*shape, generator=gen, **F64)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, **F64)

    tau_u = TAU_U[0] + (TAU_U[1] - TAU_U[0]) * rand(features)
    tau_w = TAU_W[0] + (TAU_W[1] - TAU_W[0]) * rand(features)
    params = dict(
        alpha=torch.exp(-1 / tau_u), beta=torch.exp(-1 / tau_w),
        a=Q * rand(features), b=Q * 2 * rand(features),
        threshold=0.7 + 0.6 * rand(features))
    x = 10 + 8 * randn(batch, time, features)  # strong drive: adaptation b·s_t is large
    states = dict(u_init=randn(batch, features), w_init=randn(batch, features))
    upstream = dict(spikes=randn(batch, time, features), u_mem=0.3 * randn(batch, time, features),
                    w=0.1 * randn(batch, time, features), u_last=randn(batch, features),
                    w_last=randn(batch, features))
    return x, params, states, upstream


def _autograd(x, params, states, upstream, surrogate, gradient):
    """Every gradient of Σ upstream · outputs, by autograd through adlif_reference."""
    leaves = {"x": x, **params, **states}
    leaves = {name: t.clone().requires_grad_() for name, t in leaves.items()}
    p = {name: leaves[name] for name in params}
    s = {name: leaves[name] for name in states}
    outputs = adlif_reference(leaves["x"], p["alpha"], p["beta"], p["a"], p["b"], p["threshold"],
                              s["u_init"], s["w_init"], surrogate, gradient)
    loss = sum((out * upstream[name]).sum() for name, out in zip(upstream, outputs))
    grads = torch.autograd.grad(loss, list(leaves.values()))
    return dict(zip(leaves, grads)), outputs


def _reverse_scan(x, params, states, upstream, outputs, surrogate, gradient):
    """docs/adlif_math.md's reverse scan, as a plain loop over t = T..1 on the saved u_t, w_t."""
    alpha, beta, a, b, threshold = (params[k] for k in ("alpha", "beta", "a", "b", "threshold"))
    _, u_mem, w_trace, _, _ = (o.detach() for o in outputs)
    g, h, k = upstream["spikes"], upstream["u_mem"], upstream["w"]
    time = x.shape[1]

    def u_plus_at(t):  # u⁺_t, t = 0..T, rebuilt from the saved pre-reset u_t
        if t == 0:
            return states["u_init"]
        return torch.where(u_mem[:, t - 1] > threshold, torch.zeros_like(u_mem[:, t - 1]),
                           u_mem[:, t - 1])

    def w_at(t):  # w_t, t = 0..T
        return states["w_init"] if t == 0 else w_trace[:, t - 1]

    P, Q = upstream["u_last"].clone(), upstream["w_last"].clone()
    grad_x = torch.zeros_like(x)
    sums = {name: torch.zeros_like(P) for name in ("alpha", "beta", "a", "b", "threshold")}
    for t in range(time, 0, -1):
        u = u_mem[:, t - 1]
        s = (u > threshold).to(u.dtype)
        sigma = surrogate(u, threshold)
        W = Q + k[:, t - 1]
        R = P + (1 - beta) * a * W
        G = g[:, t - 1] + (1 - beta) * b * W
        if gradient == "exodus":
            G = G - u * R
        lam = h[:, t - 1] + sigma * G + (1 - s) * R
        grad_x[:, t - 1] = (1 - alpha) * lam
        sums["alpha"] += lam * (u_plus_at(t - 1) - x[:, t - 1] + w_at(t - 1))
        sums["beta"] += W * (w_at(t - 1) - a * u_plus_at(t) - b * s)
        sums["a"] += (1 - beta) * W * u_plus_at(t)
        sums["b"] += (1 - beta) * W * s
        sums["threshold"] -= sigma * G
        P, Q = alpha * lam, beta * W - (1 - alpha) * lam
    return {"x": grad_x, **{name: v.sum(0) for name, v in sums.items()},
            "u_init": P, "w_init": Q}


@pytest.mark.parametrize("gradient", ["slayer", "exodus"])
@pytest.mark.parametrize("seed", [0, 1])
def test_reverse_scan_equals_autograd(gradient, seed):
    x, params, states, upstream = _problem(3, 256, 24, seed)
    surrogate = SingleExponential(grad_width=0.2, grad_scale=0.2)
    want, outputs = _autograd(x, params, states, upstream, surrogate, gradient)
    rate = outputs[0].mean().item()
    assert 0.1 < rate < 0.6, f"want many spikes, got rate {rate}"
    assert outputs[0].sum(1).min() > 0  # every neuron of every sample spikes
    got = _reverse_scan(x, params, states, upstream, outputs, surrogate, gradient)
    assert got.keys() == want.keys()
    for name in want:
        scale = want[name].abs().max().item()
        assert scale > 0, name  # a zero gradient would compare equal to anything
        error = (got[name] - want[name]).abs().max().item()
        assert error <= 1e-10 * max(1.0, scale), f"{name}: max error {error} (scale {scale})"


def _ours_with_authors_parameters(x, kappa_u, kappa_w, a_raw, b_raw, u0, w0):
    """adlif_reference with the authors' parametrisation applied around it in autograd."""
    alpha, beta = decay(kappa_u, TAU_U), decay(kappa_w, TAU_W)
    surrogate = SingleExponential(grad_width=1 / SLAYER_ALPHA, grad_scale=SLAYER_C / 2)
    return adlif_reference(x, alpha, beta, Q * a_raw, Q * b_raw, torch.ones_like(a_raw), u0, w0,
                           surrogate, "slayer")


def _authors_problem(seed):
    gen = torch.Generator().manual_seed(seed)
    batch, time, features = 3, 200, 16
    raw = dict(kappa_u=torch.rand(features, generator=gen, **F64),
               kappa_w=torch.rand(features, generator=gen, **F64),
               a_raw=torch.rand(features, generator=gen, **F64),
               b_raw=2 * torch.rand(features, generator=gen, **F64))
    x = 10 + 8 * torch.randn(batch, time, features, generator=gen, **F64)
    u0 = 0.5 * torch.randn(batch, features, generator=gen, **F64)
    w0 = torch.randn(batch, features, generator=gen, **F64)
    return x, raw, u0, w0


def _values_and_grads(fn, x, raw, u0, w0, upstream_seed=7):
    leaves = {"x": x, **raw, "u0": u0, "w0": w0}
    leaves = {name: t.clone().requires_grad_() for name, t in leaves.items()}
    outputs = fn(leaves["x"], *(leaves[k] for k in raw), leaves["u0"], leaves["w0"])
    gen = torch.Generator().manual_seed(upstream_seed)
    loss = sum((out * torch.randn(out.shape, generator=gen, **F64)).sum() for out in outputs)
    grads = torch.autograd.grad(loss, list(leaves.values()))
    return [o.detach() for o in outputs], dict(zip(leaves, grads))


@pytest.mark.parametrize("seed", [0, 1])
def test_reference_equals_the_authors_semantics(seed):
    x, raw, u0, w0 = _authors_problem(seed)
    ours, ours_grads = _values_and_grads(_ours_with_authors_parameters, x, raw, u0, w0)
    theirs, their_grads = _values_and_grads(authors_loop, x, raw, u0, w0)
    assert ours[0].sum() > 0.1 * ours[0].numel()
    assert torch.equal(ours[0], theirs[0])  # spikes, bit for bit
    for got, want in zip(ours[1:], theirs[1:]):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    for name in their_grads:
        assert their_grads[name].abs().max() > 0, name
        torch.testing.assert_close(ours_grads[name], their_grads[name], rtol=1e-10, atol=1e-10,
                                   msg=lambda m, n=name: f"{n}: {m}")


def test_reference_at_a_spike_exactly_on_threshold_does_not_fire():
    """heaviside(0, 0) = 0: u_t = θ is no spike (our LIF fires at v ≥ θ; adLIF does not)."""
    x = torch.full((1, 1, 1), 2.0, **F64)
    one = torch.ones(1, **F64)
    spikes, u_mem, *_ = adlif_reference(x, one * 0.5, one * 0.5, one, one, one,
                                        torch.zeros(1, 1, **F64), torch.zeros(1, 1, **F64),
                                        slayer)
    assert u_mem.item() == 1.0 and spikes.item() == 0.0


# Optional: the authors' module itself (tests/se_adlif.py imports it).


def test_reference_equals_the_authors_module(tmp_path, monkeypatch):
    inputs, neurons, batch, time = 12, 10, 2, 200
    torch.manual_seed(0)
    layer = authors_layer(tmp_path, monkeypatch, inputs, neurons)
    with torch.no_grad():
        layer.weight.mul_(15.0)  # x ≈ 10 ± 9: many spikes despite the adaptation
        layer.bias.fill_(10.0)
    data = torch.randn(batch, time, inputs, **F64)

    # Theirs: their step over time from zero states; the loss weights every spike.
    state = tuple(torch.zeros(batch, neurons, **F64) for _ in range(3))
    their_spikes = []
    for x_t in data.unbind(1):
        z, state = layer(x_t, state)
        their_spikes.append(z)
    their_spikes = torch.stack(their_spikes, 1)
    weights = torch.randn(their_spikes.shape, **F64)
    params = [layer.weight, layer.bias, layer.tau_u_trainer.weight, layer.tau_w_trainer.weight,
              layer.a, layer.b]
    their_grads = torch.autograd.grad((their_spikes * weights).sum(), params)

    # Ours: the same parameters through the same mappings, the op's loop in between.
    x = torch.nn.functional.linear(data, layer.weight, layer.bias)
    zeros = torch.zeros(batch, neurons, **F64)
    spikes, *_ = _ours_with_authors_parameters(
        x, layer.tau_u_trainer.weight, layer.tau_w_trainer.weight, layer.a, layer.b, zeros, zeros)
    our_grads = torch.autograd.grad((spikes * weights).sum(), params)

    assert their_spikes.sum() > 0.05 * their_spikes.numel()
    assert torch.equal(spikes, their_spikes.detach())
    names = ("weight", "bias", "kappa_u", "kappa_w", "a", "b")
    for name, got, want in zip(names, our_grads, their_grads):
        assert want.abs().max() > 0, name
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10,
                                   msg=lambda m, n=name: f"{n}: {m}")

