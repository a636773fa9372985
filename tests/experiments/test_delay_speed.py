"""DelayedLinear speed comparison at tiny scale: every method agrees with the layer, is timed."""

from __future__ import annotations

from .conftest import assert_report, assert_table


def test_every_method_matches_the_layer_and_is_timed(tmp_path):
    from experiments import delay_speed

    summary = delay_speed.main(["--tiny", "--out", str(tmp_path)])
    rows = assert_table(tmp_path / "speed", min_rows=len(delay_speed.variants()))
    assert {r["delays"] for r in rows} == {"rounded", "Gaussian, sigma 3"}
    assert all(float(r["max diff (rel.)"]) < 1e-5 for r in rows)
    assert all(float(r["fwd ms"]) > 0 and float(r["fwd+bwd ms"]) > 0 for r in rows)
    assert len(summary["rows"]) == len(rows)
    assert_report(tmp_path)
