"""The extension's first build says what it builds, that it happens once, and how long it took;
a cached build is silent. (The compiler is replaced by a stub that writes the library file.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from exodus_lightning.ops import _extension


@pytest.fixture
def stub_compiler(tmp_path, monkeypatch):
    from torch.utils import cpp_extension

    monkeypatch.setenv("EXODUS_LIGHTNING_CACHE", str(tmp_path))
    calls = []

    def compile_library(name: str, build_directory: str, **kwargs) -> None:
        calls.append(name)
        (Path(build_directory) / f"{name}.so").write_bytes(b"")

    monkeypatch.setattr(cpp_extension, "load", compile_library)
    return calls


def test_first_build_is_announced_and_a_cached_one_is_silent(stub_compiler, capsys):
    path = _extension._build("cpu", verbose=False)
    error = capsys.readouterr().err
    assert re.search(r"Building the exodus_lightning CPU extension \(once per version, 1-3 min\) "
                     r"in \S+ \.\.\.\nBuilt the exodus_lightning CPU extension in \d+ s\.\n$",
                     error), error
    assert str(path.parent) in error
    assert _extension._build("cpu", verbose=False) == path
    assert capsys.readouterr().err == ""  # cached: nothing to say
    assert len(stub_compiler) == 2  # torch's loader is still called (it loads the library)
