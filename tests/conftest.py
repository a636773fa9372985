"""Shared test configuration: deterministic seeds; a working folder for CLI runs."""

import sys

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """Run in tmp_path with W&B offline, so logs/ and wandb/ land there."""
    monkeypatch.chdir(tmp_path)
    # LightningCLI warns when both `args` and pytest's own sys.argv are present.
    monkeypatch.setattr(sys, "argv", ["exodus-lightning"])
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    return tmp_path
