"""State semantics: streaming, batch changes, reset/detach, lazy creation, copies, checkpoints."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from exodus_lightning import nn as enn


def make_layers():
    """One layer of each kind, with the options that carry extra state or logic."""
    tau = torch.tensor([6.0, 12.0, 30.0]).reshape(3, 1, 1)
    return {
        "lif_syn_clip": lambda: enn.LIF(tau, tau_syn=4.0, min_v_mem=-0.5, train_threshold=True),
        "lif_single_zero": lambda: enn.LIF(8.0, max_spikes_per_step=1, reset="zero",
                                           norm_input=False, train_alphas=True),
        "iaf_syn": lambda: enn.IAF(spike_threshold=0.7, tau_syn=3.0),
        "exp_leak": lambda: enn.ExpLeak(tau, norm_input=True),
        "exp_leak_clip": lambda: enn.ExpLeak(5.0, min_v_mem=-0.2),
    }


LAYERS = make_layers()


def run_chunks(layer, x, splits):
    """Run x through layer in time chunks; return the output and the gradients by name."""
    x = x.clone().requires_grad_()
    outputs = [layer(chunk) for chunk in x.split(splits, dim=1)]
    out = torch.cat(outputs, 1)
    g = torch.Generator().manual_seed(1)
    weights = torch.randn(out.shape, generator=g, dtype=out.dtype)
    loss = (out * weights).sum() + layer.v_mem.square().sum()
    loss.backward()
    grads = {"x": x.grad} | {n: p.grad for n, p in layer.named_parameters() if p.requires_grad}
    return out.detach(), grads


@pytest.mark.parametrize("kind", list(LAYERS))
@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 1000), cut=st.integers(1, 11))
def test_two_calls_equal_one_call(kind, seed, cut):
    # float64: parameter gradients are sums over time whose order differs between one call and
    # two (per chunk, then across chunks); in float32 their rounding differs by up to ~3e-5
    # relative where terms cancel, in float64 by ~1e-15.
    x = (torch.randn(2, 12, 3, 2, 2, generator=torch.Generator().manual_seed(seed),
                     dtype=torch.float64) + 0.5) * 8
    out_one, grads_one = run_chunks(LAYERS[kind]().double(), x, [12])
    out_two, grads_two = run_chunks(LAYERS[kind]().double(), x, [cut, 12 - cut])
    torch.testing.assert_close(out_two, out_one)
    assert grads_two.keys() == grads_one.keys()
    for name in grads_one:
        torch.testing.assert_close(grads_two[name], grads_one[name], msg=name)


@pytest.mark.parametrize("kind", list(LAYERS))
def test_feature_change_starts_from_zero(kind):
    layer, fresh = LAYERS[kind](), LAYERS[kind]()
    layer(torch.rand(2, 4, 3, 2, 2) * 10)
    if kind.startswith("lif_single"):  # scalar parameters: other features work too
        y = torch.rand(5, 4, 7) * 10
        torch.testing.assert_close(layer(y), fresh(y))
        assert layer.v_mem.shape == (5, 7)


@pytest.mark.parametrize("kind", list(LAYERS))
def test_batch_change_resamples_states_as_sinabs(kind):
    """A new batch size draws each state's rows at random from the old batch (sinabs)."""
    layer = LAYERS[kind]()
    layer(torch.rand(3, 4, 3, 2, 2) * 10)
    old = {name: getattr(layer, name).detach().clone() for name in layer.state_names}
    torch.manual_seed(7)
    rows = {name: torch.randint(0, 3, (5,)) for name in layer.state_names}
    expected = LAYERS[kind]()
    for name in layer.state_names:
        setattr(expected, name, old[name][rows[name]])
    x = torch.rand(5, 4, 3, 2, 2) * 10
    torch.manual_seed(7)
    torch.testing.assert_close(layer(x), expected(x))
    assert layer.v_mem.shape == (5, 3, 2, 2)


