"""NIR read by Norse and snnTorch, what docs/nir.md's reader table says of them: our graphs with
reset="zero" and r = 1 (norm_input=True) give the same output spikes as our network does with
their discretisation, forward Euler: the membrane decays by 1 − dt/τ per step where we use
exp(−dt/τ). What they do differently (a CubaLIF's input gain, a left-out LI, a refused IF or
CubaLIF, a recurrent cycle) is measured here too; and snnTorch's own recurrent layers, read by
from_nir, run as snnTorch runs them with exact decay in place of Euler's.

Both read through nirtorch 2.x, which needs nir >= 1.0.6; skipped without them. Norse takes dt
as an argument; snnTorch fixes dt = 1e-4, so the graph for it is written with dt = 1e-4.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import warnings

import pytest
import torch
from torch import nn

from exodus_lightning import nn as enn

nir = pytest.importorskip("nir")
if tuple(int(n) for n in nir.version.split(".")[:3]) < (1, 0, 6):
    pytest.skip("nirtorch 2.x, which Norse and snnTorch read NIR with, needs nir >= 1.0.6",
                allow_module_level=True)

from exodus_lightning.nir import NIRLossWarning, from_nir, to_nir  # noqa: E402

TAU = 20.0  # steps


def network(tau_mem: float, reset: str = "zero") -> nn.Sequential:
    """Two single-spike LIF layers with r = 1; the same weights for every tau_mem."""
    torch.manual_seed(0)
    first, second = nn.Linear(20, 32), nn.Linear(32, 8, bias=False)  # a zero-bias Affine
    with torch.no_grad():
        first.weight.mul_(30)
        second.weight.mul_(30)
    lif = {"tau_mem": tau_mem, "norm_input": True, "max_spikes_per_step": 1, "reset": reset,
           "backend": "reference"}
    return nn.Sequential(first, enn.LIF(**lif), second, enn.LIF(**lif))


def euler_equivalent() -> nn.Sequential:
    """Our network with α = 1 − 1/τ (Euler's decay) in place of exp(−1/τ)."""
    return network(-1.0 / math.log(1.0 - 1.0 / TAU))


def run_steps(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A reader's module stepped over x (batch, time, features), its state carried."""
    outputs, state = [], None
    with torch.no_grad():
        for t in range(x.shape[1]):
            result = module(x[:, t], state)
            output, state = result if isinstance(result, tuple) else (result, state)
            outputs.append(output)
    return torch.stack(outputs, 1)


def export(model: nn.Module, x: torch.Tensor, dt: float) -> nir.NIRGraph:
    with warnings.catch_warnings():
        warnings.simplefilter("error", NIRLossWarning)  # reset="zero", single spike: exact
        return to_nir(model, x, dt=dt)


@pytest.fixture
def x() -> torch.Tensor:
    torch.manual_seed(1)
    return (torch.rand(4, 100, 20) < 0.3).float()


def test_norse_runs_our_graph_with_euler_decay(x):
    norse = pytest.importorskip("norse.torch")
    model = network(TAU)
    graph = export(model, x, dt=1e-3)
    logging.disable(logging.WARNING)  # Norse logs each node it maps
    try:
        theirs = run_steps(norse.from_nir(graph, dt=1e-3), x)
    finally:
        logging.disable(logging.NOTSET)
    with torch.no_grad():
        expected = euler_equivalent()(x)
        ours = model(x)
    assert expected.sum() > 50
    torch.testing.assert_close(theirs, expected, rtol=0, atol=0)
    assert not torch.equal(theirs, ours)  # exp(−dt/τ) is not Euler: the table's difference


def test_snntorch_runs_our_graph_with_euler_decay_at_its_fixed_dt(x):
    import_nir = pytest.importorskip("snntorch.import_nir")
    model = network(TAU)
    graph = export(model, x, dt=1e-4)  # snnTorch reads every graph with dt = 1e-4
    with contextlib.redirect_stdout(io.StringIO()):  # it prints each node it maps
        module = import_nir.import_from_nir(graph)
    theirs = run_steps(lambda step, state: module(step), x)
    with torch.no_grad():
        expected = euler_equivalent()(x)
    assert expected.sum() > 50
    torch.testing.assert_close(theirs, expected, rtol=0, atol=0)


def euler(tau: float) -> float:
    """Our τ (in steps) whose decay exp(−1/τ) is Euler's 1 − 1/τ."""
    return -1.0 / math.log(1.0 - 1.0 / tau)


def dense(neuron, tau_mem: float, tau_syn: float | None = None) -> nn.Sequential:
    """Linear(20, 16) into one single-spike, reset-to-zero, r = 1 layer: "lif", "if",
    "cuba" (decay_early=False) or "recurrent"; the same weights for every τ."""
    torch.manual_seed(0)
    linear = nn.Linear(20, 16)
    with torch.no_grad():
        linear.weight.mul_(10)
    common = {"max_spikes_per_step": 1, "reset": "zero", "backend": "reference"}
    if neuron == "if":
        return nn.Sequential(linear, enn.IAF(**common))
    common["norm_input"] = True
    if neuron == "cuba":
        return nn.Sequential(linear, enn.LIF(tau_mem=tau_mem, tau_syn=tau_syn,
                                             decay_early=False, **common))
    if neuron == "recurrent":
        rec = nn.Linear(16, 16)
        with torch.no_grad():
            rec.weight.mul_(2)
        return nn.Sequential(linear, enn.LIFRecurrent(tau_mem, rec, **common))
    return nn.Sequential(linear, enn.LIF(tau_mem=tau_mem, **common))


def norse_run(graph: nir.NIRGraph, x: torch.Tensor, dt: float = 1e-3) -> torch.Tensor:
    norse = pytest.importorskip("norse.torch")
    logging.disable(logging.WARNING)  # Norse logs each node it maps
    try:
        return run_steps(norse.from_nir(graph, dt=dt), x)
    finally:
        logging.disable(logging.NOTSET)


def snntorch_module(graph: nir.NIRGraph) -> nn.Module:
    import_nir = pytest.importorskip("snntorch.import_nir")
    with contextlib.redirect_stdout(io.StringIO()):  # it prints each node it maps
        return import_nir.import_from_nir(graph)


@pytest.mark.parametrize("neuron", ["if", "recurrent"])
def test_norse_runs_our_if_and_recurrent_lif_with_euler_decay(neuron, x):
    graph = export(dense(neuron, TAU), x, dt=1e-3)
    theirs = norse_run(graph, x)
    with torch.no_grad():
        expected = dense(neuron, euler(TAU))(x)
    assert expected.sum() > 20
    torch.testing.assert_close(theirs, expected, rtol=0, atol=0)


def test_norse_scales_our_cuba_lif_input_by_eulers_synapse_gain(x):
    """Norse multiplies a CubaLIF's input by w_in·dt/τ_syn (Euler's gain) where w_in means
    (1 − exp(−dt/τ_syn))·w_in to us: its spikes are our Euler twin's with the synaptic input
    scaled by (dt/τ_syn) / (1 − exp(−dt/τ_syn)), 1.13 at τ_syn = 4 steps."""
    tau_syn = 4.0
    graph = export(dense("cuba", TAU, tau_syn), x, dt=1e-3)
    theirs = norse_run(graph, x)
    twin = dense("cuba", euler(TAU), euler(tau_syn))
    gain = (1 / tau_syn) / (1 - math.exp(-1 / tau_syn))
    with torch.no_grad():
        expected = twin(x)
        enn.reset_states(twin)
        twin[0].weight.mul_(gain)
        twin[0].bias.mul_(gain)
        scaled = twin(x)
    assert scaled.sum() > 50
    torch.testing.assert_close(theirs, scaled, rtol=0, atol=0)
    assert not torch.equal(theirs, expected)


def test_norse_leaves_out_our_leaky_readout(x):
    """Norse 1.1 has no nir.LI: the graph runs without our ExpLeak, with no error."""
    model = nn.Sequential(nn.Linear(20, 3), enn.ExpLeak(tau_mem=4.0, norm_input=True))
    graph = export(model, x, dt=1e-3)
    with torch.no_grad():
        torch.testing.assert_close(norse_run(graph, x), model[0](x))


def test_norse_leaves_out_our_average_pooling_but_runs_sum_pooling():
    """Norse 1.1 maps no nir.AvgPool2d: left out, without an error when it is the last node;
    it runs nir.SumPool2d, which our LPPool2d(1, k) writes."""
    norse = pytest.importorskip("norse.torch")
    from exodus_lightning.models import TimeFolded

    torch.manual_seed(3)
    x = (torch.rand(2, 5, 2, 6, 6) < 0.3).float()

    def pooled(pool: nn.Module) -> nn.Sequential:
        return nn.Sequential(TimeFolded(nn.Conv2d(2, 4, 3, padding=1)),
                             enn.IAF(reset="zero", max_spikes_per_step=1), TimeFolded(pool))

    logging.disable(logging.WARNING)
    try:
        for pool, shape in ((nn.AvgPool2d(2), (4, 6, 6)), (nn.LPPool2d(1, 2), (4, 3, 3))):
            network = norse.from_nir(export(pooled(pool), x, dt=1e-3), dt=1e-3)
            output = network(x[:, 0])
            assert tuple(output[0].shape[1:]) == shape, type(pool).__name__
    finally:
        logging.disable(logging.NOTSET)


@pytest.mark.parametrize(("neuron", "message"), [
    ("if", "r != 1 not supported"),  # we write r = 1/dt
    ("cuba", "r not supported in CubaLIF"),  # it needs r = τ_mem/dt
    ("thresholds", "v_threshold must be same for all neurons"),
])
def test_snntorch_refuses_our_if_cuba_lif_and_per_neuron_thresholds(neuron, message, x):
    model = dense("lif" if neuron == "thresholds" else neuron, TAU, 4.0)
    if neuron == "thresholds":
        model[1] = enn.LIF(tau_mem=TAU, spike_threshold=torch.linspace(0.5, 1.0, 16),
                           norm_input=True, max_spikes_per_step=1, reset="zero")
    graph = export(model, x, dt=1e-4)
    with pytest.raises(AssertionError, match=message):
        snntorch_module(graph)


def test_snntorch_runs_our_recurrent_cycle_with_other_spikes(x):
    """snnTorch 1.0 reads a flat neuron ⇄ weights cycle, but its importer rewires it (the
    layer's input also reaches the recurrent weights): the spikes are not the Euler twin's."""
    graph = export(dense("recurrent", TAU), x, dt=1e-4)
    module = snntorch_module(graph)
    theirs = run_steps(lambda step, state: module(step), x)
    with torch.no_grad():
        expected = dense("recurrent", euler(TAU))(x)
    assert expected.sum() > 20 and theirs.shape == expected.shape
    assert (theirs != expected).float().mean() > 0.01


class SnnTorchRecurrent(nn.Module):
    """Linear(5, 8) into snnTorch's RLeaky or RSynaptic (all-to-all recurrent weights)."""

    def __init__(self, kind: str, beta: torch.Tensor, alpha: torch.Tensor | None,
                 init_hidden: bool) -> None:
        snn = pytest.importorskip("snntorch")
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(5, 8)
        common = {"linear_features": 8, "threshold": torch.ones(8), "reset_mechanism": "zero",
                  "init_hidden": init_hidden}
        self.rec = (snn.RLeaky(beta=beta, reset_delay=False, **common) if kind == "RLeaky"
                    else snn.RSynaptic(alpha=alpha, beta=beta, **common))
        with torch.no_grad():
            self.fc.weight.mul_(2)
            self.rec.recurrent.weight.mul_(3)
            # Our recurrent layers feed rec_connect(s_{t-1}) from the second step on (s_0 = 0
            # gives no input, as in sinabs); snnTorch adds the recurrent bias at the first.
            self.rec.recurrent.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rec(self.fc(x))

    def simulate(self, x: torch.Tensor) -> torch.Tensor:
        """snnTorch's own steps over x (batch, time, 5), resetting to zero right after a spike
        as the graph's v_reset = 0 says (snnTorch 1.0's RSynaptic(reset_delay=False) raises a
        TypeError, so the reset is applied here; RLeaky does it itself)."""
        spikes = syn = mem = torch.zeros(x.shape[0], 8, dtype=x.dtype)
        out = []
        with torch.no_grad():
            for x_t in x.unbind(1):
                if isinstance(self.rec, pytest.importorskip("snntorch").RLeaky):
                    spikes, mem = self.rec(self.fc(x_t), spikes, mem)
                else:
                    spikes, syn, mem = self.rec(self.fc(x_t), spikes, syn, mem)
                    mem = mem * (1 - spikes)
                spikes = spikes.to(x.dtype)  # snnTorch's spike function gives float32
                out.append(spikes)
        return torch.stack(out, 1)


@pytest.mark.parametrize("kind", ["RLeaky", "RSynaptic"])
def test_we_read_snntorch_recurrent_layers_as_snntorch_runs_them_with_exact_decay(kind,
                                                                                 tmp_path):
    """snnTorch writes RLeaky / RSynaptic as a neuron ⇄ weights subgraph whose gains are
    Euler's (r = τ/dt, w_in = τ_syn/dt at dt = 1e-4). We read them with exact decay
    a = exp(−dt/τ) and the gain g = (1 − a)·r that convention implies, folded into the
    recurrent weights: the spikes are those snnTorch computes for the same network with β → a
    and the input and recurrent weights times g (float64 on both sides)."""
    pytest.importorskip("snntorch")
    export_nir = pytest.importorskip("snntorch.export_nir")
    beta = torch.linspace(0.7, 0.95, 8)
    alpha = torch.linspace(0.5, 0.8, 8) if kind == "RSynaptic" else None
    network = SnnTorchRecurrent(kind, beta, alpha, init_hidden=True)
    with contextlib.redirect_stdout(io.StringIO()):
        graph = export_nir.export_to_nir(network, torch.zeros(1, 5), ignore_dims=[0])
    neuron = nir.LIF if kind == "RLeaky" else nir.CubaLIF
    assert neuron in {type(node) for node in graph.nodes.values()}
    nir.write(tmp_path / "snntorch.nir", graph)
    ours = from_nir(tmp_path / "snntorch.nir", dt=1e-4, dtype=torch.float64)

    def exact(euler_decay: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        decay = torch.exp(-(1 - euler_decay.double()))  # exp(−dt/τ), τ = dt/(1 − β)
        return decay, (1 - decay) / (1 - euler_decay.double())

    beta_exact, gain = exact(beta)
    alpha_exact = None
    if alpha is not None:
        alpha_exact, syn_gain = exact(alpha)
        gain = gain * syn_gain
    twin = SnnTorchRecurrent(kind, beta, alpha, init_hidden=False).double()
    with torch.no_grad():
        twin.rec.beta = beta_exact
        if alpha is not None:
            twin.rec.alpha = alpha_exact
        twin.fc.weight.mul_(gain[:, None])
        twin.fc.bias.mul_(gain)
        twin.rec.recurrent.weight.mul_(gain[:, None])
    torch.manual_seed(1)
    x = (torch.rand(3, 60, 5) < 0.4).double()
    with torch.no_grad():
        got = ours(x)
    expected = twin.simulate(x)
    assert expected.sum() > 50
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    # Euler's decay is another network: snnTorch's own run of the layer differs.
    plain = SnnTorchRecurrent(kind, beta, alpha, init_hidden=False).double()
    assert not torch.equal(plain.simulate(x), got)
