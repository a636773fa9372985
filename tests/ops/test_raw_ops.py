"""The raw ops of every backend equal the reference: CPU kernels, CUDA kernels on a GPU, and
the CUDA kernels compiled for the host.

``exodus_lightning_cuda_emulation`` runs the very kernel bodies of extensions/exodus/
cuda_kernels.cuh as loops over the grid (see ops/cuda_emulation.py), so every machine checks the
CUDA code's indexing, time chunks, parameter-gradient variants and masks; a GPU runs them for real.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .adlif_cases import AdlifCase, adlif_cases, run_adlif_case
from .alif_cases import alif_cases, run_alif_case
from .raw_cases import SHAPES, SURROGATES, Case, lif_cases, run_leaky_case, run_lif_case


@pytest.mark.parametrize("case", lif_cases(), ids=lambda case: case.id)
def test_lif_ops_match_reference(raw_backend, case):
    run_lif_case(*raw_backend, case)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16],
                         ids=["f64", "f32", "bf16"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_leaky_ops_match_reference(raw_backend, shape, dtype):
    run_leaky_case(*raw_backend, shape, dtype)


@given(
    shape=st.tuples(st.integers(1, 3), st.integers(1, 40), st.integers(1, 140)),
    surrogate=st.sampled_from([*SURROGATES, "custom"]),
    mask=st.integers(0, 15),
    reset=st.sampled_from(["subtract", "zero"]),
    gradient=st.sampled_from(["exodus", "slayer"]),
    max_spikes=st.sampled_from([None, 1, 2]),
    clip=st.sampled_from([None, -0.6, 0.2]),
    dtype=st.sampled_from([torch.float64, torch.float32]),
    upstream=st.tuples(st.booleans(), st.booleans()),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_drawn_lif_cases_match_reference(raw_backend, **case):
    run_lif_case(*raw_backend, Case(**case))


@pytest.mark.parametrize("shape", [(0, 5, 3), (2, 0, 3), (2, 5, 0)], ids=str)
def test_empty_shapes(raw_backend, shape):
    ops, device = raw_backend
    b, _, n = shape
    x = torch.randn(shape, device=device)
    v_init = torch.randn(b, n, device=device)
    alpha, threshold = torch.full((n,), 0.9, device=device), torch.ones(n, device=device)
    spikes, v_mem, v_last = ops.lif_forward(x, v_init, alpha, threshold, threshold, None, 0, 0,
                                            0, 0, [0.5, 1.0])
    assert spikes.shape == v_mem.shape == shape and torch.equal(v_last, v_init)
    g_last = torch.randn(b, n, device=device)
    grad_x, grad_v0, grad_alpha, *_ = ops.lif_backward(
        torch.ones_like(x), None, g_last, v_mem, None, v_init, alpha, threshold, threshold, None,
        0, 0, 0, 0, [0.5, 1.0], 15)
    assert grad_x.shape == shape and torch.equal(grad_v0, g_last)
    assert torch.equal(grad_alpha, torch.zeros(b, n, device=device))
    y, y_last = ops.leaky_forward(x, v_init, alpha)
    assert y.shape == shape and torch.equal(y_last, v_init)
    grad_x, grad_v0, grad_alpha = ops.leaky_backward(torch.ones_like(x), g_last, y, v_init, alpha)
    assert torch.equal(grad_v0, g_last) and not grad_alpha.any()


@pytest.mark.parametrize("case", alif_cases(), ids=lambda case: case.id)
def test_alif_ops_match_reference(raw_backend, case):
    run_alif_case(*raw_backend, case)


@pytest.mark.parametrize("case", adlif_cases(), ids=lambda case: case.id)
def test_adlif_ops_match_reference(raw_backend, case):
    run_adlif_case(*raw_backend, case)


@given(
    shape=st.tuples(st.integers(1, 3), st.integers(1, 40), st.integers(1, 140)),
    surrogate=st.sampled_from([*SURROGATES, "custom"]),
    mask=st.integers(0, 31),
    gradient=st.sampled_from(["exodus", "slayer"]),
    dtype=st.sampled_from([torch.float64, torch.float32]),
    upstream=st.tuples(st.booleans(), st.booleans(), st.booleans()),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_drawn_adlif_cases_match_reference(raw_backend, **case):
    run_adlif_case(*raw_backend, AdlifCase(**case))
