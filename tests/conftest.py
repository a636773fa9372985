"""Shared test configuration: deterministic seeds; a working folder for CLI runs; the order in
which the test files are handed to the xdist workers."""

import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

# The files that take longest on 2 cores (clean-clone CI, longest first: a long CLI file, the
# CUDA compile, fresh-process benchmarks, the CPU extension's first build). They are handed to
# the workers first, so both workers end together; xdist's own order (most tests first) left
# few-test files such as the CUDA compile for the end, run by one worker while the other idled.
# Every other file follows, most tests first. Only the order matters, so rough figures suffice.
LONGEST_FILES = (
    "tests/test_cli.py",
    "tests/ops/test_build.py",
    "tests/experiments/test_peers.py",
    "tests/ops/test_raw_ops.py",
    "tests/ops/test_lif_parity.py",
    "tests/experiments/test_memory.py",
    "tests/nn/test_devices.py",
    "tests/ops/test_custom_surrogate_blocks.py",
    "tests/ops/test_benchmark_script.py",
    "tests/experiments/test_benchmark_gpu.py",  # after the CUDA compile, whose build it loads
)


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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Order the files as LONGEST_FILES says (with --no-loadscope-reorder, xdist's loadfile
    scheduling hands files to the workers in this order); a file's own tests keep their order."""
    root = Path(config.rootpath)
    missing = [name for name in LONGEST_FILES if not (root / name).is_file()]
    if missing:
        raise pytest.UsageError(f"tests/conftest.py LONGEST_FILES names missing files: {missing}")
    files = [item.nodeid.split("::", 1)[0] for item in items]
    counts = Counter(files)
    rank = {name: index for index, name in enumerate(LONGEST_FILES)}
    keys = {name: (rank.get(name, len(rank)), -count) for name, count in counts.items()}
    order = {name: index for index, name in enumerate(sorted(counts, key=keys.__getitem__))}
    items.sort(key=lambda item: order[item.nodeid.split("::", 1)[0]])  # stable within a file
