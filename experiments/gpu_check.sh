#!/usr/bin/env bash
# The GPU check: build the kernels, run every GPU test and the GPU benchmark, print one summary.
#
#   bash experiments/gpu_check.sh        # from a plain copy of the repository (~4-6 min on an H200)
#
# Made for a bare GPU machine: it needs python3 with a CUDA build of torch, pytest, hypothesis,
# ninja and nvcc (pytest-xdist if there: 8 test workers), and nothing of tonic, wandb,
# jsonargparse or an install of this package (the repository goes on PYTHONPATH). Wheels in
# .whl/ (peers for the benchmark, e.g. snntorch) are unpacked into a temp folder first.
#
# Time: every stage runs under its own limit, and on a machine of more than 4 cores (the lent
# 16-core GPU machine) the limits, their 5 s kill-afters and the register dump's 20 s add up to
# 535 s at most, under the device tool's 600 s per command: environment 25, wheels 30, the three
# builds at once 150, GPU tests 90, the other tests 45, benchmark 145. On 4 cores or fewer (CI, a
# rehearsal) each limit is 10x as long, as no device time is counted there. A stage cut off by
# its limit still leaves its log, and the tests' per-test lines name what passed and failed up
# to then.
#
# Output: in $OUT (a temp folder when unset) three files only, rewritten after every stage so
# that a run killed from outside still leaves them:
#   summary.txt        the summary (also printed at the end)
#   gpu_benchmark.md   the benchmark's printed tables (with a GPU)
#   gpu_check.tgz      everything: logs/<stage>.log, logs/registers.txt (cuobjdump's registers
#                      and spills per kernel), summary.txt, and the benchmark's tables as
#                      results/benchmark_gpu/{ops,binning,network}.md and result.json. To put
#                      them into docs/gpu.md on any machine, in the repository root:
#                        tar -xzf gpu_check.tgz results
#                        python -m experiments.tables --only benchmark_gpu,training_speed --readme
#                      (without a GPU, tables.py copies benchmark_gpu's tables from results/
#                      instead of running it).
# Exit status: 0 all passed; 1 a stage failed; 2 no GPU visible (the CUDA kernels were compiled
# and their host emulation tested, which is all a machine without a GPU can do).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
work=$(mktemp -d)  # packed into $out/gpu_check.tgz: the device tool returns at most 8 files
mkdir -p "$work/logs"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export EXODUS_LIGHTNING_CACHE=${EXODUS_LIGHTNING_CACHE:-$(mktemp -d)}
python=${PYTHON:-python3}
failed=()
summary="$out/summary.txt"
: > "$summary"
# The machine's cores (GNU nproc would answer $OMP_NUM_THREADS where that is set).
cores=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
scale=1
if [ "$cores" -le 4 ]; then scale=10; fi

say() { echo "$*" | tee -a "$summary"; }

# Rewrites $out/gpu_check.tgz from $work (next to it first, so $out never holds a half file).
pack() {
  cp "$summary" "$work/summary.txt"
  tar -czf "$work.tgz" -C "$work" $(ls "$work") && mv -f "$work.tgz" "$out/gpu_check.tgz"
}

# stage NAME SECONDS COMMAND...: runs COMMAND with a time limit (x scale), output in
# $work/logs/NAME.log.
stage() {
  local name=$1 limit=$(($2 * scale))
  shift 2
  local start=$SECONDS rc
  echo "== $name (limit ${limit} s): $*"
  timeout --kill-after=5 "$limit" "$@" > "$work/logs/$name.log" 2>&1
  rc=$?
  local took=$((SECONDS - start))
  if [ "$rc" -eq 0 ]; then
    say "$name: ok in ${took} s"
  elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    say "$name: TIMED OUT after ${took} s (limit ${limit} s); see logs/$name.log"
    failed+=("$name")
  else
    say "$name: FAILED (exit $rc) in ${took} s; see logs/$name.log"
    failed+=("$name")
  fi
  return "$rc"
}

