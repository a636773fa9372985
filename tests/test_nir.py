"""to_nir / from_nir: round trips through a .nir file give the same spikes and states; the
parameters follow the zero-order-hold convention; what NIR cannot express warns or raises."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from exodus_lightning import nn as enn
from exodus_lightning.models import ConvSNN, FeedForwardSNN, TimeFolded

nir = pytest.importorskip("nir")
from exodus_lightning.nir import (  # noqa: E402  (needs nir)
    NIRExportError,
    NIRImportError,
    NIRImportWarning,
    NIRLossWarning,
    NIRNetwork,
    from_nir,
    to_nir,
)
from exodus_lightning.nir.export import HAS_V_RESET  # noqa: E402

# The reset readers following the installed nir share: NIR >= 1.0.5 resets to v_reset (0).
# (nir <= 1.0.4 subtracts, but newer readers read its files as v_reset = 0: both warn there.)
EXACT_RESET = "zero" if HAS_V_RESET else "subtract"


def lost_settings(record) -> list[str]:
    """The settings the NIRLossWarnings in record name, one "layer: setting" each."""
    return [line.strip() for warning in record if warning.category is NIRLossWarning
            for line in str(warning.message).splitlines()[1:]]


def assert_nothing_lost(record) -> None:
    """No warning, but the reset with nir <= 1.0.4 (lossy for some reader either way)."""
    lost = lost_settings(record)
    assert all("reset=" in line for line in lost) and (not lost or not HAS_V_RESET), lost
    assert len(record) == len([w for w in record if w.category is NIRLossWarning])


def spikes(*shape: int, p: float = 0.3, scale: float = 1.5) -> torch.Tensor:
    """Random spike input (batch, time, *features): 0 or `scale`."""
    return (torch.rand(shape) < p).float() * scale


def round_trip(model: nn.Module, x: torch.Tensor, tmp_path, dt: float = 1.0) -> NIRNetwork:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NIRLossWarning)
        graph = to_nir(model, x, dt=dt)
    path = tmp_path / "model.nir"
    nir.write(path, graph)
    return from_nir(path)


def states(model: nn.Module) -> list[torch.Tensor]:
    return [getattr(layer, name) for layer in model.modules()
            if isinstance(layer, enn.StatefulLayer) for name in layer.state_names]


def assert_same_run(model: nn.Module, loaded: nn.Module, x: torch.Tensor) -> None:
    """Two consecutive calls (the states carry over) give identical outputs and states."""
    enn.reset_states(model)
    enn.reset_states(loaded)
    with torch.no_grad():
        for chunk in (x, x.flip(1)):
            expected, got = model(chunk), loaded(chunk)
            assert expected.abs().sum() > 0  # the neurons fire: the test can see a difference
            torch.testing.assert_close(got, expected, rtol=0, atol=0)
            ours, theirs = states(model), states(loaded)
            assert len(ours) == len(theirs) > 0
            for a, b in zip(theirs, ours, strict=True):
                torch.testing.assert_close(a, b, rtol=0, atol=0)


def chain(layer: nn.Module, features: int = 6) -> nn.Sequential:
    """A linear layer feeding `layer`, so the spiking layer sees varied currents, large
    enough that every neuron kind fires."""
    linear = nn.Linear(4, features)
    with torch.no_grad():
        linear.weight.mul_(6)
    return nn.Sequential(linear, layer)


LAYERS = {
    "lif": lambda: enn.LIF(tau_mem=8.0),
    "lif_raw_single": lambda: enn.LIF(tau_mem=5.0, norm_input=False, max_spikes_per_step=1),
    "lif_per_neuron": lambda: enn.LIF(tau_mem=torch.linspace(3, 30, 6), norm_input=False,
                                      spike_threshold=torch.linspace(0.5, 1.5, 6)),
    "lif_syn": lambda: enn.LIF(tau_mem=10.0, tau_syn=4.0, norm_input=False),
    "lif_syn_late": lambda: enn.LIF(tau_mem=10.0, tau_syn=torch.linspace(2, 9, 6),
                                    decay_early=False),
    "lif_train_alphas": lambda: enn.LIF(tau_mem=7.0, tau_syn=3.0, train_alphas=True,
                                        norm_input=False),
    "lif_zero_reset": lambda: enn.LIF(tau_mem=6.0, norm_input=False, reset="zero"),
    "lif_subtract_value_bound": lambda: enn.LIF(tau_mem=6.0, norm_input=False,
                                                subtract_value=0.5, min_v_mem=-0.3,
                                                max_spikes_per_step=2),
    "iaf": lambda: enn.IAF(spike_threshold=0.8),
    "iaf_single_bound": lambda: enn.IAF(max_spikes_per_step=1, min_v_mem=-1.0),
    "exp_leak": lambda: enn.ExpLeak(tau_mem=6.0),
    "exp_leak_norm": lambda: enn.ExpLeak(tau_mem=torch.linspace(2, 12, 6), norm_input=True),
    "exp_leak_early": lambda: enn.ExpLeak(tau_mem=6.0, decay_early=True, train_alphas=True),
    "exp_leak_bound": lambda: enn.ExpLeak(tau_mem=6.0, min_v_mem=-0.2),
    "integrator": lambda: enn.ExpLeak(tau_mem=math.inf),
    "lif_recurrent": lambda: enn.LIFRecurrent(8.0, nn.Linear(6, 6, bias=False),
                                              tau_syn=3.0, norm_input=False),
    "iaf_recurrent": lambda: enn.IAFRecurrent(nn.Linear(6, 6), max_spikes_per_step=1),
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_every_spiking_layer_round_trips_exactly(name, tmp_path):
    model = chain(LAYERS[name]())
    x = spikes(3, 20, 4)
    assert_same_run(model, round_trip(model, x, tmp_path), x)


@pytest.mark.parametrize("dt", [1.0, 1e-3, 0.37])
def test_round_trip_is_exact_for_any_step_length(dt, tmp_path):
    model = chain(enn.LIF(tau_mem=torch.linspace(2, 40, 6), tau_syn=3.3, norm_input=False,
                          max_spikes_per_step=1))
    x = spikes(2, 15, 4)
    graph = to_nir(model, x, dt=dt)
    np.testing.assert_allclose(graph.nodes["1"].tau_mem, np.linspace(2, 40, 6) * dt, rtol=1e-6)
    nir.write(tmp_path / "m.nir", graph)
    assert_same_run(model, from_nir(tmp_path / "m.nir"), x)


STATELESS = {
    "linear_no_bias": (lambda: nn.Sequential(nn.Flatten(2), nn.Linear(12, 5, bias=False)),
                       (3, 4)),
    "conv1d": (lambda: nn.Sequential(TimeFolded(nn.Conv1d(3, 4, 3, stride=2, padding=1,
                                                          dilation=1)),
                                     nn.Flatten(2)), (3, 9)),
    "conv2d": (lambda: nn.Sequential(TimeFolded(nn.Conv2d(2, 4, 3, stride=(1, 2), padding=2,
                                                          dilation=2, groups=2, bias=False)),
                                     TimeFolded(nn.AvgPool2d(2)), nn.Flatten(2, 3)),
               (2, 8, 9)),
    "sum_pool": (lambda: nn.Sequential(TimeFolded(nn.LPPool2d(1, 2, stride=2)),
                                       nn.Flatten(start_dim=2)), (2, 6, 6)),
}


@pytest.mark.parametrize("name", list(STATELESS))
def test_stateless_layers_round_trip_with_their_shapes(name, tmp_path):
    build, features = STATELESS[name]
    model = build()
    x = torch.randn(2, 3, *features)
    graph = to_nir(model, x)
    # Every node carries its input and output shape (what the layer saw on sample_input).
    for node_name, node in graph.nodes.items():
        assert node.input_type is not None and node.output_type is not None, node_name
        assert all(v is not None for v in (*node.input_type.values(),
                                           *node.output_type.values())), node_name
    nir.write(tmp_path / "m.nir", graph)
    loaded = from_nir(tmp_path / "m.nir")
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kwargs", [
    {},
    {"neuron": "iaf", "readout": "lif", "max_spikes_per_step": 1},
    {"tau_syn": 5.0, "recurrent": True, "norm_input": True, "readout": "linear"},
], ids=["default", "iaf_lif_readout", "recurrent_syn"])
def test_feed_forward_snn_round_trips(kwargs, tmp_path):
    model = FeedForwardSNN((2, 5), 3, hidden_sizes=(12, 8), dropout=0.2, **kwargs).eval()
    with torch.no_grad():  # larger weights, so that the neurons fire
        for p in model.parameters():
            p.mul_(3)
    x = spikes(2, 25, 2, 5)
    loaded = round_trip(model, x, tmp_path)
    assert_same_run(model, loaded, x)
    assert sum(1 for _ in loaded.parameters()) > 0


def test_conv_snn_round_trips(tmp_path):
    model = ConvSNN((2, 8, 8), 3, channels=(4, 6), tau_syn=3.0, weight_norm=True).eval()
    x = spikes(2, 6, 2, 8, 8, scale=3.0)
    assert_same_run(model, round_trip(model, x, tmp_path), x)


# --- the convention, against written-out formulas ---------------------------------------------

def test_parameters_follow_the_zero_order_hold_convention():
    single = {"max_spikes_per_step": 1, "reset": EXACT_RESET}
    model = nn.Sequential(
        nn.Linear(4, 3),
        enn.LIF(tau_mem=10.0, tau_syn=4.0, norm_input=False, **single),
        nn.Linear(3, 3),
        enn.LIF(tau_mem=10.0, **single),
        nn.Linear(3, 2),
        enn.IAF(**single),
        nn.Linear(2, 2),
        enn.ExpLeak(tau_mem=5.0, decay_early=True))
    dt = 0.5
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        graph = to_nir(model, torch.zeros(1, 2, 4), dt=dt)
    assert_nothing_lost(record)  # single spike, nir's reset, built-in surrogate
    alpha, beta = math.exp(-1 / 10), math.exp(-1 / 4)
    cuba, lif, iaf, leak = (graph.nodes[k] for k in ("1", "3", "5", "7"))
    assert isinstance(cuba, nir.CubaLIF) and isinstance(lif, nir.LIF)
    assert isinstance(iaf, nir.IF) and isinstance(leak, nir.LI)
    np.testing.assert_allclose(cuba.tau_mem, [10 * dt] * 3)
    np.testing.assert_allclose(cuba.tau_syn, [4 * dt] * 3)
    np.testing.assert_allclose(cuba.r, [1 / (1 - alpha)] * 3)          # norm_input=False
    np.testing.assert_allclose(cuba.w_in, [beta / (1 - beta)] * 3)     # decay_early
    np.testing.assert_allclose(cuba.v_leak, 0)
    np.testing.assert_allclose(lif.r, 1)                               # norm_input=True
    np.testing.assert_allclose(iaf.r, [1 / dt] * 2)
    np.testing.assert_allclose(leak.r, [math.exp(-1 / 5) / (1 - math.exp(-1 / 5))] * 2)
    assert isinstance(graph.nodes["0"], nir.Affine)


def nir_reference(x: np.ndarray, dt: float, w_in, tau_syn, r, tau_mem, threshold, v_reset):
    """A NIR CubaLIF stepped by the convention, written out: held input, exact decay,
    one spike at most, reset to v_reset (nir >= 1.0.5) or, without one (nir <= 1.0.4), by
    subtracting the threshold."""
    alpha, beta = np.exp(-dt / tau_mem), np.exp(-dt / tau_syn)
    i = v = np.zeros(x.shape[:1] + x.shape[2:])
    out = []
    for t in range(x.shape[1]):
        i = beta * i + (1 - beta) * w_in * x[:, t]
        v = alpha * v + (1 - alpha) * r * i
        s = (v >= threshold).astype(float)
        v = v - threshold * s if v_reset is None else np.where(s > 0, v_reset, v)
        out.append(s)
    return np.stack(out, 1)


def test_a_foreign_cuba_lif_runs_as_nir_says():
    """A graph that is not ours (no metadata, gains not in our table): single spike, the reset
    of the installed nir's node, and the input scaled by the gains the node holds."""
    n, dt = 5, 1e-3
    tau_mem, tau_syn = np.linspace(5e-3, 2e-2, n), np.full(n, 4e-3)
    r, w_in = np.linspace(0.5, 3.0, n), np.full(n, 2.5)
    threshold = np.linspace(0.2, 0.6, n)
    node = nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, r=r, v_leak=np.zeros(n),
                       v_threshold=threshold, w_in=w_in)
    graph = nir.NIRGraph.from_list(node)
    loaded = from_nir(graph, dt=dt, backend="reference").double()
    x = spikes(3, 40, n, p=0.5, scale=2.0).double()
    with torch.no_grad():
        got = loaded(x).numpy()
    expected = nir_reference(x.numpy(), dt, w_in, tau_syn, r, tau_mem, threshold,
                             getattr(node, "v_reset", None))
    assert expected.sum() > 10
    np.testing.assert_array_equal(got, expected)


