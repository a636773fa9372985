"""Building the extension: cache keys, concurrent builds, the CUDA sources, errors, the wheel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pytest

from exodus_lightning.ops import _extension
from tests.helpers import run_if

REPO = Path(__file__).resolve().parents[2]
# The GPU architecture the suite compiles the CUDA kernels for when no GPU is visible: the one
# gpu_check.sh builds on the lent H100/H200 (sm_90), so a green suite says that build compiles.
# One architecture: each more adds ~130 s of CPU to the suite (users build for their own GPU).
CI_CUDA_ARCHS = "9.0"


def test_build_key_tracks_sources(tmp_path, monkeypatch):
    copy = tmp_path / "exodus"
    shutil.copytree(_extension.sources_dir(), copy)
    monkeypatch.setattr(_extension, "sources_dir", lambda: copy)
    before = _extension._build_key("cpu")
    assert before == _extension._build_key("cpu")
    assert before != _extension._build_key("cuda", "8.0")
    with open(copy / "lif_step.h", "a") as header:
        header.write("\n// changed\n")
    assert _extension._build_key("cpu") != before


def test_build_key_follows_only_its_own_flags(monkeypatch):
    """A change to the CUDA flags rebuilds the CUDA part, not the CPU part, and the reverse."""
    keys = {kind: _extension._build_key(kind) for kind in _extension.KINDS}
    monkeypatch.setattr(_extension, "_CUDA_FLAGS", [*_extension._CUDA_FLAGS, "-lineinfo"])
    changed = {kind: _extension._build_key(kind) for kind in _extension.KINDS}
    assert changed["cuda"] != keys["cuda"]
    assert changed["cpu"] == keys["cpu"] and changed["cuda_emulation"] == keys["cuda_emulation"]
    monkeypatch.setattr(_extension, "_CPU_CFLAGS", [*_extension._CPU_CFLAGS, "-g"])
    assert _extension._build_key("cpu") != keys["cpu"]
    assert _extension._build_key("cuda") == changed["cuda"]


def test_two_checkouts_of_the_same_sources_build_into_separate_folders(tmp_path, monkeypatch):
    """The build file names the sources by path: a shared folder would make two checkouts
    rebuild each other's library at every load."""
    keys = []
    for name in ("checkout_a", "checkout_b"):
        copy = tmp_path / name / "exodus"
        shutil.copytree(_extension.sources_dir(), copy)
        monkeypatch.setattr(_extension, "sources_dir", lambda copy=copy: copy)
        keys.append(_extension._build_key("cpu"))
    assert keys[0] != keys[1]


def test_cache_root_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("EXODUS_LIGHTNING_CACHE", str(tmp_path))
    assert _extension.cache_root() == tmp_path


def test_missing_compiler_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("EXODUS_LIGHTNING_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", "no-such-compiler-xyz")
    with pytest.raises(_extension.ExtensionBuildError, match="no C\\+\\+ compiler"):
        _extension._build("cpu", verbose=False)


def test_cuda_build_compiles_one_translation_unit_per_neuron_model():
    """ninja compiles the CUDA part's files in parallel: one file of all the kernels was one nvcc
    process (138 s of CPU), whatever the cores. Each model's ops are registered in exactly one
    file, the kernel code stays in the headers, and the emulation still compiles all of it."""
    src = _extension.sources_dir()
    cuda = _extension._sources("cuda", src)
    assert [path.name for path in cuda] == [
        "exodus_cuda.cu", "exodus_cuda_adlif.cu", "exodus_cuda_alif.cu"]
    texts = [path.read_text() for path in cuda]
    for model in ("lif", "alif", "adlif"):
        assert sum(f"register_{model}_ops<" in text for text in texts) == 1, model
    assert not any("__global__" in text for text in texts)  # no second copy of a kernel
    emulation, = _extension._sources("cuda_emulation", src)
    assert "register_ops<" in emulation.read_text()


def _load_like_torch_2_11(build_dir: Path, deadline_s: float) -> None:
    """torch <= 2.12's cpp_extension.load around a build: take the lock file (O_EXCL) or wait
    while it exists, as its FileBaton does, but give up after deadline_s instead of forever."""
    lock = build_dir / "lock"
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        fd = None
    if fd is not None:  # "built"; the baton's release
        os.close(fd)
        os.remove(lock)
        return
    waited = time.monotonic()
    while lock.exists():  # torch then loads the library the other process built
        if time.monotonic() - waited > deadline_s:
            raise TimeoutError(f"still waiting on {lock} (FileBaton.wait would spin forever)")
        time.sleep(0.05)


