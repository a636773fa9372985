"""The ops benchmark script runs and prints a well-formed table (no timing is asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "benchmark_ops.py"


@pytest.mark.slow
def test_benchmark_ops_quick_mode_prints_table():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--devices", "cpu",
                           "--repeats", "2"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    rows = [line for line in lines if line.startswith("| (") and "B, T" not in line]
    assert len(rows) == 5  # one shape, again with trainable α and with α, θ; a two-point T sweep
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        ext_ms, ref_ms, rate = float(cells[1]), float(cells[2]), float(cells[6])
        assert ext_ms > 0 and ref_ms > 0 and 0 < rate < 1
    assert "trainable α |" in proc.stdout and "trainable α, θ |" in proc.stdout
    assert "T 50 → 150: × " in proc.stdout