def cuba_lif_ode(x: np.ndarray, tau_syn: float, tau_mem: float) -> np.ndarray:
    """NIR's CubaLIF ODE (r = w_in = 1, no spikes) solved exactly with x held over each step:
    i(t) = x + (i_0 − x)·e^{−t/τ_syn}, and v(dt) = α·v_0 + (1 − α)·x + κ·(i_0 − x) with
    κ = τ_syn·(β − α)/(τ_syn − τ_mem)."""
    alpha, beta = math.exp(-1 / tau_mem), math.exp(-1 / tau_syn)
    kappa = tau_syn * (beta - alpha) / (tau_syn - tau_mem)
    i = v = 0.0
    out = []
    for x_t in x:
        v = alpha * v + (1 - alpha) * x_t + kappa * (i - x_t)
        i = beta * i + (1 - beta) * x_t
        out.append(v)
    return np.array(out)


@pytest.mark.parametrize(("tau_syn", "tau_mem", "largest", "first"), [(4.0, 10.0, 0.026, 1.89),
                                                                     (10.0, 20.0, 0.012, 1.95)])
def test_cuba_lif_holds_the_new_current_over_the_step_as_docs_say(tau_syn, tau_mem, largest,
                                                                  first):
    """docs/nir.md: CubaLIF's membrane is driven by the step's new synaptic current i_t held
    over the step, not by the current rising within it as in NIR's ODE: under a held input
    the membrane leads the ODE by up to `largest` of the steady state, which both reach (and
    is `first` times the ODE's after the first step)."""
    node = nir.CubaLIF(tau_syn=np.full(1, tau_syn), tau_mem=np.full(1, tau_mem), r=np.ones(1),
                       v_leak=np.zeros(1), v_threshold=np.full(1, 1e9), w_in=np.ones(1))
    network = from_nir(nir.NIRGraph.from_list(node), dtype=torch.float64, backend="reference")
    (layer,) = [m for m in network.modules() if isinstance(m, enn.LIF)]
    layer.record_states = True
    steps = 400
    with torch.no_grad():
        network(torch.ones(1, steps, 1, dtype=torch.float64))
    ours = layer.recordings["v_mem"][0, :, 0].numpy()  # NIR units: the Scale holds the gains
    ode = cuba_lif_ode(np.ones(steps), tau_syn, tau_mem)
    difference = ours - ode
    assert (difference >= -1e-12).all()  # leads, never lags
    assert abs(difference).max() == pytest.approx(largest, abs=5e-4)
    assert ours[0] / ode[0] == pytest.approx(first, abs=0.005)
    assert abs(difference[-1]) < 1e-6 and ode[-1] == pytest.approx(1.0, abs=1e-6)


