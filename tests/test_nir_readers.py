"""NIR read by Norse and snnTorch: our graphs with reset="zero" and r = 1 (norm_input=True) give
the same output spikes as our network does with their discretisation, forward Euler: the
membrane decays by 1 − dt/τ per step where we use exp(−dt/τ) (the README's reader table).

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

from exodus_lightning.nir import NIRLossWarning, to_nir  # noqa: E402

TAU = 20.0  # steps


def network(tau_mem: float, reset: str = "zero") -> nn.Sequential:
    """Two single-spike LIF layers with r = 1; the same weights for every tau_mem."""
    torch.manual_seed(0)
    first, second = nn.Linear(20, 32), nn.Linear(32, 8)
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
