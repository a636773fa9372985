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
    lambda m: m.ALIF(torch.tensor([5.0, 9.0, 20.0]), 30.0, adapt_scale=0.5, min_v_mem=-1.0),
    lambda m: m.ALIFRecurrent(6.0, 20.0, torch.nn.Linear(3, 3), spike_threshold=0.7),
], ids=["lif", "lif_alphas", "iaf", "exp_leak", "lif_recurrent", "iaf_squeeze", "alif",
        "alif_recurrent"])
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


REJECTED_SURROGATES = {
    "single_exponential_0": (lambda: sa.SingleExponential(grad_width=0.0), "grad_width"),
    "single_exponential_negative": (lambda: sa.SingleExponential(grad_width=-0.5),
                                    "grad_width"),
    "periodic_exponential_0": (lambda: sa.PeriodicExponential(grad_width=0.0), "grad_width"),
    "gaussian_nan": (lambda: sa.Gaussian(sigma=float("nan")), "sigma"),
}
BUILDERS = {
    "LIF": lambda s: enn.LIF(5.0, surrogate_grad_fn=s),
    "IAF": lambda s: enn.IAF(surrogate_grad_fn=s),
    "ALIF": lambda s: enn.ALIF(5.0, 20.0, surrogate_grad_fn=s),
    "LIFRecurrent": lambda s: enn.LIFRecurrent(5.0, torch.nn.Linear(3, 3),
                                               surrogate_grad_fn=s),
    "adLIF": lambda s: enn.adLIF(3, surrogate_grad_fn=s),
}


@pytest.mark.parametrize("build", list(BUILDERS))
@pytest.mark.parametrize("case", list(REJECTED_SURROGATES))
def test_a_sinabs_surrogate_our_twin_rejects_is_an_error_at_construction(case, build):
    """sinabs computes NaN (or sign-flipped) gradients with these values; our twin refuses
    them, and so does a layer given sinabs' object."""
    surrogate, field = REJECTED_SURROGATES[case]
    name = type(surrogate()).__name__
    with pytest.raises(ValueError, match=rf"surrogate_grad_fn=.*sinabs\..*{name}\).*{field}"):
        BUILDERS[build](surrogate())


def test_sinabs_gives_nan_gradients_with_a_zero_width():
    """Why the error: sinabs' own layer with grad_width=0 gives NaN input gradients."""
    x = (torch.rand(1, 5, 3) * 2).requires_grad_()
    sinabs_layers.LIF(5.0, surrogate_grad_fn=sa.SingleExponential(grad_width=0.0))(x).sum(
        ).backward()
    assert torch.isnan(x.grad).any()


def test_a_sinabs_surrogate_with_unreadable_fields_is_evaluated_as_given():
    """A field that is no float (an integer tensor here) is not read into a fused twin: the
    object is called as it is, and the layer's gradients are sinabs'."""
    surrogate = sa.SingleExponential(grad_width=0.5, grad_scale=torch.tensor(2))
    assert ours.fused_surrogate(surrogate) is surrogate
    cfg = {"seed": 3, "threshold": 1.0, "norm_input": False}
    x = drive(cfg)
    mine = forward_backward(enn.LIF(8.0, norm_input=False, surrogate_grad_fn=surrogate), x)
    theirs = forward_backward(sinabs_layers.LIF(8.0, norm_input=False,
                                                surrogate_grad_fn=surrogate), x)
    assert mine["out"].sum() > 0 and mine["grad_x"].abs().sum() > 0
    assert_same(mine, theirs, exact_forward=True)


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


def test_alif_restarts_from_zero_on_a_new_batch_size():
    """sinabs' ALIF (unlike its LIF) starts a call with another batch size from zeros."""
    theirs, mine = sinabs_layers.ALIF(10.0, 20.0), enn.ALIF(10.0, 20.0)
    for batch in (3, 2, 2, 4):
        x = torch.rand(batch, 10, 4) * 3
        torch.manual_seed(batch)  # a resampling would draw: both would have to draw alike
        expected = theirs(x)
        torch.manual_seed(batch)
        assert torch.equal(mine(x), expected)
        assert torch.equal(mine.v_mem, theirs.v_mem) and torch.equal(mine.b, theirs.b)


