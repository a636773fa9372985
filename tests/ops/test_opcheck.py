"""torch.library.opcheck on every custom op: schema, fake kernels, autograd registration, AOT."""

from __future__ import annotations

import pytest
import torch

from exodus_lightning import ops  # noqa: F401 (loads the library)
from exodus_lightning.ops._extension import load

lib = torch.ops.exodus_lightning


@pytest.fixture(scope="module", autouse=True)
def _extension():
    load("cpu")


def lif_args(requires_grad: bool, min_v: bool):
    x = torch.randn(2, 9, 3, 4, dtype=torch.float64) + 0.5
    v0 = torch.randn(2, 3, 4, dtype=torch.float64)
    alpha = torch.full((12,), 0.9, dtype=torch.float64)
    threshold = torch.full((12,), 1.0, dtype=torch.float64)
    subtract = torch.full((12,), 1.0, dtype=torch.float64)
    min_v_mem = torch.full((12,), -0.5, dtype=torch.float64) if min_v else None
    tensors = [x, v0, alpha, threshold, subtract, min_v_mem]
    if requires_grad:
        for t in tensors:
            if t is not None:
                t.requires_grad_()
    return (*tensors, 0, 0, 0, 0, [0.5, 1.0])


@pytest.mark.parametrize("requires_grad", [False, True], ids=["nograd", "grad"])
@pytest.mark.parametrize("min_v", [False, True], ids=["noclip", "clip"])
def test_opcheck_lif_forward(requires_grad, min_v):
    torch.library.opcheck(lib.lif_forward.default, lif_args(requires_grad, min_v))


# Bit masks of the wanted parameter gradients: all, none, alpha only, threshold only.
@pytest.mark.parametrize("param_grads", [15, 0, 1, 2], ids=["all", "none", "alpha", "threshold"])
@pytest.mark.parametrize("min_v", [False, True], ids=["noclip", "clip"])
def test_opcheck_lif_backward(min_v, param_grads):
    x, v0, alpha, threshold, subtract, min_v_mem, *codes = lif_args(False, min_v)
    spikes, v_mem, _ = lib.lif_forward(x, v0, alpha, threshold, subtract, min_v_mem, *codes)
    args = (torch.randn_like(spikes), torch.randn_like(v_mem), torch.randn_like(v0), v_mem, None,
            v0, alpha, threshold, subtract, min_v_mem, *codes, param_grads)
    torch.library.opcheck(lib.lif_backward.default, args)


@pytest.mark.parametrize("requires_grad", [False, True], ids=["nograd", "grad"])
def test_opcheck_leaky(requires_grad):
    x = torch.randn(2, 7, 5, dtype=torch.float64, requires_grad=requires_grad)
    v0 = torch.randn(2, 5, dtype=torch.float64, requires_grad=requires_grad)
    alpha = torch.full((5,), 0.8, dtype=torch.float64, requires_grad=requires_grad)
    torch.library.opcheck(lib.leaky_forward.default, (x, v0, alpha))
    y, _ = lib.leaky_forward(x.detach(), v0.detach(), alpha.detach())
    torch.library.opcheck(lib.leaky_backward.default,
                          (torch.randn_like(y), torch.randn_like(v0), y, v0.detach(),
                           alpha.detach()))
