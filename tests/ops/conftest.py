"""Fixtures of the op tests: every backend of the raw ops."""

from __future__ import annotations

import pytest
import torch

from exodus_lightning.ops._extension import load
from exodus_lightning.ops.cuda_emulation import emulated_ops

_CUDA = pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU")])
# Devices the autograd-level parity tests run the extension on (the reference runs on the CPU).
DEVICES = ["cpu", _CUDA]
BACKENDS = ["cpu", "cuda_emulation", _CUDA]


@pytest.fixture(scope="module", params=BACKENDS)
def raw_backend(request):
    """(ops namespace, device) of one backend, its library built and loaded: the CPU kernels,
    the CUDA kernels run on the host (ops/cuda_emulation.py), or the CUDA kernels on a GPU."""
    if request.param == "cuda_emulation":
        return emulated_ops(), "cpu"
    load(request.param)
    return torch.ops.exodus_lightning, request.param
