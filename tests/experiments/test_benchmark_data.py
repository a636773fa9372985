"""The data-loading benchmark at tiny scale: every path of every recorded dataset is timed,
and it cleans up after itself."""

from __future__ import annotations

import importlib.util

import pytest


@pytest.mark.slow  # fabricates all four datasets (~10 s)
def test_every_path_is_timed_and_the_work_folder_is_cleaned(tmp_path, capsys):
    from experiments import benchmark_data

    work_dir = tmp_path / "work"
    rows = benchmark_data.main([
        "--num-samples", "20", "--datasets", "SHD", "NMNIST", "--workers", "0",
        "--repeats", "1", "--work-dir", str(work_dir),
    ])  # fmt: skip
    paths = ["tonic", "cache", "stream", "events", "events+device"]
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