# tally NAME: the counts and the failures of a pytest stage, from its per-test lines (-v), so
# they are named also when the stage was cut off before pytest's own summary.
tally() {
  "$python" - "$work/logs/$1.log" "$1" <<'EOF' | tee -a "$summary"
import re, sys
text = open(sys.argv[1], errors="replace").read().splitlines()
results = [line for line in text if re.search(r"\[ *\d+%\]", line) and "::" in line]
words = re.compile(r"\b(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b")
counts = {}
bad = []
for line in results:
    found = words.search(line)
    if found:
        counts[found[1]] = counts.get(found[1], 0) + 1
        if found[1] in ("FAILED", "ERROR"):
            bad.append(re.sub(r"^\[gw\d+\] \[ *\d+%\] ", "", line).strip())
final = [line for line in text
         if re.match(r"^=+ .*\b(passed|failed|error|skipped|deselected)", line)]
tally = ", ".join(f"{n} {word.lower()}" for word, n in counts.items()) or "no test ran"
end = f"pytest: {final[-1].strip('= ')}" if final else "pytest's summary missing (cut off?)"
print(f"{sys.argv[2]}: {tally} | {end}")
for line in bad[:20]:
    print("  " + line)
if len(bad) > 20:
    print(f"  ... and {len(bad) - 20} more")
EOF
}

# 1. What is here.
stage environment 25 "$python" -c "
import os, shutil, subprocess, sys, torch
print('python', sys.version.split()[0], '| torch', torch.__version__, '| CUDA', torch.version.cuda,
      '| cores', os.cpu_count())
print('GPUs:', [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])
nvcc = shutil.which('nvcc')
print('nvcc:', nvcc and subprocess.run([nvcc, '--version'], capture_output=True,
                                       text=True).stdout.strip().splitlines()[-1])
for name in ('pytest', 'xdist', 'hypothesis', 'ninja', 'lightning', 'tonic', 'wandb',
             'jsonargparse', 'spikingjelly', 'snntorch', 'norse', 'cupy', 'triton'):
    try:
        module = __import__(name)
        print(name, getattr(module, '__version__', 'present'))
    except Exception as error:
        print(name, 'missing:', type(error).__name__)
"
cat "$work/logs/environment.log"
gpu=$("$python" -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null || echo 0)
pack