@pytest.mark.parametrize("kind", list(LAYERS))
def test_reset_states_zeroes_and_keeps_pending_backward(kind):
    layer = LAYERS[kind]()
    x1 = (torch.rand(2, 5, 3, 2, 2) * 10).requires_grad_()
    out1 = layer(x1)
    assert layer.v_mem.abs().sum() > 0
    layer.reset_states()
    assert layer.v_mem.abs().sum() == 0 and layer.v_mem.grad_fn is None
    for name in layer.state_names:
        assert getattr(layer, name).shape == (2, 3, 2, 2)
    out1.sum().backward()  # the state of call 1 was replaced, not zeroed in place
    x2 = torch.rand(2, 5, 3, 2, 2) * 10
    torch.testing.assert_close(layer(x2), LAYERS[kind]()(x2))


@pytest.mark.parametrize("detach", [False, True])
def test_detach_states_cuts_the_graph(detach):
    layer = enn.LIF(10.0, tau_syn=5.0)
    x1 = (torch.rand(2, 6, 4) * 20).requires_grad_()
    x2 = torch.rand(2, 6, 4) * 20
    layer(x1)
    v_before = layer.v_mem.detach().clone()
    if detach:
        enn.detach_states(torch.nn.Sequential(torch.nn.Identity(), layer))
        torch.testing.assert_close(layer.v_mem, v_before)
    out2 = layer(x2)
    (out2.sum() + layer.v_mem.sum()).backward()
    if detach:
        assert x1.grad is None
    else:
        assert x1.grad is not None and x1.grad.abs().sum() > 0


def test_module_reset_states_reaches_nested_layers():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), enn.LIF(5.0),
                              torch.nn.Sequential(torch.nn.Linear(4, 2), enn.ExpLeak(3.0)))
    net(torch.rand(2, 5, 3) * 10)
    layers = [m for m in net.modules() if isinstance(m, enn.StatefulLayer)]
    assert len(layers) == 2 and all(m.v_mem.abs().sum() > 0 for m in layers)
    enn.reset_states(net)
    assert all(m.v_mem.abs().sum() == 0 for m in layers)


def test_states_are_created_lazily_in_the_state_dtype():
    layer = enn.LIF(5.0, tau_syn=2.0)
    assert layer.v_mem.shape == layer.i_syn.shape == (0,) and not layer.is_state_initialised()
    layer.double()(torch.rand(2, 3, 4, dtype=torch.float64))
    assert layer.v_mem.dtype == torch.float64 and layer.i_syn.shape == (2, 4)
    half = enn.LIF(5.0)
    out = half(torch.rand(2, 3, 4).to(torch.bfloat16))
    assert out.dtype == torch.bfloat16 and half.v_mem.dtype == torch.float32
    # A float32 call after a float64 one converts the state, values kept.
    value = layer.v_mem.clone()
    layer.float()(torch.zeros(2, 0, 4))
    assert layer.v_mem.dtype == torch.float32
    torch.testing.assert_close(layer.v_mem, value.float())


def test_shape_argument_creates_states():
    layer = enn.LIF(5.0, tau_syn=3.0, shape=(2, 4))
    assert layer.is_state_initialised() and layer.v_mem.shape == (2, 4)
    with pytest.raises(ValueError, match="shape"):
        enn.LIF(5.0, shape=(0, 4))


@pytest.mark.parametrize("kind", list(LAYERS))
def test_deepcopy_of_a_layer_inside_a_graph(kind):
    layer = LAYERS[kind]()
    layer(torch.rand(2, 4, 3, 2, 2) * 10)
    clone = copy.deepcopy(layer)
    x = torch.rand(2, 4, 3, 2, 2) * 10
    torch.testing.assert_close(clone(x), layer(x))
    assert all(a is not b for a, b in zip(clone.parameters(), layer.parameters(), strict=True))


