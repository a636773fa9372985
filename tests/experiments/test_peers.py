"""Peers run our LIF dynamics: same spikes and input gradients as the float64 reference with
their own surrogate (each installed peer, eager and compiled; the others are skipped); a peer
that is missing, broken or failing becomes a note under the benchmark's table."""

from __future__ import annotations

import math
import sys

import pytest
import torch

from experiments import benchmark_peers, peers, report
from experiments.common import relative_error

ALPHA = math.exp(-1 / 20)


def _run(name: str, x: torch.Tensor, upstream: torch.Tensor, reference: bool = False):
    layer = (peers.reference_layer if reference else peers.lif_layer)(name, ALPHA)
    x = x.clone().requires_grad_()
    spikes = layer(x)
    spikes.backward(upstream)
    return spikes.detach().double(), x.grad.double()


def _inputs(scale: float, dtype: torch.dtype = torch.float64):
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(3, 200, 24, generator=generator, dtype=torch.float64) * scale + 0.05
    upstream = torch.randn(x.shape, generator=generator, dtype=torch.float64)
    return x.to(dtype), upstream.to(dtype)


@pytest.mark.parametrize("name", peers.OURS + peers.PEERS + peers.COMPILED_PEERS)
def test_each_implementation_equals_the_reference_with_its_surrogate(name):
    if peers.unavailable(name):
        pytest.skip(peers.unavailable(name))
    # A drive that spikes (~4 %) but never leaves v ≥ 2θ after a spike (see the next test).
    x, upstream = _inputs(0.2, torch.float32)
    spikes, grad = _run(name, x, upstream)
    ref_spikes, ref_grad = _run(name, x.double(), upstream.double(), reference=True)
    assert ref_spikes.mean() > 0.01
    assert torch.equal(spikes, ref_spikes)
    assert relative_error(grad, ref_grad) < 1e-5


def test_snntorch_differs_only_where_one_spike_leaves_v_above_threshold():
    """snnTorch (reset_delay=False) subtracts a pending reset before the next spike test: its
    spikes differ from ours once v ≥ 2θ after a spike (strong drive), as peers.py says."""
    pytest.importorskip("snntorch")
    x, upstream = _inputs(1.0)
    spikes, _ = _run("snntorch", x, upstream)
    ref_spikes, _ = _run("snntorch", x, upstream, reference=True)
    assert not torch.equal(spikes, ref_spikes)
    # Reconstruct ours step by step: the first differing step follows a post-reset v ≥ θ.
    v = torch.zeros_like(x[:, 0])
    above_after_reset = torch.zeros_like(ref_spikes, dtype=torch.bool)
    for t in range(x.shape[1]):
        v = ALPHA * v + x[:, t]
        v = v - (v >= 1).double()
        above_after_reset[:, t] = v >= 1
    first = (spikes != ref_spikes).double().argmax(1)  # first differing step per row, or 0
    rows, neurons = torch.nonzero((spikes != ref_spikes).any(1), as_tuple=True)
    for row, neuron in zip(rows, neurons):
        t = first[row, neuron]
        assert t > 0 and above_after_reset[row, t - 1, neuron]


@pytest.mark.slow
def test_benchmark_writes_the_readme_table_with_equivalence_first(tmp_path):
    """With ours and one compiled peer (--only): each measured implementation costs fresh
    processes, and every peer's equivalence is tested above."""
    result = benchmark_peers.main(["--tiny", "--threads", "1", "--only", "norse-compiled",
                                   "--out", str(tmp_path)])
    text = (tmp_path / "lif_layer.md").read_text()
    assert text.startswith("| " + " | ".join(benchmark_peers.COLUMNS) + " |\n")
    assert "_Measured " in text and "commit " in text
    rows = report.read_csv(tmp_path / "lif_layer.csv")  # all columns, full precision
    compiled = set() if peers.unavailable("norse-compiled") else {"norse-compiled"}
    assert {r["implementation"] for r in rows} == set(peers.OURS) | compiled
    assert ("norse-compiled: the peer's per-step cell under torch.compile" in text) == bool(
        compiled)
    assert all(float(r["peak MB"]) > 0 for r in rows)
    for row in result["rows"]:
        if not row["implementation"].startswith("snntorch"):  # its convention (see above)
            assert row["spike mismatch"] == 0 and row["input-grad error"] < 1e-5


def test_a_broken_install_is_unavailable_with_its_error(tmp_path, monkeypatch):
    """An installed package that fails to import (a missing shared library) is not runnable."""
    fake = tmp_path / "norse"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('libfoo.so: cannot open shared object')")
    monkeypatch.syspath_prepend(str(tmp_path))
    for module in [m for m in sys.modules if m == "norse" or m.startswith("norse.")]:
        monkeypatch.delitem(sys.modules, module)
    reason = peers.unavailable("norse")
    assert reason == ("norse: importing norse failed: ImportError: libfoo.so: cannot open "
                      "shared object")
    assert peers.unavailable("norse-compiled").startswith("norse-compiled: importing norse")


def test_only_names_peers(capsys):
    with pytest.raises(SystemExit):
        benchmark_peers.main(["--tiny", "--only", "brian2"])
    assert "--only: invalid choice: 'brian2'" in capsys.readouterr().err


def test_a_missing_package_is_not_installed(monkeypatch):
    missing = peers.Implementation("ghost", "no_such_package_xyz", peers._atan, "ATan(2)")
    monkeypatch.setitem(peers.IMPLEMENTATIONS, "ghost", missing)
    assert peers.unavailable("ghost") == "ghost is not installed (pip install no_such_package_xyz)"


@pytest.mark.slow
def test_missing_and_failing_peers_become_notes_under_the_table(tmp_path, monkeypatch):
    """One peer not installed, one failing in its measurement: both named below the table that
    reaches the docs, every other implementation still measured."""
    unavailable = peers.unavailable
    lif_layer = peers.lif_layer
    # (the others too, only to keep this short: each measured one costs fresh processes)
    missing = {"sinabs", "snntorch", "norse", *peers.COMPILED_PEERS}

    def fake_unavailable(name):
        return f"{name} is not installed (test)" if name in missing else unavailable(name)

    def failing_lif_layer(name, alpha, device="cpu"):
        if name == "spikingjelly":
            raise RuntimeError("out of memory (test)")
        return lif_layer(name, alpha, device)

    monkeypatch.setattr(peers, "unavailable", fake_unavailable)
    monkeypatch.setattr(peers, "lif_layer", failing_lif_layer)
    result = benchmark_peers.main(["--tiny", "--threads", "1", "--out", str(tmp_path)])
    text = (tmp_path / "lif_layer.md").read_text()
    table, notes, provenance = text.rstrip("\n").split("\n\n")
    assert "- skipped sinabs is not installed (test)" in notes.splitlines()
    assert ("- spikingjelly left out: its equivalence check at (2, 20, 16) failed: "
            "RuntimeError: out of memory (test)") in notes.splitlines()
    assert "| sinabs |" not in table and "| spikingjelly |" not in table
    measured = {row["implementation"] for row in result["rows"]}
    runnable = {n for n in peers.OURS + peers.PEERS if unavailable(n) is None} - missing
    assert measured == runnable - {"spikingjelly"}
    assert provenance.startswith(report.SMOKE_TABLE_MARK)
