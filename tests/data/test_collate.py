"""Padding collation of variable-length samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from exodus_lightning.data.collate import pad_time_collate


def test_shorter_samples_are_zero_padded_at_the_end() -> None:
    short = np.ones((2, 3), dtype=np.float32)
    long = np.full((4, 3), 2.0, dtype=np.float64)
    inputs, targets = pad_time_collate([(short, 1), (long, np.int64(4))])
    assert inputs.shape == (2, 4, 3) and inputs.dtype == torch.float32
    assert targets.dtype == torch.long and targets.tolist() == [1, 4]
    assert inputs[0, :2].eq(1).all() and inputs[0, 2:].eq(0).all()
    assert inputs[1].eq(2).all()


def test_mismatched_feature_shapes_are_reported() -> None:
    with pytest.raises(ValueError, match="equal features"):
        pad_time_collate([(np.zeros((2, 3)), 0), (np.zeros((2, 4)), 1)])


def test_empty_batch_is_reported() -> None:
    with pytest.raises(ValueError, match="empty batch"):
        pad_time_collate([])