def test_a_foreign_if_and_li_run_as_nir_says():
    graph = nir.NIRGraph.from_list(
        nir.IF(r=np.full(3, 2.0), v_threshold=np.full(3, 1.0)),
        nir.LI(tau=np.full(3, 4.0), r=np.full(3, 0.5), v_leak=np.zeros(3)))
    loaded = from_nir(graph)
    x = spikes(2, 12, 3, p=0.4, scale=0.7)
    v, y, out = torch.zeros(2, 3), torch.zeros(2, 3), []
    a = math.exp(-1 / 4)
    for t in range(12):
        v = v + 2.0 * x[:, t]
        s = (v >= 1.0).float()
        v = v * (1 - s) if HAS_V_RESET else v - s  # reset to v_reset = 0, or subtract
        y = a * y + (1 - a) * 0.5 * s
        out.append(y)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), torch.stack(out, 1), rtol=1e-6, atol=1e-6)


# --- what NIR cannot express ------------------------------------------------------------------

def test_settings_nir_cannot_express_warn_and_name_what_is_lost():
    model = nn.Sequential(
        enn.LIF(tau_mem=5.0, reset="zero", min_v_mem=-1.0),
        enn.ExpLeak(tau_mem=4.0, min_v_mem=-0.5),
        enn.IAF(max_spikes_per_step=1, surrogate_grad_fn=lambda v, t: torch.ones_like(v)))
    with pytest.warns(NIRLossWarning) as record:
        to_nir(model, torch.zeros(1, 2, 3))
    assert len(record) == 1
    text = str(record[0].message)
    for expected in ("0: max_spikes_per_step=None", "0: min_v_mem", "1: min_v_mem",
                     "2: surrogate_grad_fn", "2: reset='subtract' (readers following NIR >= "
                     "1.0.5, such as Norse and snnTorch, reset the membrane to v_reset = 0"):
        assert expected in text
    # reset="zero" is NIR's v_reset = 0 from nir 1.0.5 on; nir 1.0.4's neurons subtract.
    assert ("0: reset='zero'" in text) == (not HAS_V_RESET)


@pytest.mark.parametrize(("model", "match"), [
    (lambda: nn.Sequential(enn.ALIF(tau_mem=5.0, tau_adapt=20.0)), "ALIF has no NIR node"),
    (lambda: FeedForwardSNN((4,), 2, neuron="alif"), "ALIF has no NIR node"),
    (lambda: nn.Sequential(enn.IAF(tau_syn=3.0)), "IAF with tau_syn"),
    (lambda: nn.Sequential(enn.DelayedLinear(4, 3, 5)), "DelayedLinear"),
    (lambda: nn.Sequential(nn.Linear(4, 4), nn.ReLU()), "ReLU has no NIR mapping"),
    (lambda: nn.Sequential(enn.LIFSqueeze(tau_mem=4.0, batch_size=1)), "non-Squeeze"),
    (lambda: nn.Sequential(nn.Flatten()), "flattens batch or time"),
], ids=["alif", "alif_model", "iaf_syn", "delays", "relu", "squeeze", "flatten_time"])
def test_layers_without_a_nir_node_raise(model, match):
    with pytest.raises(NIRExportError, match=match):
        to_nir(model(), torch.zeros(1, 3, 4))


