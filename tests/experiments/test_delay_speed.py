"""DelayedLinear speed comparison at tiny scale: every method agrees with the layer, is timed."""

from __future__ import annotations

from experiments import report

from .conftest import assert_readme_table, assert_report


def test_every_method_matches_the_layer_and_is_timed(tmp_path):
    from experiments import delay_speed

    summary = delay_speed.main(["--tiny", "--out", str(tmp_path)])
    assert len(assert_readme_table(tmp_path, delay_speed, "speed")) == len(delay_speed.variants())
    rows = report.read_csv(tmp_path / "speed.csv")  # every column, full precision
    assert {r["delays"] for r in rows} == {"rounded", "Gaussian, σ = 3"}
    assert all(float(r["max diff (rel.)"]) < 1e-5 for r in rows)
    assert all(float(r["fwd ms"]) > 0 and float(r["fwd+bwd ms"]) > 0 for r in rows)
    assert len(summary["rows"]) == len(rows)
    assert_report(tmp_path)
