"""torch.library.opcheck on every custom op and backend: schema, fake kernels, autograd, AOT."""

from __future__ import annotations

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from exodus_lightning import ops  # noqa: F401 (loads the library)
from exodus_lightning.ops._library import PARAM_GRAD_BITS


def skip_autograd_on_emulation(lib, requires_grad: bool) -> None:
    if requires_grad and lib is not torch.ops.exodus_lightning:
        pytest.skip("the emulation registers kernels, not autograd (its raw ops are compared "
                    "with the reference's gradients in test_raw_ops.py)")


def lif_args(requires_grad: bool, min_v: bool, device: str = "cpu"):
    f64 = dict(dtype=torch.float64, device=device)
    x = torch.randn(2, 9, 3, 4, **f64) + 0.5
    v0 = torch.randn(2, 3, 4, **f64)
    alpha = torch.full((12,), 0.9, **f64)
    threshold = torch.full((12,), 1.0, **f64)
    subtract = torch.full((12,), 1.0, **f64)
    min_v_mem = torch.full((12,), -0.5, **f64) if min_v else None
    tensors = [x, v0, alpha, threshold, subtract, min_v_mem]
    if requires_grad:
        for t in tensors:
            if t is not None:
                t.requires_grad_()
    return (*tensors, 0, 0, 0, 0, [0.5, 1.0])


@pytest.mark.parametrize("requires_grad", [False, True], ids=["nograd", "grad"])
@pytest.mark.parametrize("min_v", [False, True], ids=["noclip", "clip"])
def test_opcheck_lif_forward(raw_backend, requires_grad, min_v):
    lib, device = raw_backend
    skip_autograd_on_emulation(lib, requires_grad)
    torch.library.opcheck(lib.lif_forward.default, lif_args(requires_grad, min_v, device))


# Masks of the wanted parameter gradients: all, none, alpha only, threshold only.
MASKS = {"all": sum(PARAM_GRAD_BITS.values()), "none": 0, "alpha": PARAM_GRAD_BITS["alpha"],
         "threshold": PARAM_GRAD_BITS["threshold"]}


@pytest.mark.parametrize("param_grads", MASKS.values(), ids=MASKS.keys())
@pytest.mark.parametrize("min_v", [False, True], ids=["noclip", "clip"])
@pytest.mark.parametrize("spike_grad", [True, False], ids=["g", "nog"])
def test_opcheck_lif_backward(raw_backend, min_v, param_grads, spike_grad):
    lib, device = raw_backend
    x, v0, alpha, threshold, subtract, min_v_mem, *codes = lif_args(False, min_v, device)
    spikes, v_mem, _ = lib.lif_forward(x, v0, alpha, threshold, subtract, min_v_mem, *codes)
    args = (torch.randn_like(spikes) if spike_grad else None, torch.randn_like(v_mem),
            torch.randn_like(v0), v_mem, None, v0, alpha, threshold, subtract, min_v_mem, *codes,
            param_grads)
    torch.library.opcheck(lib.lif_backward.default, args)


@pytest.mark.parametrize("requires_grad", [False, True], ids=["nograd", "grad"])
def test_opcheck_leaky(raw_backend, requires_grad):
    lib, device = raw_backend
    skip_autograd_on_emulation(lib, requires_grad)
    f64 = dict(dtype=torch.float64, device=device, requires_grad=requires_grad)
    x = torch.randn(2, 7, 5, **f64)
    v0 = torch.randn(2, 5, **f64)
    alpha = torch.full((5,), 0.8, **f64)
    torch.library.opcheck(lib.leaky_forward.default, (x, v0, alpha))
    y, _ = lib.leaky_forward(x.detach(), v0.detach(), alpha.detach())
    torch.library.opcheck(lib.leaky_backward.default,
                          (torch.randn_like(y), torch.randn_like(v0), y, v0.detach(),
                           alpha.detach()))


def test_fake_kernels_return_contiguous_outputs_like_the_real_ones():
    """A non-contiguous input still gives contiguous outputs (the kernels write them densely)."""
    lib = torch.ops.exodus_lightning
    x, v0, alpha, threshold, subtract, min_v_mem, *codes = lif_args(False, True)
    x_t = x.transpose(0, 1).contiguous().transpose(0, 1)  # same values, other strides
    real = lib.lif_forward(x_t, v0, alpha, threshold, subtract, min_v_mem, *codes)
    with FakeTensorMode() as mode:
        fake_args = [mode.from_tensor(t) if isinstance(t, torch.Tensor) else t
                     for t in (x_t, v0, alpha, threshold, subtract, min_v_mem, *codes)]
        fake = lib.lif_forward(*fake_args)
        fake_back = lib.lif_backward(None, None, fake[2], fake[1], None, *fake_args[1:6],
                                     *codes, 15)
    for r, f in zip(real, fake):
        assert r.is_contiguous() and f.is_contiguous() and r.stride() == f.stride()
    assert fake_back[0].dtype == torch.float64 and fake_back[0].is_contiguous()


def test_opcheck_check_values():
    """The op that runs value checks inside compiled graphs (ops/value_checks.py)."""
    from exodus_lightning.ops import _arguments, value_checks

    key = value_checks._KEYS[_arguments.below_threshold_problem]
    threshold = torch.ones(4, dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(torch.ops.exodus_lightning.check_values.default,
                          (key, "threshold", [threshold, -threshold]))