class HoldsSequential(nn.Module):
    """README's "Add your own network" shape: a module holding an nn.Sequential."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Flatten(start_dim=2), nn.Linear(8, 6),
                                    enn.LIF(tau_mem=5.0, spike_threshold=0.3, norm_input=False),
                                    nn.Linear(6, 3), enn.ExpLeak(tau_mem=4.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class Attributes(nn.Module):
    """Layers as attributes, a plain forward calling them in turn (a Dropout only in
    training: the eval-mode graph has none)."""

    def __init__(self) -> None:
        super().__init__()
        self.flatten = nn.Flatten(start_dim=2)
        self.fc1 = nn.Linear(8, 6)
        self.sp1 = enn.LIF(tau_mem=5.0, spike_threshold=0.3, norm_input=False)
        self.drop = nn.Dropout(0.2)
        self.fc2 = nn.Linear(6, 3)
        self.readout = enn.ExpLeak(tau_mem=4.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.sp1(self.fc1(self.flatten(x)))
        if self.training:
            x = self.drop(x)
        return self.readout(self.fc2(x))


class Looped(nn.Module):
    """Layers in an nn.ModuleList, applied in a loop."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([nn.Flatten(start_dim=2), nn.Linear(8, 6),
                                     enn.IAF(spike_threshold=0.3), nn.Linear(6, 3)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


@pytest.mark.parametrize("network", [HoldsSequential, Attributes, Looped,
                                     lambda: nn.Sequential(HoldsSequential())],
                         ids=["holds_sequential", "attributes", "module_list", "nested"])
def test_a_module_that_chains_its_layers_exports_as_that_chain(network, tmp_path):
    model = network()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(3)
    x = spikes(3, 20, 2, 4)
    loaded = round_trip(model, x, tmp_path)
    kinds = [type(m) for m in model.modules() if isinstance(m, (nn.Linear, enn.StatefulLayer))]
    assert [type(m) for m in loaded.modules()
            if isinstance(m, (nn.Linear, enn.StatefulLayer))] == kinds
    assert_same_run(model.eval(), loaded, x)  # the graph is the network in eval mode


class Residual(Attributes):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.sp1(self.fc1(self.flatten(x)))
        return self.readout(self.fc2(x + self.drop(x)))


class Reshaped(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 3)
        self.lif = enn.LIF(tau_mem=5.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lif(self.fc(x.reshape(*x.shape[:2], -1)))


class Twice(Reshaped):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lif(self.fc(self.lif(x.flatten(2))[..., :8]))


class ChangedInPlace(Attributes):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        current = self.fc1(self.flatten(x))
        current.mul_(2)
        return self.readout(self.fc2(self.sp1(current)))


class ScaledOutput(HoldsSequential):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x) * 2


class Unused(Attributes):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.fc2(self.sp1(self.fc1(self.flatten(x)))[..., :6]))


class Keyword(Reshaped):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lif(self.fc(input=x.flatten(2)))


def shared_lif() -> nn.Module:
    lif = enn.LIF(tau_mem=5.0)
    return nn.Sequential(nn.Flatten(start_dim=2), nn.Linear(8, 4), lif, nn.Linear(4, 4), lif)


def shared_between_containers() -> nn.Module:
    model = HoldsSequential()
    model.again = model.layers[2]
    return model


@pytest.mark.parametrize(("network", "match"), [
    (Residual, r"Residual is not a chain .*'fc2' \(Linear\) does not take the output of "
               r"'drop' \(Dropout\)"),
    (Reshaped, r"Reshaped is not a chain .*'fc' \(Linear\) does not take its input"),
    (Twice, r"Twice is not a chain .*'lif' \(LIF\) runs 2 times"),
    (ChangedInPlace, r"ChangedInPlace is not a chain .*'sp1' \(LIF\) does not take the "
                     r"output of 'fc1'"),
    (ScaledOutput, r"ScaledOutput is not a chain .*does not return the output of 'layers'"),
    (Unused, r"Unused is not a chain .*does not take the output of 'sp1'"),
    (shared_lif, r"Sequential is not a chain .*'2' \(LIF\) runs 2 times"),
    (shared_between_containers, r"'again' \(LIF\) is also 'layers.2' \(LIF\)"),
    (Keyword, r"'fc' \(Linear\) is called with no positional argument, not one tensor"),
], ids=["residual", "reshape", "called_twice", "in_place", "scaled_output", "slice",
        "sequential_repeats", "shared", "keyword_argument"])
def test_a_forward_that_is_not_a_chain_of_its_layers_raises(network, match):
    with pytest.raises(NIRExportError, match=match) as error:
        to_nir(network(), torch.zeros(1, 2, 2, 4))
    if "is not a chain" in match:
        assert "make the network an nn.Sequential" in str(error.value)


def test_batch_norm_is_folded_into_the_conv_before_it(tmp_path):
    model = ConvSNN((2, 8, 8), 3, channels=(4, 6), batch_norm=True, weight_norm=True,
                    max_spikes_per_step=1, readout="linear")
    x = spikes(4, 6, 2, 8, 8, scale=3.0)
    with torch.no_grad():
        for _ in range(3):  # running statistics away from (0, 1)
            enn.reset_states(model)
            model(x * 2 + 0.5)
    model.eval()
    enn.reset_states(model)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        graph = to_nir(model, x)
    # Nothing lost but ConvSNN's reset by subtraction (with nir >= 1.0.5).
    assert all("reset='subtract'" in line for line in lost_settings(record))
    assert len(record) == len([w for w in record if w.category is NIRLossWarning])
    assert not any("BatchNorm" in type(node).__name__ for node in graph.nodes.values())
    nir.write(tmp_path / "m.nir", graph)
    loaded = from_nir(tmp_path / "m.nir")
    enn.reset_states(model)
    with torch.no_grad():
        expected, got = model(x), loaded(x)
    # The folded weights round differently; the spikes (readout inputs) agree up to that.
    assert expected.abs().sum() > 0
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_a_batch_norm_after_no_conv_or_linear_raises():
    with pytest.raises(NIRExportError, match="batch norm"):
        to_nir(nn.Sequential(TimeFolded(nn.BatchNorm1d(4))), torch.zeros(2, 2, 4))