if [ -d .whl ] && ls .whl/*.whl > /dev/null 2>&1; then
  stage wheels 30 "$python" -m pip install -q --no-index --no-deps --no-compile \
    --no-cache-dir --upgrade --target /tmp/gpu_check_site .whl/*.whl \
    && export PYTHONPATH="$PYTHONPATH:/tmp/gpu_check_site"
  pack
fi

# 2. Build the CPU, CUDA and CUDA-emulation libraries at once (with no GPU, for an H100/H200:
#    sm_90). Each is a few translation units that ninja compiles in parallel; the CUDA part's
#    longest (LIF) decides the stage's time.
if [ "$gpu" != 1 ]; then
  export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
fi
stage build_cpu 150 "$python" -m exodus_lightning.ops.build &
cpu_build=$!
stage build_emulation 150 "$python" -c "
from exodus_lightning.ops._extension import load
print('cuda_emulation:', load('cuda_emulation'))
" &
emulation_build=$!
stage build_cuda 150 "$python" -m exodus_lightning.ops.build --no-cpu --cuda
cuda_built=$?
wait "$cpu_build" || failed+=("build_cpu")
wait "$emulation_build" || failed+=("build_emulation")
grep -hE "^(cpu|cuda|cuda_emulation): " "$work/logs/build_cpu.log" "$work/logs/build_cuda.log" \
  "$work/logs/build_emulation.log" | tee -a "$summary"
# What ptxas made of the kernels (registers, spills, occupancy; docs/gpu.md), beside the
# benchmark's times: the measure for a change of the kernels' chunk or launch bounds.
library=$(sed -n 's/^cuda: \(.*\) ([0-9.]* s)$/\1/p' "$work/logs/build_cuda.log")
cuobjdump=$(command -v cuobjdump || echo "${CUDA_HOME:-/usr/local/cuda}/bin/cuobjdump")
if [ -n "$library" ] && timeout 10 "$cuobjdump" --dump-resource-usage "$library" \
    > "$work/logs/registers.txt" 2>&1; then
  timeout 10 "$python" -m experiments.kernel_registers "$work/logs/registers.txt" \
    | tee -a "$summary"
else
  say "registers: not recorded (no CUDA library or no cuobjdump)"
fi
pack

# 3. The tests that exercise the CUDA path (named files: collecting all of tests/ would import
#    tonic and wandb, which a bare GPU machine lacks); the GPU ones first, in a stage of their
#    own. Without a GPU these are skipped and the rest runs the CUDA kernels' host emulation.
tests=(tests/ops/test_cuda.py tests/ops/test_raw_ops.py tests/ops/test_opcheck.py
       tests/ops/test_lif_parity.py tests/ops/test_leaky_parity.py tests/nn/test_devices.py)
# GPU_CHECK_TESTS="FILE ...": other files (the test suite's own run of this script checks the
# stages with a few, not again the ~1100 tests the suite itself runs).
if [ -n "${GPU_CHECK_TESTS:-}" ]; then read -r -a tests <<< "$GPU_CHECK_TESTS"; fi
# -o addopts=: the suite's own xdist options need pytest-xdist; its workers are asked for here
# only when it is installed. --dist load: one file (test_lif_parity: 1138 tests) on one worker
# would be most of the stage.
# GPU_CHECK_JOBS=N: N workers instead (0: none, one process).
workers=()
jobs=${GPU_CHECK_JOBS:-$cores}
if [ "$jobs" -gt 8 ]; then jobs=8; fi
if [ "$jobs" -gt 0 ] && "$python" -c "import xdist" 2> /dev/null; then
  workers=(-n "$jobs" --dist load)
fi
pytest=("$python" -m pytest -o addopts= -p no:cacheprovider "${workers[@]}" -v -rfE
        --durations=10)
if [ "$cuda_built" -eq 0 ]; then
  stage tests_gpu 90 "${pytest[@]}" -m gpu "${tests[@]}"
  tally tests_gpu
else
  say "tests_gpu: skipped, the CUDA build failed (logs/build_cuda.log)"
fi
pack
stage tests_other 45 "${pytest[@]}" -m "not gpu" "${tests[@]}"
tally tests_other
pack

# 4. The benchmark (op bandwidth and the open-neuromorphic network, peers side by side); no
#    network row starts after --budget s, so the slowest (a compiled peer) still ends in time.
if [ "$gpu" != 1 ]; then
  say "benchmark: skipped, no GPU visible"
elif [ "$cuda_built" -ne 0 ]; then
  say "benchmark: skipped, the CUDA build failed (logs/build_cuda.log)"
else
  stage benchmark 145 "$python" experiments/benchmark_gpu.py --repeats 15 --budget 90 \
    --out "$work/results/benchmark_gpu"
  cp "$work/logs/benchmark.log" "$out/gpu_benchmark.md"
fi
pack

echo
echo "== summary (in $out: summary.txt, gpu_benchmark.md, gpu_check.tgz) =="
cat "$summary"
if [ "$gpu" = 1 ] && [ -f "$work/logs/benchmark.log" ]; then
  grep -E "^(#|Copy|\|)" "$work/logs/benchmark.log"
fi
if [ "${#failed[@]}" -gt 0 ]; then
  echo "FAILED stages: ${failed[*]}"
  exit 1
fi
if [ "$gpu" != 1 ]; then
  echo "NO GPU: the CUDA kernels compiled and their host emulation passed; the GPU run is owed."
  exit 2
fi
echo "GPU check passed."
