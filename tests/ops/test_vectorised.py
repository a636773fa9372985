"""The CPU scan loop is vectorised for the adLIF scan policies (a compiler report, no timing).

A policy whose step GCC cannot if-convert runs the feature loop of cpu_scan.h as scalar code
with data-dependent branches: the results stay right, only slower (2–6x for adLIF's forward
before its selects were rewritten), so no parity test notices. This compiles the CPU runner's
loop for each policy with the extension's flags and reads GCC's vectorisation report.
"""

from __future__ import annotations

import shutil
import subprocess
import sysconfig

import pytest
from torch.utils.cpp_extension import include_paths

from exodus_lightning.ops._extension import _CPU_CFLAGS, cpu_isa_flags, sources_dir

# Every adLIF scan the CPU runs for float: forward, and backward with and without the sums for
# every surrogate kind (kSurrogateGiven = -1 and the built-ins 0..6).
POLICIES = ["AdlifForwardScan<float, float>"] + [
    f"AdlifBackwardScan<{kind}, {sums}, float, float>"
    for kind in range(-1, 7) for sums in ("true", "false")
]

UNIT = """
#include "cpu_scan.h"
#include "adlif_step.h"
namespace exodus {
// The CPU runner's call (cpu_runner.h): the loop is inlined into the parallel lambda, where
// vectorisation can differ from a bare scan_block instantiation.
template <typename P>
void run(const typename P::Args& a) {
  cpu::for_each_block(a.batch, a.features, a.time, [&](int64_t b, int64_t n0, int64_t n1) {
    cpu::scan_block<P>(a, b, n0, n1);
  });
}
%s
}  // namespace exodus
"""


def _feature_loop_line(cpu_scan: str) -> int:
    """Line of the time step's feature loop: the `for` after `#pragma GCC ivdep`."""
    lines = cpu_scan.splitlines()
    pragma = next(i for i, line in enumerate(lines) if "#pragma GCC ivdep" in line)
    return pragma + 2  # 1-based line of the next line


@pytest.mark.slow
def test_every_adlif_scan_policy_is_vectorised(tmp_path):
    compiler = shutil.which("c++") or shutil.which("g++")
    if compiler is None or "clang" in subprocess.run([compiler, "--version"],
                                                       capture_output=True, text=True).stdout:
        pytest.skip("needs GCC (its -fopt-info-vec report)")
    src = sources_dir()
    line = _feature_loop_line((src / "cpu_scan.h").read_text())
    instances = "\n".join(f"template void run<{p}>(const {p}::Args&);" for p in POLICIES)
    unit = tmp_path / "vectorised.cpp"
    unit.write_text(UNIT % instances)
    includes = [f"-I{src}"] + [f"-isystem{path}" for path in include_paths()]
    includes.append(f"-isystem{sysconfig.get_paths()['include']}")
    done = subprocess.run(
        [compiler, "-std=c++20", "-fPIC", *_CPU_CFLAGS, *cpu_isa_flags(), *includes, "-c",
         str(unit), "-o", str(tmp_path / "vectorised.o"), "-fopt-info-vec-all"],
        capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    at_loop = [report for report in done.stderr.splitlines()
               if f"cpu_scan.h:{line}:" in report and ": note:" not in report]
    vectorised = [r for r in at_loop if "optimized: loop vectorized" in r]
    missed = [r for r in at_loop if "missed" in r]
    assert not missed, "\n".join(missed)
    # One walk per forward policy, two (the step at t = 0 apart) per backward one; each
    # vectorised loop is reported once per vector width.
    walks = 1 + 2 * (len(POLICIES) - 1)
    assert len(vectorised) >= walks, "\n".join(at_loop)
