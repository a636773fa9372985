"""The experiments' shared options: flags as the README writes them, checks before any work."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from experiments import arguments


def test_shared_options_and_their_defaults():
    parser = arguments.experiment_parser("demo", "Demo.")
    defaults = parser.parse_args([])
    assert (defaults.tiny, defaults.out, defaults.seed, defaults.wandb, defaults.threads) == (
        False,
        Path("results") / "demo",
        0,
        False,
        0,
    )
    given = parser.parse_args(
        ["--tiny", "--out", "x/y", "--seed", "3", "--wandb", "--threads", "2"]
    )
    assert (given.tiny, given.out, given.seed, given.wandb, given.threads) == (
        True,
        Path("x/y"),
        3,
        True,
        2,
    )


def test_a_bad_value_names_its_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        arguments.experiment_parser("demo", "Demo.").parse_args(["--threads", "many"])
    assert exit_info.value.code == 2
    assert "threads" in capsys.readouterr().err


def test_wandb_without_wandb_stops_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    monkeypatch.setattr(
        arguments.importlib.util, "find_spec", lambda name: None if name == "wandb" else object()
    )
    options = arguments.experiment_parser("demo", "Demo.").parse_args(
        ["--wandb", "--out", str(tmp_path / "out")]
    )
    with pytest.raises(SystemExit, match="--wandb needs wandb: pip install wandb"):
        arguments.setup(options)
    assert not (tmp_path / "out").exists()
