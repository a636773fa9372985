"""How close a kernel's result must be to the float64 reference, per dtype of the inputs."""

from __future__ import annotations

from collections.abc import Mapping

import torch

# float64: the same arithmetic up to rounding. float32 and half: the reference runs in float64,
# the kernels in float32 (half inputs keep a float32 state and round the outputs to their dtype).
TOLERANCES = {
    torch.float64: dict(rtol=1e-10, atol=1e-10),
    torch.float32: dict(rtol=2e-5, atol=2e-5),
    torch.float16: dict(rtol=2e-3, atol=2e-3),
    torch.bfloat16: dict(rtol=1.6e-2, atol=1.6e-2),
}


def tolerance(dtype: torch.dtype) -> dict:
    """rtol and atol for torch.testing.assert_close at this input dtype."""
    return TOLERANCES[dtype]


def tolerance_of_sums(want: torch.Tensor, dtype: torch.dtype) -> dict:
    """tolerance(dtype), below float64 with atol relative to want's largest magnitude (at
    least 1).

    For gradients through a chain over time: each element sums terms as large as the tensor's
    largest values, so its rounding error scales with those, not with the element (a float32
    gradient of 0.9 among values of 1.6e3 may differ by 4e-5 between two summation orders).
    float64 keeps its absolute 1e-10.
    """
    tol = tolerance(dtype)
    if dtype == torch.float64:
        return tol
    scale = max(1.0, want.abs().max().item()) if want.numel() else 1.0
    return dict(rtol=tol["rtol"], atol=tol["atol"] * scale)


def assert_close_by_name(got: Mapping[str, torch.Tensor], want: Mapping[str, torch.Tensor],
                         dtype: torch.dtype) -> None:
    """Same names, and each tensor close to the reference's (compared on the CPU)."""
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name].cpu(), want[name].cpu(), **tolerance(dtype),
                                   msg=lambda m, n=name: f"{n}: {m}")
