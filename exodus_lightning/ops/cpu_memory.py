"""Let glibc keep freed memory for reuse, so CPU steps stop paying page faults on fresh tensors.

glibc serves large allocations (above ~32 MB) with mmap and returns them to the OS on free, so
every forward/backward pass maps its full-size tensors anew and the kernel zeroes each page on
first write: at (32, 300, 2048) that is ~12 ms per 80 MB tensor, as much as the LIF scan itself.
Keeping freed memory in the heap makes the next step reuse pages that are already mapped.
"""

from __future__ import annotations

import ctypes
import platform

# mallopt parameters, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_INT_MAX = 2**31 - 1


def keep_freed_memory() -> bool:
    """Make glibc's malloc reuse freed memory instead of returning it to the OS.

    The same as starting Python with ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=<large>``:
    no allocation is served by mmap, and the heap is trimmed only when more than 2 GiB at its
    top are free. Memory freed by one step stays resident for the next, so the process keeps
    its peak resident size. Affects the whole process, from this call on.

    Returns True if applied, False where the C library is not glibc (nothing changes; use
    jemalloc or tcmalloc through LD_PRELOAD there).
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    # mallopt returns 1 on success.
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, _INT_MAX)
    )
