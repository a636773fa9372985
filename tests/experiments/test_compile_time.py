"""The torch.compile experiment at tiny scale: every path compiles, spikes and is measured."""

from __future__ import annotations

import pytest

from .conftest import assert_readme_table, assert_report, assert_table


@pytest.mark.slow
def test_every_path_compiles_and_is_measured(tmp_path):
    from experiments import compile_time

    summary = compile_time.main(["--tiny", "--repeats", "1", "--out", str(tmp_path)])
    rows = assert_table(tmp_path / "compile", min_rows=len(compile_time.PATHS))
    assert [r["path"] for r in rows] == list(compile_time.PATHS)
    assert all(float(r["spikes per neuron and step"]) > 0 for r in rows)
    assert all(float(r["first s"]) > 0 and float(r["compiled ms"]) > 0
               and float(r["eager ms"]) > 0 for r in rows)
    assert len(summary["rows"]) == len(rows)
    assert_report(tmp_path)
    lines = assert_readme_table(tmp_path, compile_time, "paths")
    assert len(lines) == len(rows) and lines[0].startswith("| op | (2, 12, 8) | aot_eager | ")