def _fake_builder(monkeypatch, tmp_path) -> Path:
    """The CPU part's build folder in a fresh cache, with torch's builder replaced by
    _load_like_torch_2_11 (nothing is compiled)."""
    monkeypatch.setenv("EXODUS_LIGHTNING_CACHE", str(tmp_path))
    build_dir = tmp_path / f"cpu-{_extension._build_key('cpu')}"
    build_dir.mkdir()
    monkeypatch.setattr(_extension._cpp_extension(), "load",
                        lambda **kw: _load_like_torch_2_11(Path(kw["build_directory"]), 5.0))
    return build_dir


def test_a_lock_file_left_by_a_killed_build_does_not_hang_the_next_load(tmp_path, monkeypatch):
    """A build killed by a time limit (SIGKILL: no finally runs) leaves torch <= 2.12's lock
    file behind; the next load removes it and proceeds instead of waiting forever."""
    build_dir = _fake_builder(monkeypatch, tmp_path)
    script = textwrap.dedent(f"""
        import os, sys, time
        os.open({str(build_dir / "lock")!r}, os.O_CREAT | os.O_EXCL)  # FileBaton.try_acquire
        print("building", flush=True)
        time.sleep(60)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "building"
    child.kill()
    child.wait(timeout=30)
    assert (build_dir / "lock").exists()
    _extension._build("cpu", verbose=False)  # TimeoutError (as ExtensionBuildError) if it waits
    assert not (build_dir / "lock").exists()


@pytest.mark.slow
def test_a_live_build_is_waited_for_not_broken(tmp_path, monkeypatch):
    """Another process building in the same folder keeps its lock file until it is done: the
    stale-lock cleanup must not take a live build's lock for a dead one's."""
    build_dir = _fake_builder(monkeypatch, tmp_path)
    script = textwrap.dedent(f"""
        import os, sys, time
        from pathlib import Path
        from exodus_lightning.ops import _extension
        build_dir = Path({str(build_dir)!r})
        with _extension._build_lock(build_dir):
            fd = os.open(build_dir / "lock", os.O_CREAT | os.O_EXCL)
            print("building", flush=True)
            time.sleep(2)
            intact = (build_dir / "lock").exists()
            os.close(fd)
            os.remove(build_dir / "lock")
        sys.exit(0 if intact else 3)
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                             env=env)
    assert child.stdout.readline().strip() == "building"
    _extension._build("cpu", verbose=False)
    assert child.wait(timeout=60) == 0, "the live build's lock file was removed under it"


@pytest.mark.slow
def test_concurrent_first_builds_do_not_race(tmp_path):
    """Two processes (like DDP ranks) start on a cache without the library at once; both load
    and agree, and one library is built.

    The cache holds the compiled objects of this suite's own build (no library), so the build
    only links: the race is over the build lock and the library, not the compiler's minutes.
    """
    built = _extension.load("cpu").parent
    seeded = tmp_path / built.name
    shutil.copytree(built, seeded, ignore=shutil.ignore_patterns("*.so", "lock"))
    assert not list(seeded.glob("*.so")) and list(seeded.glob("*.o"))
    script = textwrap.dedent("""
        import torch
        from exodus_lightning import ops
        x = torch.ones(1, 4, 2)
        spikes = ops.lif(x, 1.0, 1.5, backend="extension")[0]
        print("SPIKES", spikes.sum().item())
    """)
    env = dict(os.environ, EXODUS_LIGHTNING_CACHE=str(tmp_path))
    procs = [subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    for proc, (out, err) in zip(procs, results):
        assert proc.returncode == 0, err
        # v = 1, 2 (spike, 0.5 left), 1.5 (spike, 0 left), 1: two spikes in each of 2 features
        assert "SPIKES 4.0" in out
    assert len(list(tmp_path.glob("cpu-*/*.so"))) == 1


@pytest.mark.slow
@run_if(nvcc=True, cuda_torch=True)
def test_cuda_sources_compile():
    """The CUDA kernels compile and link with nvcc, with or without a GPU.

    Into the shared cache with the GPU check's architectures (its test then loads this build).
    """
    env = dict(os.environ, TORCH_CUDA_ARCH_LIST=CI_CUDA_ARCHS)
    proc = subprocess.run(
        [sys.executable, "-m", "exodus_lightning.ops.build", "--cuda", "--no-cpu"],
        env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    built = proc.stdout.split("cuda: ", 1)[1].split(" (", 1)[0]
    assert Path(built).is_file() and Path(built).parent.parent == _extension.cache_root()


@pytest.mark.slow
def test_wheel_ships_the_sources(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w",
         str(tmp_path), str(REPO)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wheel, = tmp_path.glob("exodus_lightning-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = _extension.source_files()
    assert {"lif_step.h", "exodus_cpu.cpp", "cuda_kernels.cuh", "exodus_cuda.cu"} <= {
        path.name for path in sources}
    for source in sources:
        assert f"exodus_lightning/_extensions/exodus/{source.name}" in names
    assert "exodus_lightning/ops/lif.py" in names
    assert not any(name.endswith(".so") for name in names)  # nothing prebuilt
