"""Claim 2 at tiny scale: EXODUS's layer norms equal BPTT's; SLAYER's grow with depth and T."""

from __future__ import annotations

import pytest

from experiments import gradient_stability as gs

from .conftest import assert_png, assert_readme_table, assert_report, assert_table


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("gradient_stability")
    return gs.main(["--tiny", "--threads", "1", "--out", str(out)]), out


def test_outputs_are_written_and_well_formed(result):
    _, out = result
    rows = assert_table(out / "norms")
    settings = gs.TINY
    expected = 2 * settings.seeds * (sum(settings.depths)
                                     + settings.fixed_depth * len(settings.times))
    assert len(rows) == expected
    assert len(assert_table(out / "depth")) == 2 * len(settings.depths)
    assert len(assert_table(out / "time")) == 2 * len(settings.times)
    for name in ("depth", "layers", "time"):
        assert_png(out / f"{name}.png")
    assert_report(out)
    # The README's tables: one row per (neuron, depth) and per (neuron, T).
    assert len(assert_readme_table(out, gs, "depth_sweep")) == 2 * len(settings.depths)
    assert len(assert_readme_table(out, gs, "time_sweep")) == 2 * len(settings.times)


def test_exodus_norms_equal_bptt_in_every_layer(result):
    for row in result[0]["rows"]:
        assert row["spike_rate"] > 0.02, row
        assert row["exodus/bptt"] == pytest.approx(1.0, abs=1e-4), row


def test_slayer_ratio_grows_with_depth_and_time(result):
    for key in ("depth", "time"):
        for neuron in ("lif", "iaf"):
            group = sorted((s for s in result[0][key] if s["neuron"] == neuron),
                           key=lambda s: s[key])
            ratios = [s["slayer/bptt (first)"] for s in group]
            assert ratios[0] > 1.1, (key, neuron, ratios)
            assert ratios[-1] > ratios[0], (key, neuron, ratios)
