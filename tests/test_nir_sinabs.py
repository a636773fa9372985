"""NIR across libraries: graphs we write, read by sinabs, and graphs sinabs writes, read by us,
give the same output spikes as the network they came from.

sinabs' ``to_nir`` / ``from_nir`` go through nirtorch, whose 2.x needs nir >= 1.0.6 (it calls
``nir.NIRGraph(..., type_check=False)``); with an older nir these tests apply sinabs' own per-layer
mapping (``sinabs.nir._extract_sinabs_module`` and ``_import_sinabs_module``) along the chain,
which is what sinabs' functions do per node. sinabs ignores NIR's v_reset (nir >= 1.0.5) and
writes none, so nir fills in 0: a sinabs network reads as NIR says only with
``MembraneReset`` there, and sinabs reads our neurons as subtracting whatever v_reset says.

Conventions (see exodus_lightning.nir.convention): sinabs writes τ in steps and r = 1, and
reads an LIF as norm_input=False whatever its r, an IF with min_v_mem = −v_threshold, an LI only
with r = 1 (as norm_input=False), and its neurons as multi-spike. So the tests use our LIF with
norm_input=False and multi-spike neurons (sinabs' reading), non-negative drive for the IF (the
bound sinabs adds is never reached), and sinabs' LIF/ExpLeak with norm_input=True (what r = 1
means here) and single spikes (NIR's neuron) for the other direction.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from exodus_lightning import nn as enn
from exodus_lightning.models import TimeFolded

nir = pytest.importorskip("nir")
sinabs = pytest.importorskip("sinabs")
sinabs_nir = pytest.importorskip("sinabs.nir")
sl = pytest.importorskip("sinabs.layers")
sa = pytest.importorskip("sinabs.activation")

from exodus_lightning.nir import NIRLossWarning, from_nir, to_nir  # noqa: E402
from exodus_lightning.nir.export import HAS_V_RESET  # noqa: E402

# nirtorch 2.x, which sinabs.to_nir / from_nir call, needs nir >= 1.0.6.
NIRTORCH_WORKS = tuple(int(n) for n in nir.version.split(".")[:3]) >= (1, 0, 6)


def chain_nodes(graph: nir.NIRGraph) -> list[nir.NIRNode]:
    """The nodes from input to output of a chain graph, without Input and Output."""
    following = dict(graph.edges)
    (current,) = graph.inputs
    nodes = []
    while current not in graph.outputs:
        current = following[current]
        if current not in graph.outputs:
            nodes.append(graph.nodes[current])
    return nodes


def sinabs_import(graph: nir.NIRGraph, batch_size: int) -> nn.Module:
    """sinabs' network for graph, (batch·time, *features) -> the same, output only."""
    if NIRTORCH_WORKS:
        network = sinabs.from_nir(graph, batch_size=batch_size)
        return lambda x: network(x)[0]  # nirtorch 2.x returns (output, state)
    modules = [sinabs_nir._import_sinabs_module(node, batch_size=batch_size, num_timesteps=None)
               for node in chain_nodes(graph)]
    return nn.Sequential(*modules)


def sinabs_export(model: nn.Sequential, sample: torch.Tensor) -> nir.NIRGraph:
    """sinabs' graph of model, a chain of its Squeeze layers on (batch·time, *features)."""
    if NIRTORCH_WORKS:
        return sinabs.to_nir(model, sample)
    return nir.NIRGraph.from_list(*[sinabs_nir._extract_sinabs_module(m) for m in model])


def positive_linear(n_in: int, n_out: int) -> nn.Linear:
    linear = nn.Linear(n_in, n_out)
    with torch.no_grad():
        linear.weight.abs_().mul_(2)
        linear.bias.abs_()
    return linear


def test_sinabs_reads_our_dense_graph_with_the_same_spikes():
    torch.manual_seed(1)
    ours = nn.Sequential(
        nn.Flatten(start_dim=2),
        positive_linear(6, 10),
        enn.IAF(spike_threshold=torch.linspace(0.5, 1.5, 10)),
        nn.Linear(10, 8),
        enn.LIF(tau_mem=torch.linspace(3, 12, 8), norm_input=False, spike_threshold=0.7),
        nn.Linear(8, 4, bias=False),  # an Affine with zero bias: sinabs 3.1 drops nir.Linear
        enn.LIF(tau_mem=6.0, norm_input=False))
    batch, steps = 3, 30
    x = (torch.rand(batch, steps, 2, 3) < 0.4).float()
    with pytest.warns(NIRLossWarning, match="max_spikes_per_step=None"):
        graph = to_nir(ours, x)
    theirs = sinabs_import(graph, batch)
    with torch.no_grad():
        expected = ours(x)
        got = theirs(x.flatten(0, 1)).unflatten(0, (batch, steps))
    assert expected.sum() > 0
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


