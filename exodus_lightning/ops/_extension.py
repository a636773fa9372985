"""Build and load the C++/CUDA extension that implements the ``exodus_lightning::*`` ops.

The extension compiles from ``extensions/exodus`` on first use (JIT, ninja) into a cache folder
keyed by a hash of the sources, the torch/CUDA versions, the compiler flags and (for CUDA) the
target architectures, so a changed source or torch never loads a stale library; after a new
build, folders of other versions unused for STALE_AFTER_DAYS are removed. Several processes
starting at once (DDP ranks) are safe: they take turns on an OS lock (flock) in the build
folder, which the kernel frees when its holder dies, and every process then loads the same
library; a lock file that a killed build left behind is removed rather than waited on forever
(see _build_lock). The CPU and CUDA parts are separate libraries, so a CPU-only torch needs
neither nvcc nor a GPU.

Ahead of time: ``python -m exodus_lightning.ops.build`` (add ``--cuda`` for the GPU part).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch

try:
    import fcntl
except ImportError:  # not POSIX: no OS lock, torch's own lock file alone
    fcntl = None  # type: ignore[assignment]

# Every source of the extension: a change to any of them changes the build key.
_SOURCE_PATTERNS = ("*.h", "*.cuh", "*.cpp", "*.cu")
# The parts of the extension, each its own library: the CPU kernels, the CUDA kernels, and the
# CUDA kernels compiled for the host (tests only; see ops/cuda_emulation.py).
KINDS = ("cpu", "cuda", "cuda_emulation")
_LABELS = {"cpu": "CPU", "cuda": "CUDA", "cuda_emulation": "CUDA-emulation (tests only)"}
# -ffp-contract=off: no fused multiply-add, so the kernels round exactly like the reference.
# -fno-trapping-math: lets the compiler turn the spike/reset selects into vector blends.
_CPU_CFLAGS = ["-O3", "-fopenmp", "-ffp-contract=off", "-fno-trapping-math"]  # C++ std: torch's
_CPU_LDFLAGS = ["-fopenmp"]  # without it at::parallel_for silently runs on one thread
# --fmad=false: no fused multiply-add contraction, so the GPU rounds exactly like the CPU code
# and the reference (a contracted α·v + x can flip a spike that sits on the threshold).
# --threads=0: the device code of several architectures (TORCH_CUDA_ARCH_LIST) compiled in
# parallel, one thread per CPU (2 architectures on 2 cores: 152 s -> 124 s).
_CUDA_FLAGS = ["-O3", "--fmad=false", "--threads=0"]
_CUDA_HOST_CFLAGS = ["-O3"]  # the host code of the CUDA part (g++)
# The emulation only runs small test problems: a quick build matters more than fast code.
_EMULATION_CFLAGS = ["-O1", "-ffp-contract=off"]

# Cache folders of other versions that no process has loaded for this long are removed after a
# new build (see prune_stale_builds).
STALE_AFTER_DAYS = 7

_lock = threading.Lock()
_loaded: dict[str, Path] = {}
_failures: dict[str, str] = {}


class ExtensionBuildError(RuntimeError):
    """The extension could not be compiled or loaded; the message names the cause."""


def sources_dir() -> Path:
    """Folder of the C++/CUDA sources: the checkout's ``extensions/exodus`` or the wheel's copy."""
    here = Path(__file__).resolve()
    candidates = [
        here.parents[2] / "extensions" / "exodus",  # source checkout / editable install
        here.parents[1] / "_extensions" / "exodus",  # installed wheel
    ]
    for candidate in candidates:
        if (candidate / "exodus_cpu.cpp").is_file():
            return candidate
    raise ExtensionBuildError(
        "exodus_lightning: the extension sources were not found in "
        + " or ".join(str(c) for c in candidates)
        + "; reinstall the package (pip install exodus-lightning) or run from a source checkout."
    )


def source_files(src: Path | None = None) -> list[Path]:
    """The extension's source files (found by pattern), in a stable order."""
    src = src or sources_dir()
    return sorted(path for pattern in _SOURCE_PATTERNS for path in src.glob(pattern))