def test_export_leaves_the_model_untouched():
    model = chain(enn.LIF(tau_mem=5.0)).train()
    x = spikes(2, 4, 4)
    model(x)
    before = [s.clone() for s in states(model)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NIRLossWarning)
        to_nir(model, torch.zeros(5, 3, 4))
    assert model.training
    for a, b in zip(states(model), before, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_bad_arguments_raise_clear_errors(tmp_path):
    model = chain(enn.LIF(tau_mem=5.0))
    with pytest.raises(ValueError, match="dt must be a positive number"):
        to_nir(model, torch.zeros(1, 2, 4), dt=0.0)
    with pytest.raises(ValueError, match=r"sample_input must be a tensor \(batch, time"):
        to_nir(model, torch.zeros(2, 4))
    with pytest.raises(TypeError, match="graph_or_path must be a nir.NIRGraph"):
        from_nir(model)


def test_graphs_outside_what_we_read_raise():
    lif = nir.LIF(tau=np.ones(2), r=np.ones(2), v_leak=np.ones(2), v_threshold=np.ones(2))
    with pytest.raises(NIRImportError, match="v_leak must be 0"):
        from_nir(nir.NIRGraph.from_list(lif))
    branching = nir.NIRGraph(
        nodes={"input": nir.Input(input_type={"input": np.array([2])}),
               "a": nir.Scale(scale=np.ones(2)), "b": nir.Scale(scale=np.ones(2)),
               "output": nir.Output(output_type={"output": np.array([2])})},
        edges=[("input", "a"), ("input", "b"), ("a", "output"), ("b", "output")])
    with pytest.raises(NIRImportError, match="reads chains"):
        from_nir(branching)
    with pytest.raises(NIRImportError, match="nir.Threshold has no layer"):
        from_nir(nir.NIRGraph.from_list(nir.Threshold(threshold=np.ones(2))))


def test_a_recurrent_layer_written_as_a_nested_subgraph_reads_the_same(tmp_path):
    """snnTorch writes a recurrent layer as a subgraph {input, neuron, recurrent weights,
    output}; spliced in, it is the same cycle as ours."""
    model = chain(enn.LIFRecurrent(6.0, nn.Linear(6, 6), norm_input=False,
                                   max_spikes_per_step=1))
    x = spikes(2, 20, 4)
    flat = to_nir(model, x)
    inner = nir.NIRGraph(
        nodes={"input": nir.Input(input_type={"input": np.array([6])}),
               "lif": flat.nodes["1"], "w_rec": flat.nodes["1.rec_connect"],
               "output": nir.Output(output_type={"output": np.array([6])})},
        edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")])
    nested = nir.NIRGraph(
        nodes={"input": flat.nodes["input"], "fc": flat.nodes["0"], "rlif": inner,
               "output": flat.nodes["output"]},
        edges=[("input", "fc"), ("fc", "rlif"), ("rlif", "output")])
    nir.write(tmp_path / "nested.nir", nested)
    loaded = from_nir(tmp_path / "nested.nir")
    assert isinstance(loaded.layers[1], enn.LIFRecurrent)
    assert_same_run(model, loaded, x)


def test_training_settings_come_back_without_a_warning(tmp_path):
    """Surrogate, gradient mode and trainable threshold are kept (they do not change what a
    deployed network computes, so no warning), and the read network trains the same."""
    model = chain(enn.LIF(tau_mem=5.0, norm_input=False, max_spikes_per_step=1,
                          reset=EXACT_RESET, surrogate_grad_fn=enn.surrogate.ArcTan(alpha=3.0),
                          gradient="slayer", train_threshold=True))
    x = spikes(2, 12, 4)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        graph = to_nir(model, x)
    assert_nothing_lost(record)
    nir.write(tmp_path / "m.nir", graph)
    loaded = from_nir(tmp_path / "m.nir")
    ours, theirs = model[1], loaded.layers[1]
    assert theirs.surrogate_grad_fn == enn.surrogate.ArcTan(alpha=3.0)
    assert theirs.gradient == "slayer" and theirs.spike_threshold.requires_grad
    grads = []
    for network in (model, loaded):
        enn.reset_states(network)
        x_grad = x.clone().requires_grad_()
        network(x_grad).sum().backward()
        grads.append(x_grad.grad)
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[1], grads[0], rtol=0, atol=0)
    torch.testing.assert_close(theirs.spike_threshold.grad, ours.spike_threshold.grad,
                               rtol=0, atol=0)


# --- nir versions, foreign files and step lengths ---------------------------------------------

@pytest.mark.skipif(not HAS_V_RESET, reason="nir <= 1.0.4 has no v_reset")
def test_reset_zero_is_nir_v_reset_zero_and_other_v_resets_raise(tmp_path):
    model = chain(enn.LIF(tau_mem=5.0, norm_input=False, max_spikes_per_step=1, reset="zero"))
    x = spikes(2, 15, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # exact for every reader following NIR >= 1.0.5
        graph = to_nir(model, x)
    np.testing.assert_array_equal(graph.nodes["1"].v_reset, np.zeros(6))
    # Without our metadata, v_reset = 0 still reads as reset="zero" (NIR's own meaning).
    graph.nodes["1"].metadata = {}
    nir.write(tmp_path / "m.nir", graph)
    loaded = from_nir(tmp_path / "m.nir")
    assert loaded.layers[1].reset == "zero"
    assert_same_run(model, loaded, x)
    lif = nir.LIF(tau=np.ones(2), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2),
                  v_reset=np.array([0.0, -0.5]))
    with pytest.raises(NIRImportError, match="node 'lif': v_reset must be 0"):
        from_nir(nir.NIRGraph.from_list(lif))


def test_a_file_nir_cannot_read_raises_saying_what_is_wrong(tmp_path):
    import shutil

    import h5py

    good = tmp_path / "good.nir"
    nir.write(good, to_nir(chain(enn.IAF(max_spikes_per_step=1, reset=EXACT_RESET)),
                           spikes(1, 2, 4)))

    def edited(name: str, edit) -> str:
        path = tmp_path / name
        shutil.copy(good, path)
        with h5py.File(path, "r+") as file:
            edit(file)
        return path

    def replace(file, key: str, value) -> None:
        del file[key]
        file[key] = value

    def future(file) -> None:  # a node type from a nir to come
        replace(file, "version", "9.9.0")
        replace(file, "node/nodes/1/type", "FutureNeuron")

    with pytest.raises(NIRImportError, match=r"written by nir 9\.9\.0, newer than the installed "
                                             r"nir .*pip install -U 'nir>=9\.9\.0'"):
        from_nir(edited("future.nir", future))
    # Written by the installed nir, but broken: no upgrade would help; the node is named.
    bad_threshold = edited("threshold.nir",
                           lambda file: replace(file, "node/nodes/1/v_threshold", np.ones(2)))
    with pytest.raises(NIRImportError, match=rf"written by nir {nir.version}\) is malformed: "
                                             rf"nir {nir.version} cannot read its node '1' "
                                             rf"\(IF\): AssertionError") as error:
        from_nir(bad_threshold)
    assert "pip install" not in str(error.value)
    unknown = edited("unknown.nir", lambda file: replace(file, "node/nodes/1/type", "Neuron"))
    with pytest.raises(NIRImportError, match=r"node '1' \(Neuron\): nir .* has no node type "
                                             r"'Neuron'"):
        from_nir(unknown)
    with h5py.File(tmp_path / "other.h5", "w") as file:
        file["data"] = np.ones(3)
    with pytest.raises(NIRImportError, match=r"other.h5' is not a NIR file: an HDF5 file "
                                             r"without NIR's 'node' group"):
        from_nir(tmp_path / "other.h5")
    (tmp_path / "junk.nir").write_text("not HDF5")
    with pytest.raises(NIRImportError, match=r"junk.nir' is not a NIR file \(not HDF5"):
        from_nir(tmp_path / "junk.nir")
    with pytest.raises(FileNotFoundError, match="no NIR file"):
        from_nir(tmp_path / "missing.nir")


def test_a_foreign_graph_in_seconds_without_dt_warns_or_raises():
    def graph(tau: float) -> nir.NIRGraph:
        return nir.NIRGraph.from_list(nir.LIF(tau=np.full(3, tau), r=np.ones(3),
                                              v_leak=np.zeros(3), v_threshold=np.ones(3)))

    with pytest.warns(NIRImportWarning, match=r"node 'lif': τ = 0.02 is below one step.*dt="):
        from_nir(graph(0.02))  # Norse's 20 ms, read as 0.02 steps
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert from_nir(graph(0.02), dt=1e-3).layers[0].tau_mem.item() == pytest.approx(20)
        from_nir(graph(0.5), dt=1.0)  # a dt passed is the user's choice
    with pytest.raises(NIRImportError, match=r"exp\(−dt/τ\) of 0 in float32.*dt=<seconds"):
        from_nir(graph(1e-3))
    with warnings.catch_warnings():  # with dt given, a neuron without memory (α = 0)
        warnings.simplefilter("error")
        network = from_nir(graph(1e-3), dt=1.0)
        x = torch.rand(2, 5, 3) * 3
        torch.testing.assert_close(network(x), (x > 1.0).float())  # v_t = x_t, no memory
    # Our own graph stores its dt: no warning.
    model = chain(enn.LIF(tau_mem=0.5, max_spikes_per_step=1, reset=EXACT_RESET))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NIRLossWarning)
        ours = to_nir(model, spikes(1, 2, 4), dt=1e-3)
        warnings.simplefilter("error", NIRImportWarning)
        from_nir(ours)


