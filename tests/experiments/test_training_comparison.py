"""Training comparison at tiny scale, through the CLI: EXODUS trains exactly like BPTT, SLAYER
takes a different path, and curves, tables and plots are written."""

from __future__ import annotations

import importlib.util
import math

import pytest

from experiments import training_comparison as tc

from .conftest import assert_png, assert_readme_table, assert_report, assert_table

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("exodus_lightning.cli") is None,
                       reason="exodus_lightning.cli does not exist yet"),
]


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("training_comparison")
    return tc.main(["--tiny", "--threads", "1", "--out", str(out)]), out


def test_outputs_are_written_and_well_formed(result):
    summary, out = result
    curves = assert_table(out / "curves", min_rows=6)
    assert {r["variant"] for r in curves} == {"bptt", "exodus", "slayer"}
    for row in curves:
        assert 0.0 <= float(row["val_acc"]) <= 1.0 and float(row["epoch_s"]) > 0, row
    assert len(assert_table(out / "summary")) == 3
    assert_table(out / "runs", min_rows=3)
    for variant in ("bptt", "exodus", "slayer"):
        run = out / "runs" / variant / "seed0"
        assert (run / "config.yaml").is_file() and (run / "metrics.csv").is_file()
        config = (run / "config.yaml").read_text()
        assert f"gradient: {tc.common.VARIANTS[variant]['gradient']}" in config
        assert f"backend: {tc.common.VARIANTS[variant]['backend']}" in config
    assert_png(out / "curves.png")
    assert_png(out / "time.png")
    assert_report(out)
    lines = assert_readme_table(out, tc, "gradients")
    assert [line.split(" | ")[0] for line in lines] == ["| BPTT", "| EXODUS", "| SLAYER"]
    assert lines[0].endswith(" | 1.00× |")


def _losses(summary: dict, variant: str) -> list[float]:
    rows = sorted((r for r in summary["curves"] if r["variant"] == variant),
                  key=lambda r: r["epoch"])
    return [r["train_loss"] for r in rows]


def test_exodus_trains_like_bptt_and_slayer_does_not(result):
    summary, _ = result
    bptt, exodus, slayer = (_losses(summary, v) for v in ("bptt", "exodus", "slayer"))
    assert len(bptt) == len(exodus) == len(slayer) == 2
    assert all(math.isfinite(loss) for loss in bptt + exodus + slayer)
    assert exodus == pytest.approx(bptt, rel=1e-4)
    assert max(abs(s - b) for s, b in zip(slayer, bptt)) > 1e-3
