"""The ops benchmark runs and writes its README tables with provenance (no timing asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from experiments import benchmark_ops, report

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "benchmark_ops.py"


@pytest.mark.parametrize("neuron", ["lif", "alif", "adlif"])
def test_every_variant_of_a_case_is_timed_in_one_process(neuron):
    case = dict(device="cpu", batch=2, time=5, features=8, trainable="", neuron=neuron)
    variants = ["extension", "reference", "custom", "uncompiled"]
    result = benchmark_ops.time_case(variants, rounds=2, **case)
    assert set(result["samples"]) == set(variants)
    assert all(len(s) == 2 and min(s) > 0 for s in result["samples"].values())
    assert 0 <= result["rate"] <= 1


@pytest.mark.slow
def test_benchmark_ops_writes_the_readme_table(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny", "--devices", "cpu", "--repeats", "2",
         "--tables", "custom_surrogate", "--threads", "1", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "custom_surrogate.md").read_text()
    columns = benchmark_ops.README_TABLES["custom_surrogate"]
    assert text.startswith("| " + " | ".join(columns) + " |\n")
    assert "_Measured " in text
    rows = report.read_csv(tmp_path / "custom_surrogate.csv")
    # One thread count (--threads 1; the full table adds the machine's): each is 5 processes.
    assert [(r["glibc allocator"], r["torch threads"]) for r in rows] == [
        ("default", "1"), ("reuse", "1")]
    for row in rows:
        peaks = [float(part) for part in row["peak MB, fused / custom / uncompiled"].split(" / ")]
        assert len(peaks) == 3 and min(peaks) > 0
        assert row["custom / fused"].endswith("×") and row["uncompiled / fused"].endswith("×")
