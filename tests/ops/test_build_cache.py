"""The build leaves the process's environment as it was, prunes stale cache folders, and its
entry point says that it builds. (The compiler is replaced by a stub that writes the library.)"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
import torch
from torch.utils import cpp_extension

from exodus_lightning import ops
from exodus_lightning.ops import _extension

DAY = 86400


@pytest.fixture
def stub_compiler(tmp_path, monkeypatch):
    """An empty cache in tmp_path; cpp_extension.load writes an empty library and records the
    environment it ran in."""
    monkeypatch.setenv("EXODUS_LIGHTNING_CACHE", str(tmp_path))
    seen = []

    def compile_library(name: str, build_directory: str, **kwargs) -> None:
        seen.append(
            {
                "CUDA_HOME": os.environ.get("CUDA_HOME"),
                "TORCH_CUDA_ARCH_LIST": os.environ.get("TORCH_CUDA_ARCH_LIST"),
                "cpp_extension.CUDA_HOME": cpp_extension.CUDA_HOME,
            }
        )
        (Path(build_directory) / f"{name}.so").write_bytes(b"")

    monkeypatch.setattr(cpp_extension, "load", compile_library)
    return seen


def test_build_environment_is_restored_also_after_an_error(monkeypatch):
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "7.0")
    monkeypatch.delenv("CUDA_HOME", raising=False)
    home_before = cpp_extension.CUDA_HOME
    with pytest.raises(RuntimeError, match="compiler failed"):
        with _extension.build_environment(
            {"TORCH_CUDA_ARCH_LIST": "9.0", "CUDA_HOME": "/x"}, cuda_home="/x"
        ):
            assert os.environ["TORCH_CUDA_ARCH_LIST"] == "9.0"
            assert os.environ["CUDA_HOME"] == cpp_extension.CUDA_HOME == "/x"
            raise RuntimeError("compiler failed")
    assert os.environ["TORCH_CUDA_ARCH_LIST"] == "7.0" and "CUDA_HOME" not in os.environ
    assert cpp_extension.CUDA_HOME == home_before


def test_cuda_build_sets_its_toolkit_and_architectures_only_while_it_runs(
    stub_compiler, monkeypatch
):
    monkeypatch.setattr(_extension, "cuda_home", lambda: "/opt/fake-cuda")
    monkeypatch.setattr(_extension, "cuda_arch_list", lambda: "8.0")
    monkeypatch.setattr(torch.version, "cuda", torch.version.cuda or "12.4")
    monkeypatch.delenv("CUDA_HOME", raising=False)
    monkeypatch.delenv("TORCH_CUDA_ARCH_LIST", raising=False)
    environ_before, home_before = dict(os.environ), cpp_extension.CUDA_HOME
    _extension._build("cuda", verbose=False)
    assert stub_compiler == [
        {
            "CUDA_HOME": "/opt/fake-cuda",
            "TORCH_CUDA_ARCH_LIST": "8.0",
            "cpp_extension.CUDA_HOME": "/opt/fake-cuda",
        }
    ]
    assert dict(os.environ) == environ_before and cpp_extension.CUDA_HOME == home_before
    _extension._build("cpu", verbose=False)
    assert dict(os.environ) == environ_before and cpp_extension.CUDA_HOME == home_before


def make_folder(root: Path, name: str, age_days: float) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "library.so").write_bytes(b"")
    then = time.time() - age_days * DAY
    os.utime(folder, (then, then))
    return folder


def test_only_stale_folders_of_the_same_kind_are_pruned(tmp_path):
    keep = make_folder(tmp_path, "cuda-" + "a" * 16, 30)
    stale = make_folder(tmp_path, "cuda-" + "b" * 16, _extension.STALE_AFTER_DAYS + 1)
    others = [
        make_folder(tmp_path, "cuda-" + "c" * 16, _extension.STALE_AFTER_DAYS - 1),  # in use
        make_folder(tmp_path, "cuda_emulation-" + "d" * 16, 30),  # another kind
        make_folder(tmp_path, "cpu-" + "e" * 16, 30),
        make_folder(tmp_path, "cuda-notes", 30),  # not a build folder
    ]
    assert _extension.prune_stale_builds("cuda", keep=keep) == [stale]
    assert not stale.exists() and keep.exists() and all(folder.exists() for folder in others)


def test_a_new_build_prunes_and_says_so_and_every_load_marks_its_folder(stub_compiler, capsys):
    old = make_folder(_extension.cache_root(), "cpu-" + "0" * 16, 10)
    path = _extension._build("cpu", verbose=False)
    assert not old.exists()
    assert re.search(
        r"Built the exodus_lightning CPU extension in \d+ s\. Removed 1 CPU "
        r"build\(s\) unused for 7 days\.\n$",
        capsys.readouterr().err,
    )
    then = time.time() - 3 * DAY
    os.utime(path.parent, (then, then))
    _extension._build("cpu", verbose=False)  # cached: loaded, marked used, nothing pruned
    assert time.time() - path.parent.stat().st_mtime < DAY
    assert capsys.readouterr().err == ""


def test_is_available_is_the_deprecated_name_of_try_build_and_load(monkeypatch):
    calls = []
    monkeypatch.setattr(_extension, "load", lambda kind: calls.append(kind))
    assert ops.try_build_and_load("cpu") and not ops.try_build_and_load("meta")
    with pytest.warns(DeprecationWarning, match="builds the kernels .*ops.try_build_and_load"):
        assert ops.is_available("cpu")
    assert calls == ["cpu", "cpu"]
