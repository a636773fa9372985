"""Speed experiment at tiny scale: every measurement is written; every implementation's
network computes the same training step; missing peers are skipped with a note."""

from __future__ import annotations

import importlib.util

import pytest
import torch
import torch.nn.functional as F

from exodus_lightning import nn as enn
from experiments import isolated, peers
from experiments import training_speed as ts

from .conftest import assert_png, assert_readme_table, assert_report, assert_table


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("training_speed")
    return ts.main(["--tiny", "--in-process", "--threads", "1", "--out", str(out)]), out


def test_outputs_are_written_and_well_formed(result):
    summary, out = result
    rows = assert_table(out / "speed")
    ours = [r for r in rows if r["implementation"] in ts.OURS]
    assert len(ours) == 2 * sum(len(ts.TINY[n].times) for n in ts.TINY)
    # Peak memory is read after returning freed memory to the OS: never 0 for a real step.
    assert all(float(r["ms_per_step"]) > 0 and float(r["peak_mb"]) > 0 for r in rows)
    assert all(float(r["ms_min"]) <= float(r["ms_per_step"]) <= float(r["ms_max"]) for r in rows)
    assert all(float(r["saved_mb"]) > 0 for r in rows)
    assert all(float(r["speed-up vs bptt"]) == 1.0 for r in rows if r["implementation"] == "bptt")
    assert_png(out / "speed.png")
    assert_png(out / "memory.png")
    assert_report(out)


@pytest.mark.parametrize("peer", ts.PEERS)
def test_peer_is_measured_or_skipped_with_a_note(result, peer):
    summary, out = result
    measured = any(r["implementation"] == peer for r in summary["rows"])
    if importlib.util.find_spec(peers.IMPLEMENTATIONS[peer].module) is None:
        assert not measured
        assert any(peer in note and "not installed" in note for note in summary["notes"])
        assert "not installed" in (out / "README.md").read_text()
    else:
        assert measured


def _gradients(network: str, implementation: str) -> tuple[float, list[torch.Tensor]]:
    """Loss and parameter gradients of one training step of a freshly built network."""
    torch.manual_seed(0)
    shape = ts.TINY_SHAPES[network]
    model, forward, reset = ts.build(network, implementation, shape)
    x = (torch.rand(2, 6, *shape) < 0.3).float()
    reset()
    loss = F.cross_entropy(forward(x).mean(1), torch.tensor([0, 1]))
    loss.backward()
    return loss.item(), [p.grad.clone() for p in model.parameters() if p.requires_grad]


@pytest.mark.parametrize("network", ["shd_mlp", "dvs_conv"])
def test_exodus_and_bptt_networks_take_the_same_step(network):
    """The timed step is the same computation in both: equal loss and gradients."""
    exodus_loss, exodus = _gradients(network, "exodus")
    bptt_loss, bptt = _gradients(network, "bptt")
    assert exodus_loss == pytest.approx(bptt_loss, rel=1e-6)
    assert len(exodus) == len(bptt)
    for ours, reference in zip(exodus, bptt):
        torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-6)
    assert any(g.abs().sum() > 0 for g in exodus)


@pytest.mark.parametrize("network", ["shd_mlp", "dvs_conv"])
def test_sinabs_times_the_same_network(network):
    """sinabs' version is our network with its layers: same parameters, loss and gradients."""
    pytest.importorskip("sinabs.layers")
    exodus_loss, exodus = _gradients(network, "exodus")
    sinabs_loss, sinabs = _gradients(network, "sinabs")
    assert [g.shape for g in sinabs] == [g.shape for g in exodus]
    assert sinabs_loss == pytest.approx(exodus_loss, rel=1e-5)
    for theirs, ours in zip(sinabs, exodus):
        torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("implementation", ts.OURS + ts.PEERS)
@pytest.mark.parametrize("network", ["shd_mlp", "dvs_conv"])
def test_every_implementation_computes_the_reference_step(network, implementation):
    """Equivalence before speed: same spikes and input gradient as the float64 reference."""
    if peers.unavailable(implementation):
        pytest.skip(peers.unavailable(implementation))
    figures, _ = ts.equivalence(network, implementation, "cpu", 2, 6, ts.TINY_SHAPES[network])
    assert figures["spike mismatch"] == 0
    assert figures["input-grad error"] < 1e-5


