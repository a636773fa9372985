"""The recurrent-layer memory experiment at tiny scale: every variant agrees and is measured."""

from __future__ import annotations

import pytest

from .conftest import assert_readme_table, assert_report, assert_table


@pytest.mark.slow
def test_every_variant_agrees_and_is_measured(tmp_path):
    from experiments import recurrent_memory

    summary = recurrent_memory.main(["--tiny", "--out", str(tmp_path)])
    cases, variants = recurrent_memory.cases(True), recurrent_memory.variants()
    rows = assert_table(tmp_path / "memory",
                        min_rows=sum(len(recurrent_memory.variants(case)) for case in cases))
    assert {r["variant"] for r in rows} == set(variants)
    assert {r["case"] for r in rows} == {case.name for case in cases}
    assert all(int(r["spike mismatches vs fused"]) == 0 for r in rows)
    assert all(float(r["max grad diff vs fused (rel.)"]) < 1e-4 for r in rows)
    assert all(float(r["saved for backward MiB"]) > 0 and float(r["fwd+bwd ms"]) > 0
               for r in rows)
    assert len(summary["rows"]) == len(rows)
    assert_report(tmp_path)
    lines = assert_readme_table(tmp_path, recurrent_memory, "variants")
    assert len(lines) == len(rows)
    assert lines[0].startswith(f"| {cases[0].name}, {cases[0].shape} | fused | ")
