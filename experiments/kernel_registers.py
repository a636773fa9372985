"""Registers, spills and occupancy of the built CUDA kernels (cuobjdump --dump-resource-usage).

    cuobjdump --dump-resource-usage <cache>/cuda-*/*.so > registers.txt
    python -m experiments.kernel_registers registers.txt

gpu_check.sh runs this after the CUDA build, so each GPU session records what ptxas made of the
kernels next to the benchmark's times: the register count decides how many 64-thread blocks fit
on a multiprocessor, a STACK or LOCAL size above 0 means spilled registers (local memory).
Occupancy, for Hopper (65536 registers, 64 warps and 32 blocks per SM; registers are given
out per warp in units of 256, i.e. per thread in multiples of 8):

    blocks/SM = min(32, 65536 // (64 · ⌈regs / 8⌉ · 8)),  occupancy = 2 · blocks/SM / 64
"""

from __future__ import annotations

import argparse
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

THREADS = 64  # gpu::kThreads in extensions/exodus/cuda_kernels.cuh
# The kernels of the benchmark's op rows (float32): its "forward", "backward" and "backward, dα".
WATCHED = {
    "LifForwardScan<float, float>": "forward",
    "LifBackwardScan<0, 0, -1, float, float>": "backward",
    "LifBackwardScan<0, 1, -1, float, float>": "backward, dα",
}
_FUNCTION = re.compile(r"Function (\S+):\s*\n\s*REG:(\d+) STACK:(\d+) SHARED:\d+ LOCAL:(\d+)")


@dataclass(frozen=True)
class Kernel:
    """One kernel's resource usage."""

    name: str  # demangled where c++filt is there
    registers: int
    stack: int
    local: int

    @property
    def blocks_per_sm(self) -> int:
        per_thread = -(-max(self.registers, 1) // 8) * 8
        return min(32, 65536 // (THREADS * per_thread))

    @property
    def occupancy(self) -> float:
        return self.blocks_per_sm * (THREADS // 32) / 64


def _demangle(names: list[str]) -> list[str]:
    try:
        done = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True,
                              text=True, check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return names
    return done if len(done) == len(names) else names


def parse(text: str) -> list[Kernel]:
    """The kernels listed in cuobjdump's --dump-resource-usage output."""
    found = _FUNCTION.findall(text)
    names = _demangle([name for name, *_ in found])
    return [Kernel(name, int(reg), int(stack), int(local))
            for name, (_, reg, stack, local) in zip(names, found)]


def summary(kernels: list[Kernel]) -> list[str]:
    """A few lines: register bands, the spilling kernels, the benchmark's kernels."""
    if not kernels:
        return ["registers: no kernel found (is this cuobjdump --dump-resource-usage output?)"]
    bands = (sum(k.registers <= 128 for k in kernels),
             sum(128 < k.registers <= 192 for k in kernels),
             sum(k.registers > 192 for k in kernels))
    spilling = [k for k in kernels if k.stack or k.local]
    lines = [f"registers: {len(kernels)} kernels; <= 128 regs: {bands[0]}, 129-192: {bands[1]}, "
             f"> 192: {bands[2]}; with a stack or local memory (spills): {len(spilling)}"]
    for kernel in kernels:
        inner = kernel.name.split("scan_kernel<exodus::", 1)[-1].replace("c10::", "")
        label = next((row for key, row in WATCHED.items() if inner.startswith(key)), None)
        if label:
            lines.append(f"  {label}: {kernel.registers} regs, {kernel.blocks_per_sm} blocks/SM, "
                         f"{kernel.occupancy:.0%} occupancy ({inner.split('>')[0]}>)")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dump", type=Path, help="cuobjdump --dump-resource-usage output")
    options = parser.parse_args(argv)
    print("\n".join(summary(parse(options.dump.read_text(errors="replace")))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