@pytest.mark.skipif(not NIRTORCH_WORKS, reason="sinabs.from_nir needs nirtorch 2.x")
def test_sinabs_leaves_out_our_cuba_lif_and_runs_our_recurrent_layer_as_a_chain():
    """What docs/nir.md's reader table says sinabs does with these, without an error: it has
    no CubaLIF (the node is left out), and it runs a cycle as a chain (the recurrent weights
    after the neuron, on its spikes)."""
    torch.manual_seed(4)
    x = (torch.rand(2, 10, 6) < 0.4).float()
    kinds = {}
    for name, neuron in (("cuba", enn.LIF(tau_mem=5.0, tau_syn=3.0, norm_input=False)),
                         ("recurrent", enn.LIFRecurrent(5.0, nn.Linear(4, 4),
                                                        norm_input=False))):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NIRLossWarning)
            graph = to_nir(nn.Sequential(nn.Linear(6, 4), neuron), x)
        kinds[name] = [type(m).__name__ for m in sinabs.from_nir(graph, batch_size=2).children()
                       if not isinstance(m, nn.Identity)]
    assert kinds == {"cuba": ["Linear"], "recurrent": ["Linear", "LIFSqueeze", "Linear"]}


@pytest.mark.skipif(not NIRTORCH_WORKS, reason="sinabs.from_nir needs nirtorch 2.x")
def test_sinabs_reads_our_exp_leak_only_with_r_one_and_without_its_input_scale():
    """sinabs reads an LI only with r = 1, as its ExpLeak with norm_input=False: our
    norm_input=True (r = 1) comes out 1/(1 − α) times larger, norm_input=False raises."""
    torch.manual_seed(5)
    x = torch.rand(2, 10, 6)
    for norm_input in (True, False):
        ours = nn.Sequential(nn.Linear(6, 3), enn.ExpLeak(tau_mem=4.0, norm_input=norm_input))
        graph = to_nir(ours, x)
        if not norm_input:
            with pytest.raises(ValueError, match="`r` must be 1"):
                sinabs.from_nir(graph, batch_size=2)
            continue
        with torch.no_grad():
            got = sinabs_import(graph, 2)(x.flatten(0, 1)).unflatten(0, (2, 10))
            expected = ours(x)
        torch.testing.assert_close(got, expected / (1 - math.exp(-1 / 4.0)))


def test_sinabs_reads_our_conv_graph_with_the_same_spikes():
    torch.manual_seed(2)
    conv = nn.Conv2d(2, 4, 3, padding=1)
    with torch.no_grad():
        conv.weight.abs_()
    ours = nn.Sequential(
        TimeFolded(conv), enn.IAF(), TimeFolded(nn.LPPool2d(1, 2)), nn.Flatten(2),
        positive_linear(4 * 3 * 3, 5), enn.LIF(tau_mem=5.0, norm_input=False))
    batch, steps = 2, 12
    x = (torch.rand(batch, steps, 2, 6, 6) < 0.3).float()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NIRLossWarning)
        graph = to_nir(ours, x)
    theirs = sinabs_import(graph, batch)
    with torch.no_grad():
        expected = ours(x)
        got = theirs(x.flatten(0, 1)).unflatten(0, (batch, steps))
    assert expected.sum() > 0
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


def test_sinabs_cannot_read_our_lif_after_a_conv():
    """sinabs 3.1's reader tests `any(node.v_leak) != 0`, which raises for a LIF node whose
    parameters have more than one dim (the (C, H, W) neurons after a conv, as in the N-MNIST
    and DVS Gesture networks); an IAF there reads (see the test above)."""
    conv = TimeFolded(nn.Conv2d(2, 4, 3, padding=1))
    ours = nn.Sequential(conv, enn.LIF(tau_mem=5.0, norm_input=False))
    x = (torch.rand(2, 3, 2, 6, 6) < 0.3).float()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NIRLossWarning)
        graph = to_nir(ours, x)
    with pytest.raises(ValueError, match="truth value of an array"):
        sinabs_import(graph, 2)


def test_we_read_sinabs_graphs_with_the_same_spikes(tmp_path):
    torch.manual_seed(3)
    batch, steps = 3, 25
    # Per-neuron parameters: sinabs writes a scalar τ as a 0-d array, which nir 1.0.8 cannot
    # write, and an LIF's scalar threshold beside a per-neuron τ, which nir rejects. The reset
    # NIR's v_reset (or nir <= 1.0.4's subtraction) says; sinabs itself writes no v_reset.
    reset = {"reset_fn": sa.MembraneReset() if HAS_V_RESET else sa.MembraneSubtract(),
             "spike_fn": sa.SingleSpike, "batch_size": batch}
    theirs = nn.Sequential(
        positive_linear(5, 8),
        sl.LIFSqueeze(tau_mem=torch.full((8,), 6.0), spike_threshold=torch.ones(8), **reset),
        nn.Linear(8, 6),
        sl.IAFSqueeze(spike_threshold=torch.full((6,), 0.8), **reset),
        nn.Linear(6, 3),
        sl.ExpLeakSqueeze(tau_mem=torch.full((3,), 4.0), norm_input=True, batch_size=batch))
    x = (torch.rand(batch, steps, 5) < 0.5).float() * 2
    fired = []
    for layer in (theirs[1], theirs[3]):
        layer.register_forward_hook(lambda m, i, out: fired.append(float(out.sum())))
    with torch.no_grad():
        # also creates the states sinabs' exporter reads shapes from
        expected = theirs(x.flatten(0, 1)).unflatten(0, (batch, steps))
    assert min(fired) > 0  # both spiking layers fire
    graph = sinabs_export(theirs, x.flatten(0, 1))
    nir.write(tmp_path / "sinabs.nir", graph)
    ours = from_nir(tmp_path / "sinabs.nir")
    with torch.no_grad():
        got = ours(x)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