@pytest.mark.parametrize(("input_shape", "flattens"), [((10,), False), ((2, 5), True)])
def test_a_flatten_that_changes_nothing_is_left_out(input_shape, flattens, tmp_path):
    """Norse and snnTorch apply Flatten's start_dim with a batch dimension, so a no-op Flatten
    (FeedForwardSNN's first layer on 1-d input) would break the graph for them."""
    model = FeedForwardSNN(input_shape, 3, hidden_sizes=(8,), max_spikes_per_step=1)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3)
    x = spikes(2, 20, *input_shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NIRLossWarning)
        graph = to_nir(model, x)
    kinds = [type(node) for node in graph.nodes.values()]
    assert (nir.Flatten in kinds) == flattens
    nir.write(tmp_path / "m.nir", graph)
    assert_same_run(model, from_nir(tmp_path / "m.nir"), x)


@pytest.mark.parametrize("conv", [
    lambda: TimeFolded(nn.Conv2d(2, 4, 3, padding="same")),
    lambda: TimeFolded(nn.Conv2d(2, 4, 3, padding="same", dilation=(2, 1))),
    lambda: TimeFolded(nn.Conv1d(2, 4, 5, padding="same", stride=1)),
    lambda: TimeFolded(nn.Conv1d(2, 4, 3, padding="valid")),
], ids=["conv2d", "conv2d_dilated", "conv1d", "conv1d_valid"])
def test_string_padding_exports_as_numbers(conv, tmp_path):
    model = nn.Sequential(conv(), nn.Flatten(2))
    x = torch.randn(2, 3, 2, *((7, 6) if isinstance(model[0].layer, nn.Conv2d) else (9,)))
    graph = to_nir(model, x)
    assert not isinstance(graph.nodes["0"].padding, str)
    nir.write(tmp_path / "m.nir", graph)
    with torch.no_grad():
        torch.testing.assert_close(from_nir(tmp_path / "m.nir")(x), model(x),
                                   rtol=1e-6, atol=1e-6)


def test_same_padding_of_an_even_kernel_raises():
    model = nn.Sequential(TimeFolded(nn.Conv2d(2, 4, 2, padding="same")))
    with pytest.raises(NIRExportError, match="0: padding='same' with kernel_size=.*odd kernel"):
        to_nir(model, torch.zeros(1, 2, 2, 6, 6))


@pytest.mark.parametrize("train_alphas", [False, True])
def test_per_channel_parameters_keep_their_shape(train_alphas, tmp_path):
    """A per-channel τ and threshold (C, 1, 1) come back as (C, 1, 1), not per pixel, so the
    original state_dict loads into the read network's layers."""
    conv = nn.Conv2d(2, 6, 3, padding=1)
    with torch.no_grad():
        conv.weight.mul_(3)
    model = nn.Sequential(
        TimeFolded(conv),
        enn.LIF(tau_mem=torch.linspace(2, 12, 6).view(6, 1, 1), tau_syn=3.0,
                spike_threshold=torch.linspace(0.5, 1.5, 6).view(6, 1, 1),
                train_alphas=train_alphas, norm_input=False),
        enn.ExpLeak(tau_mem=torch.linspace(3, 8, 6).view(6, 1, 1), train_alphas=train_alphas))
    x = spikes(2, 8, 2, 5, 5, scale=2.0)
    loaded = round_trip(model, x, tmp_path)
    for ours, theirs in zip(model[1:], list(loaded.layers)[1:], strict=True):
        state = ours.state_dict()
        assert {k: v.shape for k, v in theirs.state_dict().items()} == \
            {k: v.shape for k, v in state.items()}
        theirs.load_state_dict(state)
    assert_same_run(model, loaded, x)


