"""Claim 1 at tiny scale: EXODUS = BPTT (float32 and float64) in every case; SLAYER differs."""

from __future__ import annotations

import pytest

from experiments import gradient_equivalence as ge

from .conftest import assert_png, assert_readme_table, assert_report, assert_table


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("gradient_equivalence")
    return ge.main(["--tiny", "--threads", "1", "--out", str(out)]), out


def test_outputs_are_written_and_well_formed(result):
    summary, out = result
    rows = assert_table(out / "errors", min_rows=len(ge.CASES) * 2 * 2)
    assert {r["dtype"] for r in rows} == {"float32", "float64"}
    assert {r["case"] for r in rows} == {case.name for case in ge.CASES}
    assert len(assert_table(out / "summary")) == len(ge.CASES) * 2
    assert_png(out / "scatter.png")
    assert_report(out)
    # The README's table: one row per case, both dtypes side by side, provenance below.
    lines = assert_readme_table(out, ge, "cases")
    assert [line.split(" | ")[0] for line in lines] == [f"| {case.name}" for case in ge.CASES]


def cases():
    return [pytest.param(case.name, id=case.name.replace(" ", "-")) for case in ge.CASES]


@pytest.mark.parametrize("name", cases())
def test_exodus_equals_bptt(result, name):
    for row in result[0]["summary"]:
        if row["case"] == name:
            # Every spiking layer fires: otherwise equal gradients would prove nothing.
            assert all(float(rate) > 0.02 for rate in row["spike_rates"].split("/")), row
            assert row["forward_max_diff"] == 0.0, row
            assert row["exodus_max_rel_error"] <= ge.TOLERANCE[row["dtype"]], row


@pytest.mark.parametrize("name", [case.name for case in ge.CASES])
def test_slayer_differs_from_bptt(result, name):
    for row in result[0]["summary"]:
        if row["case"] == name:
            assert row["slayer_max_rel_error"] > ge.SLAYER_DIFFERS, row
