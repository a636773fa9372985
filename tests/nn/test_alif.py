"""The ALIF layers: against sinabs' ALIF and ALIFRecurrent (optional test dependency) on the
same inputs and settings, and on their own (errors, trainable parameters, state handling)."""

from __future__ import annotations

import itertools
import warnings

import pytest
import torch
from torch import nn

from exodus_lightning import nn as enn
from exodus_lightning.nn import activation as ours

GRAD_TOLERANCE = dict(rtol=1e-4, atol=1e-5)
# tau_syn, spike_fn, reset_fn, min_v_mem, norm_input: every combination.
SETTINGS = list(itertools.product([None, 3.0], ["single", "multi", "max2"], ["subtract", "zero"],
                                  [None, -0.5], [True, False]))


def _spike_fn(module, name):
    return {"single": module.SingleSpike, "multi": module.MultiSpike,
            "max2": module.MaxSpike(2)}[name]


def _reset_fn(module, name):
    return module.MembraneSubtract() if name == "subtract" else module.MembraneReset()


def _grad(p):
    return torch.zeros_like(p) if p.grad is None else p.grad


@pytest.mark.parametrize("tau_syn, spike, reset, min_v_mem, norm_input", SETTINGS)
def test_alif_equals_sinabs(tau_syn, spike, reset, min_v_mem, norm_input):
    sl = pytest.importorskip("sinabs.layers")
    sa = pytest.importorskip("sinabs.activation")
    gen = torch.Generator().manual_seed(SETTINGS.index((tau_syn, spike, reset, min_v_mem,
                                                         norm_input)))
    kwargs = dict(tau_mem=torch.tensor(8.0), tau_adapt=torch.tensor(20.0),
                  tau_syn=None if tau_syn is None else torch.tensor(tau_syn), adapt_scale=1.8,
                  spike_threshold=torch.tensor(1.0), min_v_mem=min_v_mem, norm_input=norm_input,
                  record_states=True)
    theirs = sl.ALIF(spike_fn=_spike_fn(sa, spike), reset_fn=_reset_fn(sa, reset), **kwargs)
    mine = enn.ALIF(spike_fn=_spike_fn(ours, spike), reset_fn=_reset_fn(ours, reset), **kwargs)
    # sinabs' ALIF scales a synaptic current by (1 − α) at every step: it needs a larger drive.
    scale, offset = (1.5, 0.8 if tau_syn is None else 2.0) if norm_input else (0.5, 0.2)
    for _call in range(2):  # the second call starts from the states the first one left
        x = torch.randn(3, 40, 10, generator=gen) * scale + offset
        x_theirs, x_mine = x.clone().requires_grad_(), x.clone().requires_grad_()
        out_theirs, out_mine = theirs(x_theirs), mine(x_mine)
        assert out_mine.sum() > 20, "too few spikes to test anything"
        torch.testing.assert_close(out_mine, out_theirs, rtol=0, atol=0)
        for name in ("v_mem", "b", "spike_threshold"):
            torch.testing.assert_close(getattr(mine, name), getattr(theirs, name),
                                       msg=lambda m, n=name: f"state {n}: {m}")
        assert mine.recordings.keys() == theirs.recordings.keys()
        for name in ("b", "spike_threshold"):
            torch.testing.assert_close(mine.recordings[name], theirs.recordings[name],
                                       msg=lambda m, n=name: f"recording {n}: {m}")
        # sinabs' recordings of v_mem and i_syn alias its state dict: entry t holds the value
        # step t + 1 wrote before its reset (for v_mem the pre-reset membrane), and only the
        # last entry is that of step T. Ours hold step t's values at every t.
        torch.testing.assert_close(mine.recordings["v_mem"][:, -1],
                                   theirs.recordings["v_mem"][:, -1])
        if tau_syn is not None:
            torch.testing.assert_close(mine.recordings["i_syn"][:, 1:],
                                       theirs.recordings["i_syn"][:, :-1])
            torch.testing.assert_close(mine.recordings["i_syn"][:, -1],
                                       theirs.recordings["i_syn"][:, -1])
        weights = torch.randn(out_mine.shape, generator=gen)
        (out_theirs * weights).sum().backward()
        (out_mine * weights).sum().backward()
        torch.testing.assert_close(x_mine.grad, x_theirs.grad, **GRAD_TOLERANCE)
        for name in ("tau_mem", "tau_adapt") + (("tau_syn",) if tau_syn else ()):
            torch.testing.assert_close(_grad(getattr(mine, name)), _grad(getattr(theirs, name)),
                                       **GRAD_TOLERANCE, msg=lambda m, n=name: f"grad {n}: {m}")
        theirs.zero_grad()
        mine.zero_grad()
        if tau_syn is not None:
            # sinabs' ALIF never writes its i_syn state back: each call starts from zero current.
            # Ours carries it (tested below); start the next call as sinabs does.
            assert mine.i_syn.abs().sum() > 0 and theirs.i_syn.abs().sum() == 0
            mine.i_syn = torch.zeros_like(mine.i_syn)