def cache_root() -> Path:
    """Where built libraries live: $EXODUS_LIGHTNING_CACHE or ~/.cache/exodus_lightning."""
    env = os.environ.get("EXODUS_LIGHTNING_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "exodus_lightning"


def cuda_home() -> str | None:
    """CUDA toolkit root: $CUDA_HOME/$CUDA_PATH, else where nvcc really is, else /usr/local/cuda.

    torch guesses from the ``nvcc`` on PATH, which is wrong when that is a wrapper script.
    """
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            return os.environ[var]
    nvcc = shutil.which("nvcc")
    if nvcc:
        real = Path(nvcc).resolve()
        text = real.read_text(errors="ignore") if real.stat().st_size < 4096 else ""
        match = re.search(r"(/\S+?)/bin/nvcc", text)  # wrapper script pointing at the real nvcc
        if match and Path(match.group(1)).is_dir():
            return match.group(1)
        if (real.parent.parent / "include" / "cuda.h").is_file():
            return str(real.parent.parent)
    if Path("/usr/local/cuda/bin/nvcc").exists():
        return "/usr/local/cuda"
    return None


def cuda_arch_list() -> str:
    """Target GPU architectures: $TORCH_CUDA_ARCH_LIST, else those of the visible GPUs."""
    env = os.environ.get("TORCH_CUDA_ARCH_LIST")
    if env:
        return env
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        caps = sorted({torch.cuda.get_device_capability(i) for i in range(count)})
        return ";".join(f"{major}.{minor}" for major, minor in caps)
    raise ExtensionBuildError(
        "exodus_lightning: no GPU is visible to choose CUDA architectures for; set "
        "TORCH_CUDA_ARCH_LIST, e.g. TORCH_CUDA_ARCH_LIST='8.0;9.0'"
    )


def cpu_isa_flags() -> list[str]:
    """Vector instruction set for the CPU loops: the one torch itself dispatches to here.

    The library is built on the machine that uses it (and keyed by this choice), so it may use
    what this CPU has; the loops are written for the compiler to vectorise.
    """
    capability = torch.backends.cpu.get_cpu_capability()
    if capability == "AVX512":
        return ["-mavx2", "-mfma", "-mf16c", "-mavx512f", "-mavx512dq", "-mavx512bw",
                "-mavx512vl"]
    if capability == "AVX2":
        return ["-mavx2", "-mfma", "-mf16c"]
    return []


def _build_flags(kind: str) -> list[str]:
    """The compiler flags of one part of the extension (its key changes with them only)."""
    if kind == "cpu":
        return _CPU_CFLAGS + _CPU_LDFLAGS + cpu_isa_flags()
    if kind == "cuda_emulation":
        return list(_EMULATION_CFLAGS)
    return _CUDA_HOST_CFLAGS + _CUDA_FLAGS


def _build_key(kind: str, arch: str = "") -> str:
    digest = hashlib.sha256()
    src = sources_dir()
    for path in source_files(src):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    parts = [
        kind,
        # Where the sources are: the build file names them by absolute path, so two checkouts
        # sharing one folder would rebuild each other's library at every load.
        str(src.resolve()),
        torch.__version__,
        str(torch.version.cuda),
        arch,
        " ".join(_build_flags(kind)),
        f"py{sys.version_info[0]}.{sys.version_info[1]}",
        torch._C._GLIBCXX_USE_CXX11_ABI and "cxx11abi" or "oldabi",
    ]
    digest.update("|".join(parts).encode())
    return digest.hexdigest()[:16]


def _diagnose(kind: str, error: BaseException) -> str:
    """Name the most likely cause of a failed build."""
    from torch.utils import cpp_extension

    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is None:
        return f"no C++ compiler '{cxx}' on PATH: install g++ (e.g. apt-get install g++) or set CXX"
    try:
        cpp_extension.verify_ninja_availability()
    except RuntimeError:
        return "ninja is not installed: pip install ninja"
    if kind == "cuda":
        home = cuda_home()
        if home is None or not Path(home, "bin", "nvcc").exists():
            return "nvcc was not found: install the CUDA toolkit and set CUDA_HOME to its root"
        try:
            out = subprocess.run(
                [str(Path(home, "bin", "nvcc")), "--version"], capture_output=True, text=True
            ).stdout
            found = re.search(r"release (\d+)\.(\d+)", out)
        except OSError:
            found = None
        torch_cuda = torch.version.cuda or ""
        if found and torch_cuda and found.group(1) != torch_cuda.split(".")[0]:
            return (
                f"nvcc {found.group(1)}.{found.group(2)} (in {home}) does not match the CUDA "
                f"{torch_cuda} that torch was built with: install a matching toolkit or torch"
            )
    text = str(error)
    tail = "\n".join(text.strip().splitlines()[-25:])
    return f"the compiler failed:\n{tail}"


def _cpp_extension():
    """torch.utils.cpp_extension, imported quietly: its import warns "No CUDA runtime is found"
    on machines without a GPU, which is expected here."""
    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        from torch.utils import cpp_extension
    finally:
        logger.setLevel(level)
    return cpp_extension


@contextlib.contextmanager
def build_environment(variables: dict[str, str], cuda_home: str | None = None) -> Iterator[None]:
    """Environment variables (and torch's ``cpp_extension.CUDA_HOME``) set for one build only.

    The previous values come back afterwards, also when the build fails, so building changes
    nothing in the process (``load`` builds under a lock, one build at a time).
    """
    cpp_extension = _cpp_extension()
    saved = {name: os.environ.get(name) for name in variables}
    saved_home = cpp_extension.CUDA_HOME
    os.environ.update(variables)
    if cuda_home is not None:
        # torch reads it once, at import; ours is the checked one (see cuda_home()).
        cpp_extension.CUDA_HOME = cuda_home
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        cpp_extension.CUDA_HOME = saved_home


def _sources(kind: str, src: Path) -> list[Path]:
    """The translation units of one part of the extension.

    The CPU and CUDA parts are one file per neuron model (exodus_cpu*.cpp, exodus_cuda*.cu; on
    CPU, LIF's half-precision reverse scans in one more), so ninja compiles them in parallel; the
    emulation is one file of all the CUDA kernels (the same kernel code, compiled by the host
    compiler).
    """
    if kind == "cpu":
        return sorted(src.glob("exodus_cpu*.cpp"))
    if kind == "cuda":
        return sorted(src.glob("exodus_cuda*.cu"))
    return [src / "exodus_cuda_emulation.cpp"]


@contextlib.contextmanager
def _build_lock(build_dir: Path) -> Iterator[None]:
    """Hold the build folder's OS lock for one load; remove a lock file left by a killed build.

    torch ≤ 2.12 marks a build in progress by the mere existence of ``build_dir/lock`` (its
    ``FileBaton``) and removes it in a ``finally``, which a killed process (SIGTERM/SIGKILL from
    a time limit) never runs; every later load then spins in ``FileBaton.wait`` forever. Every
    load of this module first holds ``build_dir/build.lock`` with flock, which the kernel
    releases when its holder dies, so a ``lock`` found while holding it belongs to no live build
    and is removed (newer torch holds ``lock`` with flock itself and leaves the file; removing it
    then is harmless). Where the file system has no flock (some cluster file systems), the load
    goes on without it, as before.
    """
    if fcntl is None:
        yield
        return
    with open(build_dir / "build.lock", "a") as handle:  # closing it releases the flock
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
            locked = True
        except OSError as error:
            if error.errno not in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            locked = False  # no OS lock here: torch's lock file alone, as before
        stale = build_dir / "lock"
        if locked and stale.exists():
            stale.unlink(missing_ok=True)
            if hasattr(_cpp_extension(), "FileBaton"):  # a torch whose builder would have hung
                print(f"exodus_lightning: removed {stale}, left by a build that was killed.",
                      file=sys.stderr, flush=True)
        yield


def _build(kind: str, verbose: bool) -> Path:
    home = cuda_home()
    cpp_extension = _cpp_extension()
    variables: dict[str, str] = {}  # environment of the build (the CUDA part's only)
    src = sources_dir()
    if kind == "cpu":
        key = _build_key("cpu")
        sources = [str(path) for path in _sources("cpu", src)]
        extra = {
            "extra_cflags": _CPU_CFLAGS + cpu_isa_flags(),
            "extra_ldflags": _CPU_LDFLAGS,
            "with_cuda": False,
        }
    elif kind == "cuda_emulation":
        key = _build_key(kind)
        sources = [str(path) for path in _sources(kind, src)]
        extra = {"extra_cflags": _EMULATION_CFLAGS, "with_cuda": False}
    else:
        if torch.version.cuda is None:
            raise ExtensionBuildError(
                "exodus_lightning: this torch was built without CUDA; install a CUDA build of "
                "torch to use the GPU kernels"
            )
        if home is None:
            raise ExtensionBuildError(
                "exodus_lightning: nvcc was not found; install the CUDA toolkit matching torch's "
                f"CUDA {torch.version.cuda} and set CUDA_HOME to its root"
            )
        arch = cuda_arch_list()
        variables = {"TORCH_CUDA_ARCH_LIST": arch, "CUDA_HOME": home}
        key = _build_key("cuda", arch)
        sources = [str(path) for path in _sources("cuda", src)]
        extra = {
            "extra_cflags": _CUDA_HOST_CFLAGS,
            "extra_cuda_cflags": _CUDA_FLAGS,
            "with_cuda": True,
        }
    build_dir = cache_root() / f"{kind}-{key}"
    build_dir.mkdir(parents=True, exist_ok=True)
    name = f"exodus_lightning_{kind}_{key}"
    # A first build takes tens of seconds with no output from the compiler: say what happens.
    announce = not (build_dir / f"{name}.so").exists()
    if announce:
        seconds = {"cpu": "1-3 min", "cuda": "1-3 min", "cuda_emulation": "~1 min"}[kind]
        print(f"Building the exodus_lightning {_LABELS[kind]} extension (once per version, "
              f"{seconds}) in {build_dir} ...", file=sys.stderr, flush=True)
    started = time.monotonic()
    try:
        with build_environment(variables, home if kind == "cuda" else None), _build_lock(build_dir):
            cpp_extension.load(
                name=name,
                sources=sources,
                extra_include_paths=[str(src)],
                build_directory=str(build_dir),
                is_python_module=False,
                verbose=verbose,
                **extra,
            )
    except Exception as error:  # the compiler's own message is in there; add the likely cause
        raise ExtensionBuildError(
            f"exodus_lightning: building the {_LABELS[kind]} extension in {build_dir} failed: "
            f"{_diagnose(kind, error)}"
        ) from error
    _mark_used(build_dir)
    if announce:
        removed = prune_stale_builds(kind, keep=build_dir)
        pruned = (f" Removed {len(removed)} {_LABELS[kind]} build(s) unused for "
                  f"{STALE_AFTER_DAYS} days." if removed else "")
        print(f"Built the exodus_lightning {_LABELS[kind]} extension in "
              f"{time.monotonic() - started:.0f} s.{pruned}", file=sys.stderr, flush=True)
    return build_dir / f"{name}.so"


def _mark_used(build_dir: Path) -> None:
    """Set the folder's mtime to now: the cache's record of when a process last loaded it."""
    try:
        os.utime(build_dir)
    except OSError:  # a read-only shared cache: it is then not ours to prune either
        pass


def prune_stale_builds(kind: str, keep: Path, now: float | None = None) -> list[Path]:
    """Remove the cache folders of ``kind`` other than ``keep`` unused for STALE_AFTER_DAYS.

    Each source/torch/flag change leaves a new folder (~4 MB for the CPU part, ~15 MB for the
    CUDA part). Every load marks its folder used (mtime), so a folder that another checkout,
    torch or process still loads is kept however old its build; one unused for a week is from a
    version nobody runs (a process that loaded it earlier keeps its mapped copy). Returns the
    folders removed.
    """
    now = time.time() if now is None else now
    pattern = re.compile(rf"{re.escape(kind)}-[0-9a-f]{{16}}")
    removed = []
    for folder in keep.parent.iterdir():
        if folder == keep or not folder.is_dir() or not pattern.fullmatch(folder.name):
            continue
        try:
            stale = now - folder.stat().st_mtime > STALE_AFTER_DAYS * 86400
        except OSError:  # removed by another process meanwhile
            continue
        if stale:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def load(kind: str = "cpu", verbose: bool = False) -> Path:
    """Build (if needed) and load one part of the extension; ``kind`` is one of KINDS."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    with _lock:
        if kind in _loaded:
            return _loaded[kind]
        if kind in _failures:
            raise ExtensionBuildError(_failures[kind])
        try:
            path = _build(kind, verbose)
        except ExtensionBuildError as error:
            _failures[kind] = str(error)
            raise
        _loaded[kind] = path
        return path


def try_build_and_load(device_type: str) -> bool:
    """Build the kernels for ``device_type`` if they are not cached (tens of seconds, announced
    on stderr), load them, and say whether that worked (False: see ``failure_reason``)."""
    kind = "cuda" if device_type == "cuda" else "cpu" if device_type == "cpu" else None
    if kind is None:
        return False
    try:
        load(kind)
    except ExtensionBuildError:
        return False
    return True


def is_available(device_type: str) -> bool:
    """Deprecated name of :func:`try_build_and_load` (it builds, which the name hid)."""
    warnings.warn("exodus_lightning.ops.is_available builds the kernels when they are not "
                  "cached; call it by its new name, ops.try_build_and_load", DeprecationWarning,
                  stacklevel=2)
    return try_build_and_load(device_type)


def failure_reason(device_type: str) -> str | None:
    """Why the extension for ``device_type`` is unavailable, if it failed to build."""
    return _failures.get("cuda" if device_type == "cuda" else "cpu")