# --- shapes, names and dtypes ------------------------------------------------------------------

@pytest.mark.parametrize(("kernel", "stride", "dilation"), [
    ((3, 1), 1, 1), ((1, 5), 1, 1), ((2, 3), (2, 1), (1, 2))])
def test_a_non_square_conv_kernel_exports_with_its_own_output_shape(kernel, stride, dilation,
                                                                    tmp_path):
    """nir 1.0.8 derives a Conv2d's output with the first kernel dim for both (docs/nir.md):
    the node carries the measured shapes, and the file reads back as the same conv."""
    model = nn.Sequential(TimeFolded(nn.Conv2d(2, 4, kernel, stride=stride, dilation=dilation,
                                               padding=(1, 0))))
    x = torch.randn(2, 3, 2, 8, 9)
    with torch.no_grad():
        expected = model(x)
    graph = to_nir(model, x)
    conv = graph.nodes["0"]
    assert tuple(conv.output_type["output"]) == tuple(expected.shape[2:])
    assert tuple(graph.nodes["output"].output_type["output"]) == tuple(expected.shape[2:])
    nir.write(tmp_path / "m.nir", graph)
    loaded = from_nir(tmp_path / "m.nir")
    assert loaded.layers[0].layer.kernel_size == kernel
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), expected, rtol=1e-6, atol=1e-6)


def lif_node(n: int, tau: float = 5.0) -> nir.LIF:
    return nir.LIF(tau=np.full(n, tau), r=np.ones(n), v_leak=np.zeros(n),
                   v_threshold=np.ones(n))


def affine(out: int, inputs: int) -> nir.Affine:
    return nir.Affine(weight=np.ones((out, inputs)), bias=np.zeros(out))


def graph_of(nodes: dict, edges: list, input_shape=(5,), output_shape=(4,)) -> nir.NIRGraph:
    """A graph as another tool may write it, unchecked by nir (type_check=False)."""
    nodes = {"input": nir.Input(input_type={"input": np.array(input_shape)}), **nodes,
             "output": nir.Output(output_type={"output": np.array(output_shape)})}
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


@pytest.mark.parametrize(("nodes", "edges", "output_shape", "match"), [
    # A neuron whose parameters are all equal runs at any width: it is checked all the same.
    ({"fc": affine(8, 5), "lif": lif_node(4)}, [("input", "fc"), ("fc", "lif"),
                                                  ("lif", "output")], (4,),
     r"node 'lif' \(nir.LIF\) takes features of shape \(4,\), but node 'fc' before it gives "
     r"\(8,\)"),
    ({"fc": affine(8, 5), "fc2": affine(3, 7)}, [("input", "fc"), ("fc", "fc2"),
                                                   ("fc2", "output")], (3,),
     r"node 'fc2' \(nir.Affine\) takes features of shape \(7,\), but node 'fc' before it "
     r"gives \(8,\)"),
    ({"fc": affine(8, 5)}, [("input", "fc"), ("fc", "output")], (4,),
     r"node 'output' \(the graph's Output\) takes features of shape \(4,\), but node 'fc' "
     r"before it gives \(8,\)"),
    ({"fc": affine(4, 5), "lif": lif_node(4), "w": affine(4, 3)},
     [("input", "fc"), ("fc", "lif"), ("lif", "w"), ("w", "lif"), ("lif", "output")], (4,),
     r"node 'w': the recurrent weights of node 'lif' have shape \(4, 3\)"),
], ids=["neuron_width", "affine_input", "output_node", "recurrent_not_square"])
def test_from_nir_checks_each_nodes_shapes_and_names_the_node(nodes, edges, output_shape,
                                                              match):
    with pytest.raises(NIRImportError, match=match):
        from_nir(graph_of(nodes, edges, output_shape=output_shape))


def test_from_nir_reads_shapes_that_fit_and_needs_an_input_shape():
    """Norse writes its batch of 1 into the Input and Output nodes, and 0-d parameters; a
    neuron's parameters may be per channel."""
    lif = nir.LIF(tau=np.array(5.0), r=np.array(1.0), v_leak=np.array(0.0),
                  v_threshold=np.array(1.0))
    norse_like = graph_of({"fc": affine(3, 5), "lif": lif},
                          [("input", "fc"), ("fc", "lif"), ("lif", "output")],
                          input_shape=(1, 5), output_shape=(1, 3))
    network = from_nir(norse_like)
    assert network(torch.rand(2, 4, 1, 5)).shape == (2, 4, 1, 3)
    per_channel = nir.IF(r=np.ones((2, 1, 1)), v_threshold=np.full((2, 1, 1), 0.5))
    network = from_nir(graph_of({"if": per_channel}, [("input", "if"), ("if", "output")],
                                input_shape=(2, 3, 3), output_shape=(2, 3, 3)))
    assert network(torch.ones(1, 2, 2, 3, 3)).sum() > 0
    without = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": None}),
                                  "lif": lif_node(4),
                                  "output": nir.Output(output_type={"output": np.array([4])})},
                           edges=[("input", "lif"), ("lif", "output")], type_check=False)
    with pytest.raises(NIRImportError, match="node 'input': the graph's Input node declares no "
                                             "shape"):
        from_nir(without)


class NamedInputOutput(nn.Module):
    """Layers named like the graph's own Input and Output nodes."""

    def __init__(self) -> None:
        super().__init__()
        self.input = nn.Linear(4, 6)
        self.lif = enn.LIF(tau_mem=5.0, spike_threshold=0.3, norm_input=False)
        self.output = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.lif(self.input(x)))


def named(first: str, second: str) -> nn.Sequential:
    model = nn.Sequential()
    model.add_module(first, nn.Linear(4, 6))
    model.add_module(second, enn.LIFRecurrent(5.0, nn.Linear(6, 6), norm_input=False))
    return model


