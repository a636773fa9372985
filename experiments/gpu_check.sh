#!/usr/bin/env bash
# On a machine with a GPU: build the CUDA kernels, run the GPU tests and the GPU benchmark, and
# print one summary. Usage: bash experiments/gpu_check.sh   (about 3-5 minutes)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-$(mktemp -d)}
python -c "import torch; assert torch.cuda.is_available(), 'no GPU visible'; print('GPU:', torch.cuda.get_device_name(0), '| torch', torch.__version__, '| CUDA', torch.version.cuda)"
python -m exodus_lightning.ops.build --cuda 2>&1 | tail -3
python -m pytest -q -m gpu tests/ 2>&1 | tee "$out/gpu_tests.txt" | tail -5
python experiments/benchmark_ops.py --devices cuda --repeats 20 2>/dev/null | tee "$out/gpu_benchmark.md"
echo "== summary =="
echo "GPU tests: $(tail -1 "$out/gpu_tests.txt")"
grep -E "^\| \(" "$out/gpu_benchmark.md" | head -4
grep -E "^Time at" "$out/gpu_benchmark.md"
