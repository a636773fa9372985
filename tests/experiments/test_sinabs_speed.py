"""sinabs comparison at tiny scale: every case agrees with sinabs and is timed."""

from __future__ import annotations

import pytest

from .conftest import assert_readme_table, assert_report, assert_table

pytest.importorskip("sinabs.layers")


@pytest.mark.slow  # each allocator mode in a process of its own: ~10 s
def test_every_case_matches_sinabs_and_is_timed(tmp_path):
    from experiments import sinabs_speed

    summary = sinabs_speed.main(["--tiny", "--out", str(tmp_path)])
    rows = assert_table(tmp_path / "speed", min_rows=2 * len(sinabs_speed.cases(True)))
    assert [r["allocator"] for r in rows] == [
        mode for mode in sinabs_speed.ALLOCATORS for _ in sinabs_speed.cases(True)]
    assert all(int(r["spike mismatches"]) == 0 for r in rows)
    assert all(float(r["max grad diff (rel.)"]) < 1e-4 for r in rows)
    assert all(float(r["ours fwd+bwd ms"]) > 0 for r in rows)
    assert len(summary["rows"]) == len(rows)
    assert_report(tmp_path)
    # The README's table: one row per case, "default / reuse" in every cell.
    lines = assert_readme_table(tmp_path, sinabs_speed, "layers")
    assert len(lines) == len(sinabs_speed.cases(True))
    assert all(cell.count(" / ") == 1 for line in lines for cell in line.split(" | ")[1:])
    assert "glibc allocator: default / reuse" in (tmp_path / "layers.md").read_text()