def test_alif_recurrent_equals_sinabs():
    sl = pytest.importorskip("sinabs.layers")
    gen = torch.Generator().manual_seed(5)
    connection = nn.Linear(12, 12, bias=False)
    with torch.no_grad():
        connection.weight.copy_(torch.randn(12, 12, generator=gen) * 0.4)
    theirs = sl.ALIFRecurrent(tau_mem=torch.tensor(10.0), tau_adapt=torch.tensor(30.0),
                              rec_connect=connection, adapt_scale=1.2)
    mine = enn.ALIFRecurrent(tau_mem=torch.tensor(10.0), tau_adapt=torch.tensor(30.0),
                             rec_connect=connection, adapt_scale=1.2)
    x = torch.randn(2, 50, 12, generator=gen) * 1.5 + 0.9
    x_theirs, x_mine = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_theirs, out_mine = theirs(x_theirs), mine(x_mine)
    assert out_mine.sum() > 10
    torch.testing.assert_close(out_mine, out_theirs, rtol=0, atol=0)
    out_theirs.sum().backward()
    grad_weight_theirs = connection.weight.grad.clone()
    connection.weight.grad = None
    out_mine.sum().backward()
    torch.testing.assert_close(x_mine.grad, x_theirs.grad, **GRAD_TOLERANCE)
    torch.testing.assert_close(connection.weight.grad, grad_weight_theirs, **GRAD_TOLERANCE)


def test_synaptic_current_is_carried_across_calls():
    layer = enn.ALIF(tau_mem=5.0, tau_adapt=10.0, tau_syn=4.0)
    x = torch.randn(2, 20, 3, generator=torch.Generator().manual_seed(3)) * 2 + 1
    whole = layer(x)
    layer.reset_states()
    halves = torch.cat([layer(x[:, :11]), layer(x[:, 11:])], 1)
    torch.testing.assert_close(halves, whole, rtol=0, atol=0)


def test_trainable_threshold_and_adaptation_scale_get_gradients():
    layer = enn.ALIF(tau_mem=5.0, tau_adapt=15.0, adapt_scale=torch.full((6,), 0.8),
                     spike_threshold=torch.full((6,), 0.9), train_threshold=True,
                     train_adapt_scale=True, train_alphas=True)
    x = torch.randn(4, 60, 6, generator=torch.Generator().manual_seed(1)) * 2 + 1
    layer(x).sum().backward()
    for name in ("b0", "adapt_scale", "alpha_mem", "alpha_adapt"):
        grad = getattr(layer, name).grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_alif_layer_backends_agree_in_float64():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 30, 5, generator=gen, dtype=torch.float64) * 2 + 1
    grads = {}
    for backend in ("extension", "reference"):
        layer = enn.ALIF(tau_mem=torch.tensor(6.0, dtype=torch.float64),
                         tau_adapt=torch.tensor(12.0, dtype=torch.float64), tau_syn=2.0,
                         min_v_mem=-0.3, spike_fn=ours.MultiSpike, backend=backend,
                         train_threshold=True, train_adapt_scale=True).double()
        leaf = x.clone().requires_grad_()
        out = layer(leaf)
        (out * torch.linspace(-1, 1, 5, dtype=torch.float64)).sum().backward()
        grads[backend] = [out, leaf.grad] + [p.grad for p in layer.parameters()]
    for got, want in zip(grads["extension"], grads["reference"]):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_squeeze_variant_folds_time():
    layer = enn.ALIFSqueeze(tau_mem=5.0, tau_adapt=10.0, batch_size=2)
    reference = enn.ALIF(tau_mem=5.0, tau_adapt=10.0)
    x = torch.randn(2, 7, 3) * 2 + 1
    torch.testing.assert_close(layer(x.flatten(0, 1)), reference(x).flatten(0, 1))


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(reset_fn=ours.MembraneSubtract(subtract_value=0.5)), "subtract_value"),
    (dict(adapt_scale=-1.0), "adapt_scale must be >= 0"),
    (dict(tau_adapt=0.0), "tau_adapt must be > 0"),
    (dict(spike_threshold=0.5, min_v_mem=0.6), "min_v_mem"),
])
def test_bad_arguments_name_the_argument(kwargs, pattern):
    arguments = dict(tau_mem=5.0, tau_adapt=10.0) | kwargs
    with pytest.raises(ValueError, match=pattern):
        enn.ALIF(**arguments)