@pytest.mark.parametrize(("network", "names"), [
    (NamedInputOutput, ["input_", "lif", "output_"]),
    (lambda: named("fc", "output"), ["fc", "output_", "output_.rec_connect"]),
    (lambda: named("fc", "input"), ["fc", "input_", "input_.rec_connect"]),
    # "input_" is taken by a layer: the layer named "input" becomes "input__".
    (lambda: named("input", "input_"), ["input__", "input_", "input_.rec_connect"]),
], ids=["attributes", "recurrent_output", "recurrent_input", "input_and_input_"])
def test_layers_named_input_or_output_export_under_other_names(network, names, tmp_path):
    model = network()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(3)
    x = spikes(2, 12, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NIRLossWarning)
        graph = to_nir(model, x)
    assert isinstance(graph.nodes["input"], nir.Input)
    assert isinstance(graph.nodes["output"], nir.Output)
    assert sorted(graph.nodes) == sorted(["input", *names, "output"])
    nir.write(tmp_path / "m.nir", graph)
    assert_same_run(model, from_nir(tmp_path / "m.nir"), x)


def test_a_bias_free_linear_is_an_affine_with_zero_bias_that_reads_back_without_one(tmp_path):
    """sinabs drops nir.Linear nodes (tests/test_nir_sinabs.py): every nn.Linear is an Affine."""
    model = FeedForwardSNN((5,), 3, hidden_sizes=(6,), recurrent=True, max_spikes_per_step=1)
    x = spikes(2, 10, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NIRLossWarning)
        graph = to_nir(model, x)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert any(m.bias is None for m in linears)
    assert not any(type(node) is nir.Linear for node in graph.nodes.values())
    assert sum(type(node) is nir.Affine for node in graph.nodes.values()) == len(linears)
    nir.write(tmp_path / "m.nir", graph)
    loaded = from_nir(tmp_path / "m.nir")
    assert [m.bias is None for m in loaded.modules() if isinstance(m, nn.Linear)] == \
        [m.bias is None for m in linears]


def test_train_alphas_with_alpha_one_exports_as_tau_inf(tmp_path):
    layer = enn.LIF(tau_mem=torch.tensor([5.0, 6.0, 7.0, 8.0, 9.0, 10.0]), tau_syn=3.0,
                    train_alphas=True, norm_input=False, max_spikes_per_step=1)
    with torch.no_grad():
        layer.alpha_mem[2] = 1.0  # trained to no leak
        layer.alpha_syn.fill_(1.0)
    model = chain(layer)
    x = spikes(2, 15, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NIRLossWarning)
        graph = to_nir(model, x)
    node = graph.nodes["1"]
    assert np.isinf(node.tau_mem[2]) and node.tau_mem[2] > 0 and np.isfinite(node.tau_mem[:2]).all()
    assert np.isposinf(node.tau_syn).all()
    nir.write(tmp_path / "m.nir", graph)
    assert np.isposinf(nir.read(tmp_path / "m.nir").nodes["1"].tau_syn).all()  # nir's own check
    assert_same_run(model, from_nir(tmp_path / "m.nir"), x)


def test_a_neuron_parameter_our_layers_refuse_names_the_node():
    lif = nir.LIF(tau=np.array([5.0, -np.inf]), r=np.ones(2), v_leak=np.zeros(2),
                  v_threshold=np.ones(2))
    with pytest.raises(NIRImportError, match=r"node 'lif' \(nir.LIF\): tau_mem must be > 0"):
        from_nir(nir.NIRGraph.from_list(lif), dt=1.0)


def test_a_flatten_in_time_folded_exports_counting_its_own_dims(tmp_path):
    """TimeFolded's Flatten sees (batch·time, *features): nn.Flatten() there (sinabs' idiom)
    flattens the features only."""
    x = torch.randn(2, 3, 3, 4, 4)
    for flatten, features in ((nn.Flatten(), (48,)), (nn.Flatten(2), (3, 16)),
                              (nn.Flatten(-2), (3, 16))):
        model = nn.Sequential(TimeFolded(flatten))
        graph = to_nir(model, x)
        assert tuple(graph.nodes["0"].output_type["output"]) == features
        nir.write(tmp_path / "m.nir", graph)
        with torch.no_grad():
            torch.testing.assert_close(from_nir(tmp_path / "m.nir")(x), model(x),
                                       rtol=0, atol=0)


@pytest.mark.parametrize("start_dim", [-4, -5, 1])
def test_a_flatten_over_batch_or_time_by_a_negative_dim_raises_saying_so(start_dim):
    with pytest.raises(NIRExportError, match="flattens batch or time; use start_dim=2"):
        to_nir(nn.Sequential(nn.Flatten(start_dim)), torch.zeros(2, 3, 2, 3, 4))


def test_float64_networks_round_trip_bit_identically_with_dtype_float64(tmp_path):
    conv = nn.Conv2d(2, 4, 3, padding=1)
    model = nn.Sequential(
        TimeFolded(conv), enn.LIF(tau_mem=torch.linspace(2, 9, 4).view(4, 1, 1), tau_syn=3.3,
                                  spike_threshold=0.7, norm_input=False),
        nn.Flatten(2), nn.Linear(4 * 5 * 5, 6, bias=False),
        enn.LIFRecurrent(7.3, nn.Linear(6, 6), norm_input=False, train_alphas=True),
        nn.Linear(6, 3), enn.ExpLeak(tau_mem=torch.linspace(2, 4, 3))).double()
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() > 1:
                parameter.mul_(3)
    x = spikes(2, 10, 2, 5, 5, scale=2.0).double()
    graph = to_nir(model, x, dt=0.37)
    nir.write(tmp_path / "m.nir", graph)
    loaded = from_nir(tmp_path / "m.nir", dtype=torch.float64)
    assert {p.dtype for p in loaded.parameters()} == {torch.float64}
    for ours, theirs in zip(model.parameters(), loaded.parameters(), strict=True):
        torch.testing.assert_close(theirs, ours, rtol=0, atol=0)
    assert_same_run(model, loaded, x)
    assert {p.dtype for p in from_nir(tmp_path / "m.nir").parameters()} == {torch.float32}
    with pytest.raises(TypeError, match="dtype must be a floating torch.dtype"):
        from_nir(graph, dtype=torch.int32)