def test_equivalence_reports_a_different_computation(monkeypatch):
    """A network whose neurons fire at half the threshold is caught by both figures."""
    build = ts.build

    def wrong(network, implementation, input_shape):
        model, forward, reset = build(network, implementation, input_shape)
        with torch.no_grad():
            for layer in model.modules():
                if isinstance(layer, enn.LIF):
                    layer.spike_threshold.fill_(0.5)
        return model, forward, reset

    monkeypatch.setattr(ts, "build", wrong)
    shape = ts.TINY_SHAPES["shd_mlp"]
    figures, reference = ts.equivalence("shd_mlp", "exodus", "cpu", 4, 16, shape)
    assert sum(s.sum() for s in reference["spikes"]) > 0  # the reference does spike
    assert figures["spike mismatch"] > 0
    assert figures["input-grad error"] > 1e-3


@pytest.mark.slow
def test_peak_memory_is_measured_in_a_child_process():
    peak = isolated.run(ts.peak_mb, network="shd_mlp", implementation="exodus", device="cpu",
                        batch=2, time=8, tiny=True, threads=1)
    assert peak > 0


def test_cuda_without_a_gpu_exits_with_one_line(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    with pytest.raises(SystemExit) as exit_info:
        ts.main(["--devices", "cuda", "--out", str(tmp_path / "out")])
    message = str(exit_info.value.code)
    assert (
        message.startswith(
            "python -m experiments.training_speed: error: --devices cuda: no CUDA GPU is visible"
        )
        and "\n" not in message
    )
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_tiny_run_prints_that_it_is_a_smoke_run(capsys, tmp_path):
    ts.main(
        [
            "--tiny",
            "--in-process",
            "--threads",
            "1",
            "--networks",
            "shd_mlp",
            "--no-peers",
            "--out",
            str(tmp_path),
        ]
    )
    printed = capsys.readouterr().out
    assert printed.startswith("Smoke run (--tiny)") and "| network |" in printed


def test_missing_and_failing_peers_become_notes_under_the_table(tmp_path, monkeypatch):
    """One peer not installed, one failing: both named below the table that reaches the docs,
    the others measured."""
    unavailable, build = peers.unavailable, ts.build

    def fake_unavailable(name):
        return "sinabs is not installed (test)" if name == "sinabs" else unavailable(name)

    def failing_build(network, implementation, input_shape):
        if implementation == "snntorch":
            raise OSError("libfoo.so missing (test)")
        return build(network, implementation, input_shape)

    monkeypatch.setattr(peers, "unavailable", fake_unavailable)
    monkeypatch.setattr(ts, "build", failing_build)
    summary = ts.main(["--tiny", "--in-process", "--threads", "1", "--networks", "shd_mlp",
                       "--out", str(tmp_path)])
    rows = assert_readme_table(tmp_path, ts, "speed_readme")
    notes = (tmp_path / "speed_readme.md").read_text().split("\n\n")[1].splitlines()
    assert "- skipped sinabs is not installed (test)" in notes
    where = f"{ts.NETWORK_NAMES['shd_mlp']}, cpu, batch 2, T = 8"
    assert (f"- snntorch left out of {where}: its equivalence check failed: "
            "OSError: libfoo.so missing (test)") in notes
    assert not any("| sinabs |" in row or "| snntorch |" in row for row in rows)
    measured = {row["implementation"] for row in summary["rows"]}
    expected = {n for n in ts.OURS + ts.PEERS if unavailable(n) is None} - {"sinabs", "snntorch"}
    assert measured == expected


def test_the_table_states_the_spike_rate_the_equivalence_columns_see(tmp_path):
    summary = ts.main(["--tiny", "--in-process", "--threads", "1", "--networks", "shd_mlp",
                       "--no-peers", "--out", str(tmp_path)])
    notes = (tmp_path / "speed_readme.md").read_text().split("\n\n")[1].splitlines()
    rates = {r["time"]: r["spike rate"] for r in summary["rows"]}
    name = ts.NETWORK_NAMES["shd_mlp"]
    assert notes == ["- spike rate (LIF layers, reference): " + ", ".join(
        f"{name} T = {time}: {rate:.2%}" for time, rate in rates.items())]
    figures, reference = ts.equivalence("shd_mlp", "exodus", "cpu", 2, 8, ts.TINY_SHAPES["shd_mlp"])
    spikes = torch.cat([s.flatten() for s in reference["spikes"]])
    assert figures["spike rate"] == pytest.approx(spikes.mean().item()) == rates[8]
