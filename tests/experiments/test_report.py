"""The experiments' report helper: tables, README, W&B, printed summary; no global state."""

from __future__ import annotations

import subprocess
import sys
import types
from argparse import Namespace
from pathlib import Path

import pytest

from experiments import report

from .conftest import assert_png, assert_report

REPO = Path(__file__).resolve().parents[2]


def test_format_value():
    assert [report.format_value(v) for v in (0.0, 1.5e-7, 0.1234, 12.0, 1234.56, 2.5e6)] == [
        "0",
        "1.50e-07",
        "0.123",
        "12",
        "1235",
        "2.50e+06",
    ]
    assert [report.format_value(v) for v in (float("nan"), None, True, 3, (1, 2))] == [
        "nan",
        "",
        "True",
        "3",
        "(1, 2)",
    ]


def test_write_table_round_trip(tmp_path):
    rows = [{"name": "a", "value": 1.5e-7, "ok": True}, {"name": "b", "value": 12.0, "ok": False}]
    text = report.write_table(rows, tmp_path / "table")
    assert text.splitlines()[0] == "| name | value | ok |"
    assert "1.50e-07" in text and "| b | 12 | False |" in text
    assert (tmp_path / "table.md").read_text() == text
    back = report.read_csv(tmp_path / "table.csv")
    assert [float(r["value"]) for r in back] == [1.5e-7, 12.0]


def test_markdown_table_leaves_missing_cells_empty():
    text = report.markdown_table([{"a": 1}, {"a": 2, "b": "x"}], ["a", "b"])
    assert text == "| a | b |\n|---|---|\n| 1 |  |\n| 2 | x |\n"


def _figure(path: Path) -> Path:
    figure = report.figure(figsize=(3, 2))
    axis = figure.subplots()
    axis.plot(range(100), [i**0.5 for i in range(100)], label="sqrt")
    axis.legend()
    return report.save_figure(figure, path)


class FakeWandb(types.ModuleType):
    """Records what report() sends to W&B."""

    def __init__(self) -> None:
        super().__init__("wandb")
        self.logged: dict = {}
        self.init_kwargs: dict = {}
        self.finished = False

    def init(self, **kwargs):
        self.init_kwargs = kwargs
        return self

    def log(self, values: dict) -> None:
        self.logged.update(values)

    def finish(self) -> None:
        self.finished = True

    def Table(self, columns, data):  # noqa: N802 (wandb's name)
        return ("table", columns, data)

    def Image(self, path):  # noqa: N802 (wandb's name)
        return ("image", path)


@pytest.mark.parametrize("tiny", [True, False])
def test_report_writes_readme_logs_and_prints(tmp_path, capsys, monkeypatch, tiny):
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    options = Namespace(out=tmp_path, tiny=tiny, wandb=True, seed=3)
    rows = [{"case": "a", "error": 0.5}]
    figure = _figure(tmp_path / "curve.png")
    readme = report.report(
        "demo",
        options,
        "Demo title",
        [("Settings", "seed 3\n"), ("Results", "| x |\n")],
        "the summary",
        figures=[figure],
        tables={"rows": rows},
    )
    assert readme == tmp_path / "README.md"
    assert_png(figure)
    assert_report(tmp_path, smoke=tiny)  # the smoke note exactly when tiny, every PNG linked
    text = readme.read_text()
    assert text.startswith("# Demo title\n")
    assert (
        text.index("## Settings\n\nseed 3")
        < text.index("## Results")
        < text.index("![curve](curve.png)")
    )
    printed = capsys.readouterr().out
    assert printed == (report.SMOKE_NOTE + "\n" if tiny else "") + "the summary\n"
    assert fake.init_kwargs["name"] == "demo" and fake.init_kwargs["mode"] == "disabled"
    assert fake.init_kwargs["config"] == {
        "out": str(tmp_path),
        "tiny": tiny,
        "wandb": True,
        "seed": 3,
    }
    assert fake.logged == {
        "demo/rows": ("table", ["case", "error"], [["a", 0.5]]),
        "demo/curve": ("image", str(figure)),
    }
    assert fake.finished


def test_report_without_wandb_does_not_import_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # importing it would raise
    options = Namespace(out=tmp_path, tiny=False, wandb=False)
    report.report("demo", options, "Demo", [("Results", "nothing\n")], "done")
    assert capsys.readouterr().out == "done\n"
    assert "## Results\n\nnothing" in (tmp_path / "README.md").read_text()


@pytest.mark.slow
def test_experiments_leave_matplotlib_backend_and_pyplot_alone(tmp_path):
    """Importing the experiments and drawing their figures keeps the user's backend and
    pyplot's figures (a matplotlib.use("Agg") at import used to switch the backend)."""
    code = f"""
from pathlib import Path
import matplotlib
matplotlib.use("svg")
import matplotlib.pyplot as plt
plt.figure()
from experiments import common, gradient_equivalence, gradient_stability, report, sinabs_speed
from experiments import training_comparison, training_speed
rows = [dict(network="shd_mlp", device="cpu", batch=2, time=t, implementation="exodus",
             ms_per_step=float(t)) for t in (8, 16)]
training_speed.plot(rows, "ms_per_step", "ms", Path({str(tmp_path)!r}) / "s.png")
assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
assert plt.get_fignums() == [1], plt.get_fignums()
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert_png(tmp_path / "s.png")
