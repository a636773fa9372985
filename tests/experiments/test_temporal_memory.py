"""The temporal-memory experiment runs end to end (--tiny) and writes its table and plot."""

from __future__ import annotations

import pytest

from experiments import temporal_memory

from .conftest import assert_readme_table


@pytest.mark.slow
def test_tiny_run_writes_table_curves_and_plot(tmp_path):
    temporal_memory.main(["--tiny", "--out", str(tmp_path)])
    summary = (tmp_path / "summary.md").read_text()
    for variant in temporal_memory.VARIANTS:
        assert f"| {variant} |" in summary
    assert (tmp_path / "accuracy.csv").read_text().count("\n") == 1 + 2 * len(
        temporal_memory.VARIANTS)  # header + 2 epochs per variant
    assert (tmp_path / "accuracy.png").stat().st_size > 0
    lines = assert_readme_table(tmp_path, temporal_memory, "network")
    span = temporal_memory.delay_span(10)  # --tiny's gap
    assert [line.split(" | ")[0] for line in lines] == [
        "| " + temporal_memory.README_NAMES[variant].format(span=span)
        for variant in temporal_memory.VARIANTS]