def test_alif_settings_are_assignable_numbers_and_checkpoints_of_both_load():
    x = torch.rand(2, 12, 3) * 3
    theirs, mine = sinabs_layers.ALIF(10.0, 20.0), enn.ALIF(10.0, 20.0)
    for layer in (theirs, mine):  # plain attributes in sinabs
        layer.adapt_scale, layer.b0 = 0.5, 1.5
    assert torch.equal(mine(x), theirs(x))
    assert "b0" not in mine.state_dict() and mine.b0.item() == 1.5
    expected = theirs.reset_states() or theirs(x)

    trained = enn.ALIF(10.0, 20.0, train_threshold=True, train_adapt_scale=True)
    b0 = trained.b0
    trained.b0, trained.adapt_scale = 1.5, 0.5  # written in place: the optimizer keeps it
    assert trained.b0 is b0 and isinstance(b0, torch.nn.Parameter) and b0.item() == 1.5
    assert {"b0", "adapt_scale"} <= set(trained.state_dict())
    assert torch.equal(trained(x), expected)

    # A state_dict that holds the settings (a trained layer's, or one saved before they left
    # the state_dict) sets them; sinabs' (without them) keeps the constructor's.
    saved = trained.state_dict() | {"min_v_mem": torch.tensor(-0.25)}
    plain = enn.ALIF(10.0, 20.0, min_v_mem=-1.0)
    plain.load_state_dict(saved, strict=True)
    assert (plain.b0.item(), plain.adapt_scale.item(), plain.min_v_mem.item()) == (1.5, 0.5, -0.25)
    fresh = enn.ALIF(10.0, 20.0, train_threshold=True)
    fresh.load_state_dict(sinabs_layers.ALIF(10.0, 20.0).state_dict(), strict=True)
    assert fresh.b0.item() == 1.0


