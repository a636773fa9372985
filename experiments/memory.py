"""Memory of one step: the peak it needs (CPU resident or CUDA allocated) and what autograd saves.

Peak memory is read the way the kernel and the CUDA caching allocator count it, never sampled:

    CPU   peak = VmHWM after the step − VmRSS before it, where just before the step the freed
          memory the C allocator keeps is returned to the OS (glibc malloc_trim) and the
          high-water mark is reset to the current size (Linux: write 5 to /proc/self/clear_refs)
    CUDA  peak = max_memory_allocated after the step − memory_allocated before it, the peak
          statistics reset just before the step

VmHWM misses no short-lived peak: Linux updates it before any unmapping, and reading it
reports at least the current size. It is exact up to the kernel's batching of resident-page
counts (each thread's last ≤ 64 pages may reach the total late: < 1 MB). Without the trim,
memory freed by an earlier step and kept by glibc would serve this step without new page
faults, and the step would read ~0 (what sampling an RSS from outside also gets wrong).
Measure in a fresh process (see isolated.py), after a warm-up on a tiny input that loads the
code (libraries, kernels), so the figure is this step's alone.
"""

from __future__ import annotations

import ctypes
import gc
import platform
from collections.abc import Callable

MB = 2**20


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} is not in /proc/self/status")


def cpu_peak_supported() -> bool:
    """Whether this OS lets step_peak_mb reset and read the resident high-water mark (Linux)."""
    return platform.system() == "Linux"


def release_freed_memory() -> None:
    """Return the memory glibc keeps after frees to the OS (malloc_trim(0)); no-op elsewhere."""
    gc.collect()
    if platform.libc_ver()[0] == "glibc":
        ctypes.CDLL(None).malloc_trim(0)


def step_peak_mb(step: Callable[[], object], device: str = "cpu") -> float:
    """Peak memory (MB) that running step() adds to this process; see the module docstring."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / MB
    if not cpu_peak_supported():
        raise RuntimeError(
            "step_peak_mb on CPU reads Linux's /proc/self/status (VmHWM); "
            f"this is {platform.system()}"
        )
    release_freed_memory()
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # high-water mark := current resident size
    base = _status_kb("VmRSS")
    step()
    return max(_status_kb("VmHWM") - base, 0) / 1024


def saved_for_backward_mb(forward: Callable[[], object]) -> float:
    """MB of the distinct tensors autograd keeps for the backward pass of forward().

    Exact and allocator-independent: the memory that a BPTT graph over time steps costs and
    EXODUS's saved membrane avoids. Storages shared by several saved tensors count once.
    """
    import torch

    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        forward()
    return sum(storages.values()) / MB