def test_setting_a_fixed_subtract_value_later_is_refused():
    layer = enn.ALIF(tau_mem=5.0, tau_adapt=10.0)
    with pytest.raises(ValueError, match="subtract_value"):
        layer.subtract_value = 0.3
    layer.reset_fn = ours.MembraneReset()
    assert layer.reset == "zero"


def test_training_the_threshold_with_a_reset_to_zero_warns_and_is_indeed_inert():
    with pytest.warns(UserWarning, match="ALIF: train_threshold and train_adapt_scale with a "
                                         "reset to zero train nothing"):
        layer = enn.ALIF(10.0, 50.0, train_threshold=True, train_adapt_scale=True,
                         reset_fn=ours.MembraneReset())
    x = torch.rand(2, 40, 6) * 3
    spikes = layer(x)
    assert spikes.sum() > 0
    spikes.sum().backward()
    for name in ("b0", "adapt_scale", "tau_adapt"):
        assert torch.count_nonzero(getattr(layer, name).grad) == 0, name
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        enn.ALIF(10.0, 50.0, train_threshold=True)  # subtracting: they learn, no warning


def _alif_float64_loop(x, tau_mem, tau_adapt, adapt_scale, b0, min_v_mem):
    """ALIF's documented dynamics (no norm_input, single spike, subtracting reset) in float64:
    v_t = α v⁺ + x_t, θ_t = b0 + β b, s_t = [v_t ≥ θ_t], v⁺ = max(v_t − θ_t s_t, min_v_mem),
    b_t = ρ b + (1 − ρ) s_t."""
    alpha = torch.exp(torch.tensor(-1 / tau_mem, dtype=torch.float64))
    rho = torch.exp(torch.tensor(-1 / tau_adapt, dtype=torch.float64))
    v = torch.zeros_like(x[:, 0])
    b = torch.zeros_like(v)
    spikes = []
    for x_t in x.unbind(1):
        v = alpha * v + x_t
        threshold = b0 + adapt_scale * b
        s = (v >= threshold).double()
        v = (v - threshold * s).clamp(min=min_v_mem)
        b = rho * b + (1 - rho) * s
        spikes.append(s)
    return torch.stack(spikes, 1), v, b


