"""sinabs comparison at tiny scale: every case agrees with sinabs and is timed."""

from __future__ import annotations

import pytest

from .conftest import assert_report, assert_table

pytest.importorskip("sinabs.layers")


def test_every_case_matches_sinabs_and_is_timed(tmp_path):
    from experiments import sinabs_speed

    summary = sinabs_speed.main(["--tiny", "--out", str(tmp_path)])
    rows = assert_table(tmp_path / "speed", min_rows=len(sinabs_speed.cases(True)))
    assert all(int(r["spike mismatches"]) == 0 for r in rows)
    assert all(float(r["max grad diff (rel.)"]) < 1e-4 for r in rows)
    assert all(float(r["ours fwd+bwd ms"]) > 0 for r in rows)
    assert len(summary["rows"]) == len(rows)
    assert_report(tmp_path)
