"""The GPU benchmark and the GPU check run their code paths on any machine."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from exodus_lightning.ops._extension import cache_root
from experiments import benchmark_gpu, report
from tests.helpers import run_if
from tests.ops.test_build import CI_CUDA_ARCHS

REPO = Path(__file__).resolve().parents[2]


def test_benchmark_gpu_smoke_run_on_cpu(tmp_path):
    result = benchmark_gpu.main(
        ["--device", "cpu", "--tiny", "--repeats", "1", "--json", str(tmp_path / "out.json"),
         "--out", str(tmp_path / "results")]
    )
    assert result["copy GB/s"] > 0
    passes = {(row["shape"], row["dtype"], row["pass"]) for row in result["ops"]}
    assert len(passes) == len(benchmark_gpu.TINY_OP_SHAPES) * 2 * 3
    assert all(row["ms"] > 0 and row["GB/s"] > 0 for row in result["ops"])
    rows = {row["implementation"]: row for row in result["network"]}
    assert rows["exodus-lightning"]["time vs ours"] == 1
    assert rows["BPTT loop (reference)"]["ms"] > 0
    for row in rows.values():  # each peer: a time, or a note saying why not
        assert "ms" in row or row["note"].startswith(("not installed", "failed"))
    (binning,) = result["binning"]  # the tiny case: counted in workers and on the device
    assert float(binning["workers: count on CPU, ms"]) > 0
    assert binning["bin_on_device / workers (device side)"].endswith("×")
    assert (tmp_path / "out.json").is_file()
    # --out: the tables with the provenance line below, and the figures.
    for stem in ("ops", "binning", "network"):
        table, line = (tmp_path / "results" / f"{stem}.md").read_text().rstrip().rsplit("\n\n", 1)
        assert table.startswith("| ") and line.startswith(report.SMOKE_TABLE_MARK), stem
    assert json.loads((tmp_path / "results" / "result.json").read_text())["ops"]


def test_benchmark_gpu_says_so_without_a_gpu(capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    with pytest.raises(SystemExit) as exit_info:
        benchmark_gpu.main([])
    assert exit_info.value.code == 2
    assert "no CUDA GPU is visible" in capsys.readouterr().err


# python -c WITHOUT SCRIPT ARGS...: runs SCRIPT as if the packages a bare GPU image lacks were
# not installed: a module entry of None makes importing them fail, and importlib's find_spec
# answer None, as for a missing package. (The other packages keep their paths: torch's include
# folders, part of the extension's build command, stay those of the suite's own builds, which
# are then reused, not rebuilt.)
WITHOUT = """
import runpy, sys
MISSING = {"jsonargparse", "tonic", "wandb", "lightning", "tqdm", "matplotlib", "yaml"}
for name in list(sys.modules):
    if name.split(".")[0] in MISSING:
        del sys.modules[name]
sys.modules.update(dict.fromkeys(MISSING))
for name in MISSING:
    try:
        __import__(name)
    except ImportError:
        continue
    raise SystemExit(f"{name} is still importable")
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _run_without(folder: Path, *args: str) -> subprocess.CompletedProcess:
    folder.mkdir()
    return subprocess.run(
        [sys.executable, "-c", WITHOUT, str(REPO / "experiments" / "benchmark_gpu.py"), *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=folder,
    )


@pytest.mark.slow
def test_benchmark_gpu_runs_without_jsonargparse_tonic_or_wandb(tmp_path):
    """gpu_check.sh runs benchmark_gpu.py on a bare GPU image: torch and pytest, little else."""
    out = tmp_path / "out.json"
    proc = _run_without(
        tmp_path / "run",
        "--device",
        "cpu",
        "--tiny",
        "--repeats",
        "1",
        "--only",
        "exodus-lightning",
        "--json",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "## One LIF layer, raw ops" in proc.stdout
    assert "## Events counted into frames" in proc.stdout  # data.device_binning without tonic
    assert "| exodus-lightning |" in proc.stdout
    assert json.loads(out.read_text())["network"][0]["time vs ours"] == 1
    # The fallback is argparse's parser: a bad value is still an error naming the flag.
    bad = _run_without(tmp_path / "bad", "--device", "tpu")
    assert bad.returncode == 2 and "--device" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.slow
@run_if(nvcc=True, cuda_torch=True)
def test_gpu_check_runs_and_degrades_clearly_without_a_gpu(tmp_path):
    """The script a lent GPU machine runs first: here it builds, runs the emulation, says why."""
    env = dict(
        os.environ,
        OUT=str(tmp_path),
        EXODUS_LIGHTNING_CACHE=str(cache_root()),
        TORCH_CUDA_ARCH_LIST=CI_CUDA_ARCHS,
        PYTHON=os.environ.get("PYTHON", "python"),
        # Without a GPU, the script's test files run in this suite already: two files check the
        # stages (one holds GPU tests only, the other passes here).
        # In one process each (GPU_CHECK_JOBS=0): worker processes would cost more than they save.
        **({} if torch.cuda.is_available() else {
            "GPU_CHECK_TESTS": "tests/ops/test_cuda.py tests/ops/test_leaky_parity.py",
            "GPU_CHECK_JOBS": "0"}),
    )
    proc = subprocess.run(
        ["bash", str(REPO / "experiments" / "gpu_check.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )
    summary = (tmp_path / "summary.txt").read_text()
    expected = 0 if torch.cuda.is_available() else 2
    assert proc.returncode == expected, proc.stdout + proc.stderr
    # The device tool returns at most 8 files: the logs and tables travel in one tarball.
    returned = {path.name for path in tmp_path.iterdir()}
    assert returned == {"summary.txt", "gpu_check.tgz"} | (
        {"gpu_benchmark.md"} if expected == 0 else set()), returned
    with tarfile.open(tmp_path / "gpu_check.tgz") as packed:
        members = set(packed.getnames())
    for stage in ("environment", "build_cpu", "build_cuda", "build_emulation", "tests_gpu",
                  "tests_other"):
        assert f"logs/{stage}.log" in members, (stage, members)
    for stage in ("build_cpu", "build_cuda", "build_emulation", "tests_gpu", "tests_other"):
        assert f"{stage}: ok" in summary, stage
    # the tally of the per-test lines, and pytest's own last line
    assert re.search(r"^tests_other: \d+ passed.* \| pytest: \d+ passed", summary, re.M), summary
    assert "FAILED" not in summary
    if expected == 2:
        assert "NO GPU" in proc.stdout and "benchmark: skipped, no GPU visible" in summary
    else:
        assert {"results/benchmark_gpu/ops.md", "results/benchmark_gpu/network.md"} <= members