@pytest.mark.parametrize("name", ["IAFSqueeze", "LIFSqueeze", "ExpLeakSqueeze"])
def test_squeeze_sizes_are_the_positional_arguments(name):
    import inspect

    theirs_class, mine_class = getattr(sinabs_layers, name), getattr(enn, name)
    positional = [p.name for p in inspect.signature(theirs_class).parameters.values()
                  if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert positional == ["batch_size", "num_timesteps"]
    assert [p.name for p in inspect.signature(mine_class).parameters.values()
            if p.kind is p.POSITIONAL_OR_KEYWORD] == positional
    kwargs = {"IAFSqueeze": {}, "LIFSqueeze": dict(tau_mem=10.0),
              "ExpLeakSqueeze": dict(tau_mem=10.0)}[name]
    theirs, mine = theirs_class(3, **kwargs), mine_class(3, **kwargs)
    assert (mine.batch_size, mine.num_timesteps) == (theirs.batch_size, theirs.num_timesteps)
    x = torch.rand(3 * 7, 4) * 3
    torch.testing.assert_close(mine(x), theirs(x))
    with pytest.raises(TypeError):  # a layer argument by position is an error, as in sinabs
        mine_class(3, None, 10.0)
    assert enn.ALIFSqueeze(3, tau_mem=10.0, tau_adapt=20.0).batch_size == 3  # not in sinabs


def test_zero_grad_zeroes_the_gradients_as_sinabs():
    x = torch.rand(2, 5, 3) * 3
    for module in (sinabs_layers, enn):
        layer = module.LIF(10.0, tau_syn=5.0)
        layer(x).sum().backward()
        layer.zero_grad()
        assert torch.equal(layer.tau_mem.grad, torch.zeros(())), module
        assert layer.v_mem.grad_fn is None
    layer(x).sum().backward()
    layer.zero_grad(set_to_none=True)
    assert layer.tau_mem.grad is None


@pytest.mark.parametrize("case", ["per_channel", "per_neuron"])
def test_parameters_with_a_batch_axis_as_sinabs(case):
    """(1, C, 1, 1) and (1, F), as for BatchNorm: sinabs broadcasts them against the state
    (batch, *features)."""
    g = torch.Generator().manual_seed(3)
    if case == "per_channel":
        x = torch.randn(2, 8, 4, 3, 3, generator=g) * 3
        shape = (1, 4, 1, 1)
    else:
        x = torch.randn(2, 8, 5, generator=g) * 3
        shape = (1, 5)
    n = shape[1]
    kwargs = dict(tau_mem=torch.linspace(5.0, 20.0, n).reshape(shape),
                  tau_syn=torch.linspace(2.0, 4.0, n).reshape(shape),
                  spike_threshold=torch.linspace(0.5, 1.5, n).reshape(shape),
                  min_v_mem=torch.full(shape, -0.5), record_states=True)
    theirs = forward_backward(sinabs_layers.LIF(**kwargs), x)
    mine = forward_backward(enn.LIF(**kwargs), x)
    assert mine.keys() == theirs.keys()
    assert torch.equal(mine["out"], theirs["out"])
    for name in mine:
        torch.testing.assert_close(mine[name], theirs[name], **GRAD_TOLERANCE)
    alif = dict(tau_mem=kwargs["tau_mem"], tau_adapt=kwargs["tau_mem"] * 3,
                spike_threshold=kwargs["spike_threshold"])
    assert torch.equal(enn.ALIF(**alif)(x), sinabs_layers.ALIF(**alif)(x))
    with pytest.raises(ValueError, match="does not broadcast"):  # a batch axis of 2 is not one
        enn.LIF(torch.full((2, *shape[1:]), 5.0))(x)


def test_lists_and_numpy_values_as_sinabs():
    np = pytest.importorskip("numpy")
    x = torch.rand(2, 6, 4) * 3
    for kwargs in (dict(tau_mem=[5.0, 8.0, 10.0, 20.0], tau_syn=[2.0, 3.0, 4.0, 5.0]),
                   dict(tau_mem=np.array([5.0, 8.0, 10.0, 20.0]), min_v_mem=np.float32(-0.5)),
                   dict(tau_mem=5.0, spike_threshold=np.float32(0.7))):
        assert torch.equal(enn.LIF(**kwargs)(x), sinabs_layers.LIF(**kwargs)(x)), kwargs
    with pytest.raises(TypeError, match="tau_mem must be a float"):
        enn.LIF("fast")


@pytest.mark.parametrize("build", [
    lambda m, tau: m.LIF(tau, tau_syn=tau / 3, record_states=True),
    lambda m, tau: m.IAF(tau_syn=tau, record_states=True),
    lambda m, tau: m.ExpLeak(tau, record_states=True),
    lambda m, tau: m.LIF(tau, train_alphas=True, record_states=True),
    lambda m, tau: m.ALIF(tau, tau * 2, record_states=True),
], ids=["lif", "iaf", "exp_leak", "lif_alphas", "alif"])
def test_float64_time_constants_as_sinabs(build):
    """sinabs' LIF family casts τ to float32 (α computed in float32: the same membrane bit for
    bit); its ALIF keeps float64."""
    x = torch.randn(3, 40, 16, generator=torch.Generator().manual_seed(0)) * 4 + 1
    tau = torch.linspace(3.0, 30.0, 16, dtype=torch.float64)
    theirs, mine = build(sinabs_layers, tau), build(enn, tau)
    assert ({n: p.dtype for n, p in mine.named_parameters()}
            == {n: p.dtype for n, p in theirs.named_parameters()})
    assert torch.equal(mine(x), theirs(x))
    if isinstance(mine, enn.ALIF):
        return  # sinabs' states then turn float64; ours keep the input's dtype (documented)
    assert torch.equal(mine.recordings["v_mem"], theirs.recordings["v_mem"])


def test_max_spike_with_a_whole_float_as_sinabs():
    x = torch.rand(2, 10, 4) * 6
    expected = sinabs_layers.LIF(5.0, spike_fn=sa.MaxSpike(2.0))(x)
    assert torch.equal(enn.LIF(5.0, spike_fn=sa.MaxSpike(2.0))(x), expected)
    with pytest.raises(ours.UnsupportedActivationError, match="whole number"):
        enn.LIF(5.0, spike_fn=sa.MaxSpike(2.5))


@pytest.mark.parametrize("build", [
    lambda m, tau: m.LIF(tau, record_states=True),
    lambda m, tau: m.LIF(tau, tau_syn=tau, record_states=True),
    lambda m, tau: m.ExpLeak(tau, record_states=True),
    lambda m, tau: m.ALIF(tau, tau, record_states=True),
], ids=["lif", "lif_syn", "exp_leak", "alif"])
def test_time_constants_so_small_that_alpha_rounds_to_zero_as_sinabs(build):
    """exp(−1/τ) of τ < ~0.0096 is 0 in float32: a neuron without memory, which sinabs runs."""
    x = torch.rand(2, 12, 5, generator=torch.Generator().manual_seed(1)) * 3
    tau = torch.tensor([0.001, 0.005, 0.009, 0.5, 5.0])
    theirs, mine = build(sinabs_layers, tau), build(enn, tau)
    torch.testing.assert_close(mine(x), theirs(x), rtol=0, atol=0)
    if not isinstance(mine, enn.ALIF):  # sinabs' ALIF records step t + 1's v_mem (documented)
        torch.testing.assert_close(mine.recordings["v_mem"], theirs.recordings["v_mem"])