@pytest.mark.parametrize("layer_type", [enn.ALIF, enn.ALIFRecurrent])
def test_float64_layer_uses_the_numbers_given_not_their_float32_rounding(layer_type):
    # sinabs keeps b0, adapt_scale and min_v_mem as Python floats; 1.8, 0.8731 and -0.3 are
    # not float32 numbers, so rounding them first would leave a ~1e-8 error in float64.
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(3, 40, 6, generator=gen, dtype=torch.float64) * 1.2 - 0.3
    kwargs = dict(spike_threshold=0.8731, min_v_mem=-0.3, norm_input=False)
    if layer_type is enn.ALIFRecurrent:
        kwargs["rec_connect"] = nn.Linear(6, 6, bias=False)
        torch.nn.init.zeros_(kwargs["rec_connect"].weight)  # the loop has no recurrence
    layer = layer_type(8.0, 40.0, **kwargs).double()  # adapt_scale: sinabs' default 1.8
    assert (layer.b0.item(), layer.adapt_scale.item(), layer.min_v_mem.item()) == (
        0.8731, 1.8, -0.3)
    spikes, v, b = _alif_float64_loop(x, 8.0, 40.0, 1.8, 0.8731, -0.3)
    assert spikes.sum() > 20
    torch.testing.assert_close(layer(x), spikes, rtol=0, atol=0)
    torch.testing.assert_close(layer.v_mem, v, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(layer.b, b, rtol=1e-14, atol=1e-14)


def test_float64_settings_equal_sinabs_plain_floats():
    sl = pytest.importorskip("sinabs.layers")
    kwargs = dict(spike_threshold=0.8731, min_v_mem=-0.3)
    theirs = sl.ALIF(8.0, 40.0, **kwargs).double()
    mine = enn.ALIF(8.0, 40.0, **kwargs).double()
    assert mine.b0.item() == theirs.b0
    assert mine.adapt_scale.item() == theirs.adapt_scale
    assert mine.min_v_mem.item() == theirs.min_v_mem


def test_float32_settings_and_state_dict_are_unchanged():
    layer = enn.ALIF(8.0, 40.0, spike_threshold=0.8731, min_v_mem=-0.3)
    for name, number in (("b0", 0.8731), ("adapt_scale", 1.8), ("min_v_mem", -0.3)):
        setting = getattr(layer, name)
        assert setting.dtype == torch.float32
        assert setting.item() == torch.tensor(number, dtype=torch.float32).item()
    assert set(layer.state_dict()) == {"v_mem", "b", "spike_threshold", "tau_mem", "tau_adapt"}
    # .float() after .double() rounds again; a round trip through float64 changes nothing.
    assert layer.double().float().b0.item() == torch.tensor(0.8731).item()


def test_settings_set_or_trained_since_are_not_overwritten_by_double():
    layer = enn.ALIF(8.0, 40.0, spike_threshold=0.8731, train_threshold=True)
    with torch.no_grad():
        layer.b0.add_(0.25)  # an optimizer step
    layer.adapt_scale = torch.tensor(0.7)  # a float32 tensor: its own rounding
    layer.min_v_mem = torch.tensor(-0.2)
    layer.double()
    assert layer.b0.item() == torch.tensor(0.8731 + 0.25, dtype=torch.float32).item()
    assert layer.adapt_scale.item() == torch.tensor(0.7).item()
    assert layer.min_v_mem.item() == torch.tensor(-0.2).item()
    again = enn.ALIF(8.0, 40.0)
    again.adapt_scale = 0.3  # a number assigned later is kept exactly too
    assert again.double().adapt_scale.item() == 0.3


@pytest.mark.parametrize("layer_type", [enn.ALIF, enn.ALIFRecurrent])
@pytest.mark.parametrize("limit", [None, 1, 3])
def test_max_spikes_per_step_given_works_as_in_lif(layer_type, limit):
    """max_spikes_per_step=None is unbounded multi-spike (as LIF's), not the default
    SingleSpike; 1 and K as given. A membrane five thresholds high in one step."""
    x = torch.zeros(1, 2, 4)
    x[:, 0] = 5.0
    extra = {} if layer_type is enn.ALIF else {"rec_connect": nn.Linear(4, 4, bias=False)}
    if extra:
        nn.init.zeros_(extra["rec_connect"].weight)
    alif = layer_type(10.0, 20.0, norm_input=False, max_spikes_per_step=limit, **extra)
    lif = enn.LIF(10.0, norm_input=False, max_spikes_per_step=limit)
    assert alif.max_spikes_per_step == limit
    expected = lif(x)
    assert expected[0, 0, 0] == (5 if limit is None else limit)
    torch.testing.assert_close(alif(x), expected)


def test_without_max_spikes_per_step_spike_fn_decides_as_in_sinabs():
    """Not given, the spike function decides: sinabs' default SingleSpike, or the one given."""
    sl = pytest.importorskip("sinabs.layers")
    sa = pytest.importorskip("sinabs.activation")
    x = torch.randn(2, 30, 5, generator=torch.Generator().manual_seed(3)) * 4 + 3
    for spike, most in ((None, 1), ("max2", 2), ("multi", 3)):
        theirs_fn = {} if spike is None else {"spike_fn": _spike_fn(sa, spike)}
        mine_fn = {} if spike is None else {"spike_fn": _spike_fn(ours, spike)}
        theirs = sl.ALIF(8.0, 20.0, norm_input=False, **theirs_fn)
        mine = enn.ALIF(8.0, 20.0, norm_input=False, **mine_fn)
        out = mine(x)
        assert out.max() >= most if spike == "multi" else out.max() == most
        torch.testing.assert_close(out, theirs(x), rtol=0, atol=0)