@pytest.mark.parametrize("kind", list(LAYERS))
def test_state_dict_round_trip(kind):
    trained = LAYERS[kind]()
    with torch.no_grad():
        for param in trained.parameters():
            param.mul_(0.9)  # stays valid: tau > 0, alpha in [0, 1], threshold > min
    trained(torch.rand(2, 3, 3, 2, 2) * 10)
    saved = trained.state_dict()
    assert set(trained.state_names) <= set(saved)  # states are saved, as in sinabs
    fresh = LAYERS[kind]()
    assert set(fresh.state_dict()) == set(saved)
    fresh.load_state_dict(saved, strict=True)  # an empty state takes a saved one of any shape
    x = torch.rand(2, 4, 3, 2, 2) * 10
    torch.testing.assert_close(fresh(x), trained(x))


def test_loads_sinabs_checkpoint_with_states():
    layer = enn.LIF(10.0, tau_syn=5.0)
    sinabs_style = {"tau_mem": torch.tensor(20.0), "tau_syn": torch.tensor(4.0),
                    "spike_threshold": torch.tensor(1.5), "v_mem": torch.rand(8, 3),
                    "i_syn": torch.rand(8, 3)}
    layer.load_state_dict(sinabs_style, strict=True)
    assert layer.tau_mem.item() == 20.0 and layer.spike_threshold.item() == 1.5
    torch.testing.assert_close(layer.v_mem, sinabs_style["v_mem"])


def test_loads_a_checkpoint_without_states():
    """Checkpoints written before states were saved still load with strict=True."""
    layer = enn.LIF(10.0, tau_syn=5.0)
    layer.load_state_dict({"tau_mem": torch.tensor(20.0), "tau_syn": torch.tensor(4.0),
                           "spike_threshold": torch.tensor(1.5)}, strict=True)
    assert layer.v_mem.shape == (0,)


def test_reset_states_randomize_and_zero_grad():
    layer = enn.LIF(10.0, tau_syn=5.0)
    layer.reset_states(randomize=True)  # before the first call: nothing to reset
    assert not layer.is_state_initialised()
    layer.init_state_with_shape((2, 3), randomize=True)
    assert bool(((layer.v_mem >= 0) & (layer.v_mem < 1)).all()) and layer.v_mem.any()
    layer.reset_states(randomize=True, value_ranges={"v_mem": (-5.0, -3.0)})
    assert bool(((layer.v_mem >= -5) & (layer.v_mem <= -3)).all())
    assert bool(((layer.i_syn >= 0) & (layer.i_syn < 1)).all())
    layer(torch.rand(2, 4, 3, requires_grad=True))
    assert layer.v_mem.grad_fn is not None
    layer.zero_grad()
    assert layer.v_mem.grad_fn is None and layer.i_syn.grad_fn is None


def _train_steps(model: torch.nn.Module, steps: int, between=None):
    """SGD steps on fresh inputs, the states carried from step to step; between(model) runs
    after each optimizer step."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for step in range(steps):
        optimizer.zero_grad()
        x = torch.rand(2, 6, 4, generator=torch.Generator().manual_seed(step)) * 3
        model(x).sum().backward()
        optimizer.step()
        if between is not None:
            between(model)


def _two_lif_layers() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(4, 8), enn.LIF(10.0, tau_syn=5.0),
                               torch.nn.Linear(8, 3), enn.ALIF(10.0, 40.0))


def test_a_state_whose_graph_was_freed_is_named_before_backward_fails():
    """optimizer.zero_grad() leaves the states (and the graph behind them): the next call warns
    with the fix, before PyTorch's generic error in backward."""
    model = _two_lif_layers()
    with pytest.warns(UserWarning, match=r"LIF: its state v_mem still carries .*nn\."
                      r"reset_states\(model\), detach_states\(model\) .* zero_grad\(model\)"):
        with pytest.raises(RuntimeError, match="backward through the graph a second time"):
            _train_steps(model, 2)


