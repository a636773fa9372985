#!/usr/bin/env bash
# The GPU check: build the kernels, run every GPU test and the GPU benchmark, print one summary.
#
#   bash experiments/gpu_check.sh        # from a plain copy of the repository (~3-5 min on an H200)
#
# Made for a bare GPU machine: it needs python3 with a CUDA build of torch, pytest, hypothesis,
# ninja and nvcc, and nothing of tonic, wandb, jsonargparse or an install of this package (the
# repository goes on PYTHONPATH). Wheels in .whl/ (peers for the benchmark, e.g. snntorch) are
# unpacked into a temp folder first. Every stage runs under its own time limit (all together
# within 8 minutes), its whole output stays in $OUT (a temp folder when unset), and the last
# lines are the summary.
# Exit status: 0 all passed; 1 a stage failed; 2 no GPU visible (the CUDA kernels were compiled
# and their host emulation tested, which is all a machine without a GPU can do).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export EXODUS_LIGHTNING_CACHE=${EXODUS_LIGHTNING_CACHE:-$(mktemp -d)}
python=${PYTHON:-python3}
failed=()
summary="$out/summary.txt"
: > "$summary"

say() { echo "$*" | tee -a "$summary"; }

# stage NAME SECONDS COMMAND...: runs COMMAND with a time limit, output in $out/NAME.log.
stage() {
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS rc
  echo "== $name (limit ${limit} s): $*"
  timeout --kill-after=10 "$limit" "$@" > "$out/$name.log" 2>&1
  rc=$?
  local took=$((SECONDS - start))
  if [ "$rc" -eq 0 ]; then
    say "$name: ok in ${took} s"
  elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    say "$name: TIMED OUT after ${took} s (limit ${limit} s); see $out/$name.log"
    failed+=("$name")
  else
    say "$name: FAILED (exit $rc) in ${took} s; see $out/$name.log"
    failed+=("$name")
  fi
  return "$rc"
}

# 1. What is here.
stage environment 60 "$python" -c "
import shutil, subprocess, sys, torch
print('python', sys.version.split()[0], '| torch', torch.__version__, '| CUDA', torch.version.cuda)
print('GPUs:', [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])
nvcc = shutil.which('nvcc')
print('nvcc:', nvcc and subprocess.run([nvcc, '--version'], capture_output=True, text=True).stdout.strip().splitlines()[-1])
for name in ('pytest', 'hypothesis', 'ninja', 'lightning', 'tonic', 'wandb', 'jsonargparse', 'spikingjelly', 'snntorch', 'norse', 'cupy', 'triton'):
    try:
        module = __import__(name)
        print(name, getattr(module, '__version__', 'present'))
    except Exception as error:
        print(name, 'missing:', type(error).__name__)
"
cat "$out/environment.log"
gpu=$("$python" -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null || echo 0)

if [ -d .whl ] && ls .whl/*.whl > /dev/null 2>&1; then
  stage wheels 120 "$python" -m pip install -q --no-index --no-deps --no-compile \
    --no-cache-dir --upgrade --target /tmp/gpu_check_site .whl/*.whl \
    && export PYTHONPATH="$PYTHONPATH:/tmp/gpu_check_site"
fi

# 2. Build the CPU and CUDA libraries at once (with no GPU, for an H100/H200: sm_90).
if [ "$gpu" != 1 ]; then
  export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
fi
# 150 s each fits the lent 16-core machine with room (~1 min there); a small machine (the 2-core
# CI, where both builds share the cores) gets twice as long, as nothing there counts device time.
build_limit=150
if [ "$(nproc)" -le 4 ]; then build_limit=300; fi
stage build_cpu "$build_limit" "$python" -m exodus_lightning.ops.build &
cpu_build=$!
stage build_cuda "$build_limit" "$python" -m exodus_lightning.ops.build --no-cpu --cuda
wait "$cpu_build" || failed+=("build_cpu")
grep -hE "^(cpu|cuda): " "$out/build_cpu.log" "$out/build_cuda.log" | tee -a "$summary"

# 3. The tests that exercise the CUDA path (named files: collecting all of tests/ would import
#    tonic and wandb, which a bare GPU machine lacks). Without a GPU they still run the CUDA
#    kernels' host emulation.
tests=(tests/ops/test_cuda.py tests/ops/test_raw_ops.py tests/ops/test_opcheck.py
       tests/ops/test_lif_parity.py tests/ops/test_leaky_parity.py tests/nn/test_devices.py)
# -o addopts=: one process, whether or not pytest-xdist (the suite's addopts) is installed there.
stage tests 170 "$python" -m pytest -o addopts= -p no:cacheprovider -q -rfEs "${tests[@]}"
say "tests: $(grep -E "(passed|failed|error)" "$out/tests.log" | tail -1)"
grep -E "^(FAILED|ERROR) " "$out/tests.log" | head -20 | tee -a "$summary"

# 4. The benchmark (op bandwidth and the open-neuromorphic network, peers side by side).
if [ "$gpu" = 1 ]; then
  stage benchmark 170 "$python" experiments/benchmark_gpu.py --repeats 15 --budget 110 \
    --json "$out/gpu_benchmark.json" --out "$out/tables"
  cp "$out/benchmark.log" "$out/gpu_benchmark.md"
else
  say "benchmark: skipped, no GPU visible"
fi

echo
echo "== summary (all output in $out) =="
cat "$summary"
if [ "$gpu" = 1 ]; then
  grep -E "^(#|Copy|\|)" "$out/benchmark.log"
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
