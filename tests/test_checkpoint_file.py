"""non_finite_tensors: every floating dtype, NaN and infinities counted apart, others skipped."""

from __future__ import annotations

import math

import pytest
import torch

from exodus_lightning.checkpoint_file import non_finite_tensors


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_non_finite_tensors_names_and_counts_nan_and_inf(dtype):
    weight = torch.randn(4, 5, dtype=dtype)
    weight[0, 0], weight[1, 1], weight[2, 2] = math.nan, math.inf, -math.inf
    state_dict = {
        "finite": torch.randn(3, dtype=dtype),
        "weight": weight,
        "empty_state": torch.zeros(0, dtype=dtype),
        "steps": torch.arange(3),
        "not_a_tensor": 1.5,
    }
    assert non_finite_tensors(state_dict) == {"weight": "1 NaN, 2 inf of 20"}


def test_values_at_the_float32_limit_are_finite():
    largest = torch.finfo(torch.float32).max
    assert non_finite_tensors({"a": torch.tensor([largest, -largest, 0.0])}) == {}
