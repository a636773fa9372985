"""The data-loading benchmark at tiny scale: every path of every recorded dataset is timed,
and it cleans up after itself."""

from __future__ import annotations

import importlib.util

import pytest

from .conftest import assert_readme_table


@pytest.mark.slow  # fabricates all four datasets (~10 s)
def test_every_path_is_timed_and_the_work_folder_is_cleaned(tmp_path, capsys):
    from experiments import benchmark_data

    work_dir = tmp_path / "work"
    rows = benchmark_data.main([
        "--num-samples", "20", "--datasets", "SHD", "NMNIST", "--workers", "0",
        "--repeats", "1", "--work-dir", str(work_dir), "--out", str(tmp_path / "out"),
    ])  # fmt: skip
    paths = ["tonic", "cache", "stream", "stream, as loaded", "events", "events+device"]
    if importlib.util.find_spec("litdata") is None:
        paths = ["tonic", "cache"]
    assert [(row["dataset"], row["path"]) for row in rows] == [
        (name, path) for name in ("SHD", "NMNIST") for path in paths
    ]
    for row in rows:
        assert float(row["w=0 samples/s"]) > 0 and float(row["w=0 first batch ms"]) >= 0
    # Only the fabricated data is left: caches and prepared copies were removed.
    assert sorted(p.name for p in work_dir.iterdir()) == ["data"]
    assert "| SHD | stream |" in capsys.readouterr().out or "stream" not in paths
    # The README's table: one row per dataset, samples per second by path.
    lines = assert_readme_table(tmp_path / "out", benchmark_data, "loaders", smoke=False)
    assert [line.split(" | ")[0] for line in lines] == [
        "| SHD (T = 250, 100 channels)", "| N-MNIST (T = 100, 2 × 34 × 34)"]


def test_readme_cells_hold_one_rate_per_number_of_workers():
    from experiments import benchmark_data

    rows = [
        {"dataset": "SHD", "path": path, "w=0 samples/s": "40327", "w=2 samples/s": "3525",
         "sample (T, features)": "(250, 100)", "SNN fwd+bwd samples/s": "392"}
        for path in benchmark_data.PATHS
    ]  # fmt: skip
    (row,) = benchmark_data.readme_rows(rows, [0, 2], quick=False)
    assert row["dataset"] == "SHD (T = 250, 100 channels)" and row["workers"] == "0 / 2"
    assert row["stream: frames"] == row["stream: events, bin_on_device"] == "40,300 / 3,520"
    assert set(row) == set(benchmark_data.README_TABLES["loaders"])
