"""fabricate's command line: tiny fake datasets written from a shell, read by the DataModules."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from exodus_lightning.data import NMNISTDataModule, SHDDataModule
from exodus_lightning.data.fabricate import main

ROOT = Path(__file__).resolve().parents[2]


def test_python_dash_m_prints_its_usage() -> None:
    """It used to run nothing and exit 0: `-m` must say how to use it."""
    # This checkout's package, not an installed one.
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "exodus_lightning.data.fabricate", "--help"],
        capture_output=True, text=True, env=env, check=True,
    )
    assert "DATASET" in result.stdout and "FOLDER" in result.stdout
    assert "nmnist, dvs_gesture, shd, ssc" in result.stdout


def test_writes_the_datasets_named_with_every_class(tmp_path: Path, capsys) -> None:
    main(["shd", "nmnist", str(tmp_path), "--seed", "3"])
    printed = capsys.readouterr().out
    assert f"--config configs/shd.yaml --data.init_args.data_dir {tmp_path}" in printed
    assert "--config configs/nmnist.yaml" in printed
    for module_class in (SHDDataModule, NMNISTDataModule):
        module = module_class(data_dir=tmp_path, download=False)
        module.setup("test")  # refuses a split that lacks a class
        assert len(module.test_dataset) >= module.num_classes
    assert not (tmp_path / "SSC").exists()


def test_unknown_dataset_is_refused_naming_the_choices(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["mnist", "somewhere"])
    assert "invalid choice: 'mnist'" in capsys.readouterr().err


def test_outside_the_checkout_the_printed_config_is_the_checkouts(tmp_path: Path, capsys,
                                                                  monkeypatch) -> None:
    """From an empty folder, `--config configs/shd.yaml` would not be found."""
    monkeypatch.chdir(tmp_path)
    main(["shd", "data"])
    printed = capsys.readouterr().out
    assert f"--config {ROOT / 'configs' / 'shd.yaml'} --data.init_args.data_dir data" in printed
