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


def assert_close_by_name(got: Mapping[str, torch.Tensor], want: Mapping[str, torch.Tensor],
                         dtype: torch.dtype) -> None:
    """Same names, and each tensor close to the reference's (compared on the CPU)."""
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name].cpu(), want[name].cpu(), **tolerance(dtype),
                                   msg=lambda m, n=name: f"{n}: {m}")
