"""The CUDA kernels run on the host, so machines without a GPU test the GPU code itself.

``exodus_lightning_cuda_emulation::*`` has the schemas of the ``exodus_lightning`` ops, and its
CPU kernels are ``extensions/exodus/cuda_kernels.cuh`` and ``ops.h`` compiled by the host
compiler (``cuda_emulation.h`` turns each launch into loops over the grid): the CUDA kernels'
indexing, time chunks, variants and masks, with no second copy of their bodies. Slow by design;
for tests only.
"""

from __future__ import annotations

import threading

import torch

from . import _extension
from ._library import define_library

NAMESPACE = "exodus_lightning_cuda_emulation"
_lock = threading.Lock()
_lib: torch.library.Library | None = None


def emulated_ops():
    """``torch.ops.exodus_lightning_cuda_emulation``, building its library on first use."""
    global _lib
    with _lock:
        if _lib is None:
            _lib = define_library(NAMESPACE)
    _extension.load("cuda_emulation")
    return getattr(torch.ops, NAMESPACE)