@pytest.mark.parametrize("between", ["zero_grad", "detach_states", "reset_states"])
def test_no_warning_when_the_graph_is_cut(between):
    model = _two_lif_layers()
    cut = {"zero_grad": enn.zero_grad, "detach_states": enn.detach_states,
           "reset_states": enn.reset_states}[between]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _train_steps(model, 3, cut)
        with torch.no_grad():  # inference after training, the old graph still attached
            model(torch.rand(2, 6, 4))


def test_no_warning_when_the_graph_is_kept():
    """backward(retain_graph=True), then a second call: backward goes through both calls."""
    model = _two_lif_layers()
    x = torch.rand(2, 6, 4, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model(x[:, :3]).sum().backward(retain_graph=True)
        model(x[:, 3:]).sum().backward()
    assert x.grad[:, :3].abs().sum() > 0


def test_the_warning_comes_once_per_layer():
    layer = enn.LIF(10.0)
    x = torch.rand(2, 5, 3, requires_grad=True)
    layer(x).sum().backward()
    with pytest.warns(UserWarning, match="its state v_mem") as first:
        torch.nn.Sequential(layer)(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layer(x)
    assert len(first) == 1
    assert first[0].filename == __file__  # the line that called the model, not a forward


def _every_stateful_layer():
    """One layer of each stateful class on 3 features, built the same way on every call."""
    def recurrent(cls, *args, **kwargs):
        torch.manual_seed(0)
        return cls(*args, rec_connect=torch.nn.Linear(3, 3), **kwargs)

    def adlif(cls):
        torch.manual_seed(0)  # adLIF draws its parameters at random
        return cls(3)

    return {
        "LIF": lambda: enn.LIF(5.0, tau_syn=3.0),
        "IAF": lambda: enn.IAF(),
        "ExpLeak": lambda: enn.ExpLeak(5.0),
        "LIFSqueeze": lambda: enn.LIFSqueeze(num_timesteps=4, tau_mem=5.0),
        "IAFSqueeze": lambda: enn.IAFSqueeze(num_timesteps=4),
        "ExpLeakSqueeze": lambda: enn.ExpLeakSqueeze(num_timesteps=4, tau_mem=5.0),
        "ALIF": lambda: enn.ALIF(5.0, 20.0),
        "ALIFSqueeze": lambda: enn.ALIFSqueeze(num_timesteps=4, tau_mem=5.0, tau_adapt=20.0),
        "LIFRecurrent": lambda: recurrent(enn.LIFRecurrent, 5.0),
        "IAFRecurrent": lambda: recurrent(enn.IAFRecurrent),
        "ALIFRecurrent": lambda: recurrent(enn.ALIFRecurrent, 5.0, 20.0),
        "adLIF": lambda: adlif(enn.adLIF),
        "adLIFRecurrent": lambda: adlif(enn.adLIFRecurrent),
    }


EVERY_STATEFUL_LAYER = _every_stateful_layer()


@pytest.mark.parametrize("name", list(EVERY_STATEFUL_LAYER))
def test_an_empty_batch_then_a_batch_gives_what_a_fresh_layer_gives(name):
    """Batch 0 leaves no sample to resample the states from: the next batch starts afresh."""
    layer, fresh = EVERY_STATEFUL_LAYER[name](), EVERY_STATEFUL_LAYER[name]()
    squeeze = name.endswith("Squeeze")
    shape = (lambda b: (b * 4, 3)) if squeeze else (lambda b: (b, 4, 3))
    assert layer(torch.zeros(shape(0))).shape == shape(0)
    x = torch.rand(shape(2)) * 10
    expected = fresh(x)
    assert expected.abs().sum() > 0
    torch.testing.assert_close(layer(x), expected)
    for state in layer.state_names:
        torch.testing.assert_close(getattr(layer, state), getattr(fresh, state))


def _stale_graph_layers():
    """Every stateful class, and the paths whose last state comes out of a node that saved no
    tensor (a reshape, an add) or whose backward the loss never ran (ExpLeak's clip)."""
    def looped(cls, *args):
        torch.manual_seed(0)  # a nonlinear rec_connect: the per-step loop
        return cls(*args, rec_connect=torch.nn.Sequential(torch.nn.Linear(3, 3),
                                                          torch.nn.Tanh()))

    def reference(cls, *args, **kwargs):
        torch.manual_seed(0)
        return cls(*args, backend="reference", **kwargs)

    return EVERY_STATEFUL_LAYER | {
        "ExpLeak min_v_mem": lambda: enn.ExpLeak(5.0, min_v_mem=-0.5),
        "LIF min_v_mem": lambda: enn.LIF(5.0, tau_syn=3.0, min_v_mem=-0.5),
        "LIFRecurrent loop": lambda: looped(enn.LIFRecurrent, 5.0),
        "ALIFRecurrent loop": lambda: looped(enn.ALIFRecurrent, 5.0, 20.0),
        "LIF reference": lambda: reference(enn.LIF, 5.0, tau_syn=3.0),
        "IAF reference": lambda: reference(enn.IAF),
        "ExpLeak reference": lambda: reference(enn.ExpLeak, 5.0),
        "ALIF reference": lambda: reference(enn.ALIF, 5.0, 20.0),
        "adLIF reference": lambda: reference(enn.adLIF, 3),
        "LIFRecurrent reference": lambda: reference(enn.LIFRecurrent, 5.0,
                                                    torch.nn.Linear(3, 3)),
        "ALIFRecurrent reference": lambda: reference(enn.ALIFRecurrent, 5.0, 20.0,
                                                     torch.nn.Linear(3, 3)),
        "adLIFRecurrent reference": lambda: reference(enn.adLIFRecurrent, 3),
    }


STALE_GRAPH_LAYERS = _stale_graph_layers()


def _input(name: str) -> torch.Tensor:
    shape = (2 * 4, 3) if name.endswith("Squeeze") else (2, 4, 3)
    return (torch.rand(shape) * 10).requires_grad_()


@pytest.mark.parametrize("name", list(STALE_GRAPH_LAYERS))
def test_every_layer_names_a_freed_graph_before_backward_fails(name):
    """The warning of docs/sinabs.md for every layer and path: the walk goes past the nodes
    that saved nothing (the fused recurrent functions' reshape, the reference loop's add) to one
    whose saved tensors the first backward pass released."""
    layer = STALE_GRAPH_LAYERS[name]()
    layer(_input(name)).sum().backward()
    with pytest.warns(UserWarning, match=f"{type(layer).__name__}: its state .* still carries"):
        out = layer(_input(name))
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        out.sum().backward()


@pytest.mark.parametrize("name", list(STALE_GRAPH_LAYERS))
def test_every_layer_is_quiet_when_the_graph_is_kept(name):
    """retain_graph=True keeps what the nodes saved: no warning, and backward goes through both
    calls."""
    layer = STALE_GRAPH_LAYERS[name]()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layer(_input(name)).sum().backward(retain_graph=True)
        layer(_input(name)).sum().backward()


@pytest.mark.parametrize("name", [n for n in STALE_GRAPH_LAYERS if not n.endswith("Squeeze")])
def test_an_empty_sequence_stays_on_the_graph(name):
    """T = 0: the output is on the autograd graph (a loss on it backpropagates zeros), the
    recordings are empty traces and the states stay as they were; the recurrent layers too."""
    layer = STALE_GRAPH_LAYERS[name]()
    layer.record_states = True
    layer(torch.rand(2, 4, 3) * 10)
    before = [state.clone() for state in layer._states()]
    x = torch.rand(2, 0, 3, requires_grad=True)
    out = layer(x)
    assert out.shape == x.shape and out.dtype == x.dtype and out.requires_grad
    out.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
    assert layer.recordings and all(trace.shape == x.shape
                                    for trace in layer.recordings.values())
    for state, old in zip(layer._states(), before, strict=True):
        torch.testing.assert_close(state, old)
