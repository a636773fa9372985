"""keep_freed_memory: freed large tensors stay resident for reuse, not returned to the OS."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

SCRIPT = """
import os, sys, torch
from exodus_lightning.ops import keep_freed_memory

def rss_mb():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

applied = keep_freed_memory() if sys.argv[1] == "keep" else None
before = rss_mb()
tensor = torch.empty(64 * 2**20 // 4)  # 64 MB: above glibc's largest mmap threshold
tensor.fill_(1.0)
during = rss_mb()
del tensor
print(applied, round(during - before), round(rss_mb() - before))
"""

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="needs glibc"
)


def resident_after_free(mode: str) -> tuple[str, int, int]:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True,
                         check=True).stdout.split()
    return out[0], int(out[1]), int(out[2])


def test_default_glibc_returns_large_blocks_to_the_os():
    _, during, after = resident_after_free("default")
    assert during >= 60 and after < 10


def test_keep_freed_memory_keeps_them_resident():
    applied, during, after = resident_after_free("keep")
    assert applied == "True"
    assert during >= 60 and after >= 60
