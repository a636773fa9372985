"""The register summary gpu_check.sh prints after the CUDA build (kernel_registers.py)."""

from __future__ import annotations

import shutil

import pytest

from experiments import kernel_registers

# Three kernels of a real sm_90 build's cuobjdump --dump-resource-usage (nvcc 13.0): the float32
# "backward, dα" and forward of the benchmark, and a float64 backward (given surrogate) that spills.
DUMP = """
Fatbin elf code:
================
arch = sm_90
 Function _ZN6exodus3gpu11scan_kernelINS_15LifBackwardScanILi0ELi1ELin1EffEEEEvNT_4ArgsE:
  REG:160 STACK:0 SHARED:0 LOCAL:0 CONSTANT[0]:712 TEXTURE:0 SURFACE:0 SAMPLER:0
 Function _ZN6exodus3gpu11scan_kernelINS_14LifForwardScanIffEEEEvNT_4ArgsE:
  REG:63 STACK:0 SHARED:0 LOCAL:0 CONSTANT[0]:600 TEXTURE:0 SURFACE:0 SAMPLER:0
 Function _ZN6exodus3gpu11scan_kernelINS_15LifBackwardScanILin1ELi0ELin1EddEEEEvNT_4ArgsE:
  REG:255 STACK:136 SHARED:0 LOCAL:0 CONSTANT[0]:712 TEXTURE:0 SURFACE:0 SAMPLER:0
"""


def test_occupancy_follows_hoppers_register_file():
    """65536 registers per SM, 64-thread blocks, registers per thread in multiples of 8: the
    review's ptxas figures (160 -> 6 blocks, 19 %; 111 -> 9, 28 %; 63 -> 16, 50 %)."""
    for registers, blocks, occupancy in ((160, 6, 0.1875), (111, 9, 0.28125), (63, 16, 0.5),
                                         (24, 32, 1.0)):
        kernel = kernel_registers.Kernel("k", registers, 0, 0)
        assert (kernel.blocks_per_sm, kernel.occupancy) == (blocks, occupancy)


def test_summary_counts_bands_and_spills():
    kernels = kernel_registers.parse(DUMP)
    assert [k.registers for k in kernels] == [160, 63, 255]
    lines = kernel_registers.summary(kernels)
    assert lines[0] == ("registers: 3 kernels; <= 128 regs: 1, 129-192: 1, > 192: 1; with a "
                        "stack or local memory (spills): 1")
    assert kernel_registers.summary([])[0].startswith("registers: no kernel found")


@pytest.mark.skipif(shutil.which("c++filt") is None, reason="needs c++filt (binutils)")
def test_summary_names_the_benchmarks_kernels():
    lines = kernel_registers.summary(kernel_registers.parse(DUMP))
    assert "  backward, dα: 160 regs, 6 blocks/SM, 19% occupancy" in "\n".join(lines)
    assert any(line.startswith("  forward: 63 regs, 16 blocks/SM, 50%") for line in lines)
    assert not any(line.startswith("  backward:") for line in lines)  # only the float64 one here
