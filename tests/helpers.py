"""Test helpers: a RunIf-style skip decorator."""

from __future__ import annotations

import shutil

import pytest
import torch


def run_if(*, gpu: bool = False, nvcc: bool = False, cuda_torch: bool = False):
    """Skip a test unless the machine has what it needs (a GPU, nvcc, a CUDA build of torch)."""
    reasons = []
    if gpu and not torch.cuda.is_available():
        reasons.append("needs a CUDA GPU")
    if nvcc:
        from exodus_lightning.ops._extension import cuda_home

        home = cuda_home()
        if home is None or shutil.which(f"{home}/bin/nvcc") is None:
            reasons.append("needs nvcc (CUDA toolkit)")
    if cuda_torch and torch.version.cuda is None:
        reasons.append("needs a CUDA build of torch")
    marks = [pytest.mark.skipif(bool(reasons), reason="; ".join(reasons))]
    if gpu:
        marks.append(pytest.mark.gpu)
    return lambda fn: _apply(fn, marks)


def _apply(fn, marks):
    for mark in marks:
        fn = mark(fn)
    return fn
