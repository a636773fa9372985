"""Where and how a table was measured: date, commit, CPU, threads, torch, allocator, GPU.

Every table an experiment writes carries this line, so a figure copied into the docs can be
traced to the machine and the code that produced it. Only the standard library is imported at
module level (torch when a function needs it), as in report.py.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# glibc's mallopt parameters, as keep_freed_memory() sets them; read back through mallinfo is
# not possible, so the allocator mode is what this process was told (environment or call).
ALLOCATOR_REUSE_CALLED = "reuse (keep_freed_memory)"
ALLOCATOR_REUSE_ENV = "reuse (MALLOC_* variables)"
ALLOCATOR_DEFAULT = "default"
_allocator_override: str | None = None


def note_keep_freed_memory() -> None:
    """Record that this process called ops.keep_freed_memory() (provenance cannot read it back)."""
    global _allocator_override
    _allocator_override = ALLOCATOR_REUSE_CALLED


def note_allocator(description: str) -> None:
    """Record the allocator mode(s) a table was measured with, where this process's own mode
    is not it (e.g. "default / reuse (keep_freed_memory), one process each")."""
    global _allocator_override
    _allocator_override = description


def allocator_mode() -> str:
    """glibc allocator mode of this process: default, or reuse (freed memory kept resident)."""
    if _allocator_override is not None:
        return _allocator_override
    if os.environ.get("MALLOC_MMAP_MAX_") == "0":
        return ALLOCATOR_REUSE_ENV
    return ALLOCATOR_DEFAULT


def git_commit() -> str:
    """Short commit of the checkout, with "+changes" when tracked files differ from it."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return commit + ("+changes" if dirty else "")


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo; platform.processor() elsewhere)."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def collect(device: str = "cpu") -> dict[str, str]:
    """The provenance of a measurement made now, in this process, on device ("cpu"/"cuda")."""
    import torch

    record = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(),
        "cpu": cpu_model(),
        "cores": str(usable_cores()),
        "threads": str(torch.get_num_threads()),
        "torch": torch.__version__,
        "allocator": allocator_mode(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        record["gpu"] = torch.cuda.get_device_name()
        record["cuda"] = str(torch.version.cuda)
    return record


def line(record: dict[str, str]) -> str:
    """One Markdown line for below a table: "Measured 2026-12-01 ..., commit ..., ..."."""
    parts = [f"Measured {record['date']}", f"commit {record['commit']}"]
    parts.append(f"{record['cpu']}, {record['cores']} cores, torch threads: {record['threads']}")
    parts.append(f"torch {record['torch']}")
    parts.append(f"glibc allocator: {record['allocator']}")
    if "gpu" in record:
        parts.append(f"GPU: {record['gpu']} (CUDA {record['cuda']})")
    return "_" + "; ".join(parts) + "_"
