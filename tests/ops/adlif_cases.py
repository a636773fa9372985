"""Cases for the raw ``adlif_forward``/``adlif_backward`` ops, shared by every backend.

Each case runs the raw forward op, then the raw backward op with the case's upstream gradients
and wanted-gradient mask, and compares everything with the autograd reference
(``adlif_reference``) on the CPU in float64 (as raw_cases.py does for LIF).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch

from exodus_lightning.ops._codes import GRADIENTS, SURROGATE_GIVEN
from exodus_lightning.ops._library import ADLIF_PARAM_GRAD_BITS
from exodus_lightning.ops.reference import adlif_reference
from tests.tolerances import tolerance, tolerance_of_sums

from .raw_cases import SHAPES, SURROGATES, custom_surrogate

ADLIF_MASKS = (0, 1, 2, 4, 8, 16, 3, 31)
ALL_GRADS = sum(ADLIF_PARAM_GRAD_BITS.values())


@dataclass(frozen=True)
class AdlifCase:
    shape: tuple[int, int, int]
    surrogate: str = "single_exp"
    mask: int = ALL_GRADS
    gradient: str = "slayer"
    dtype: torch.dtype = torch.float64
    upstream: tuple[bool, bool, bool] = (True, True, True)  # on spikes, u_mem, w
    seed: int = 0

    @property
    def id(self) -> str:
        b, t, n = self.shape
        dtype = str(self.dtype).removeprefix("torch.")
        up = "".join(str(int(u)) for u in self.upstream)
        return f"{b}x{t}x{n}-{self.surrogate}-m{self.mask}-{self.gradient}-{dtype}-up{up}"


def adlif_cases() -> list[AdlifCase]:
    """Every surrogate, mask, gradient, dtype and upstream at least once."""
    cases = [AdlifCase((2, 37, 70), surrogate=s) for s in [*SURROGATES, "custom"]]
    cases += [AdlifCase((3, 8, 21), mask=m, gradient=g)
              for m, g in itertools.product(ADLIF_MASKS, GRADIENTS)]
    cases += [AdlifCase(shape, dtype=dtype, mask=m)
              for shape in SHAPES for dtype in (torch.float32, torch.float16, torch.bfloat16)
              for m in (0, ALL_GRADS)]
    cases += [AdlifCase((2, 37, 70), upstream=up, mask=m)
              for up in itertools.product((False, True), repeat=3) for m in (0, 1, ALL_GRADS)]
    cases += [AdlifCase((2, 37, 70), upstream=up, mask=1, dtype=torch.float16)
              for up in ((False, True, True), (False, False, False))]
    cases.append(AdlifCase((1, 17, 130), surrogate="custom", gradient="exodus", mask=0))
    return cases


def adlif_inputs(shape, seed):
    """Float64 CPU inputs: x, the states u_init, w_init, the per-feature α, β, a, b, θ (in the
    authors' ranges: τ_u ∈ [5, 25], τ_w ∈ [60, 300], a = 120·[0, 1], b = 120·[0, 2]) and the
    upstream gradients on spikes, u_mem, w, u_last, w_last."""
    gen = torch.Generator().manual_seed(seed)
    b, t, n = shape
    f64 = dict(dtype=torch.float64)

    def rand(*size):
        return torch.rand(*size, generator=gen, **f64)

    def randn(*size):
        return torch.randn(*size, generator=gen, **f64)

    x = 6 + 6 * randn(b, t, n)
    u_init, w_init = randn(b, n), randn(b, n)
    alpha = torch.exp(-1 / (5 + 20 * rand(n)))
    beta = torch.exp(-1 / (60 + 240 * rand(n)))
    a, b_coupling = 120 * rand(n), 240 * rand(n)
    threshold = 0.8 + 0.4 * rand(n)
    upstream = (randn(b, t, n), 0.3 * randn(b, t, n), 0.1 * randn(b, t, n), randn(b, n),
                randn(b, n))
    return x, (u_init, w_init, alpha, beta, a, b_coupling, threshold), upstream


def run_adlif_case(ops, device: str, case: AdlifCase) -> None:
    """The raw adLIF ops of ``ops`` on ``device`` against the float64 reference."""
    x, state_inputs, upstream = adlif_inputs(case.shape, case.seed)
    state = torch.float32 if case.dtype in (torch.float16, torch.bfloat16) else case.dtype
    # Round the inputs to the case's dtypes first, so both sides see the same numbers.
    x = x.to(case.dtype).double()
    state_inputs = [t.to(state).double() for t in state_inputs]
    g_s, g_u, g_w, g_ulast, g_wlast = upstream
    g_s = g_s.to(case.dtype).double()
    g_u, g_w, g_ulast, g_wlast = (t.to(state).double() for t in (g_u, g_w, g_ulast, g_wlast))
    surrogate = custom_surrogate if case.surrogate == "custom" else SURROGATES[case.surrogate]

    leaves = [t.clone().requires_grad_() for t in (x, *state_inputs)]
    x_l, u0_l, w0_l, alpha_l, beta_l, a_l, b_l, theta_l = leaves
    outs = adlif_reference(x_l, alpha_l, beta_l, a_l, b_l, theta_l, u0_l, w0_l, surrogate,
                           case.gradient)
    use = (*case.upstream, True, True)
    loss = sum((o * g).sum() for o, g, u in zip(outs, (g_s, g_u, g_w, g_ulast, g_wlast), use)
               if u)
    # In the order of the backward op's outputs.
    ref_grads = torch.autograd.grad(loss, [x_l, u0_l, w0_l, alpha_l, beta_l, a_l, b_l, theta_l])

    def on(t, dtype=state):
        return t.to(device=device, dtype=dtype)

    u_init, w_init, alpha, beta, a, b, threshold = (on(t) for t in state_inputs)
    builtin = case.surrogate != "custom"
    kernel = (surrogate.kernel_code, list(surrogate.kernel_params)) if builtin else (
        SURROGATE_GIVEN, [])
    x_dev = on(x, case.dtype)
    got = ops.adlif_forward(x_dev, u_init, w_init, alpha, beta, a, b, threshold,
                            GRADIENTS[case.gradient], *kernel)
    tol = tolerance(case.dtype)
    for name, g, want in zip(("spikes", "u_mem", "w", "u_last", "w_last"), got, outs):
        torch.testing.assert_close(g.cpu().double(), want.detach(), **tol,
                                   msg=lambda m, n=name: f"{n}: {m}")
    spikes, u_mem, w, _, _ = got
    assert spikes.dtype == case.dtype and u_mem.dtype == w.dtype == state
    if spikes.numel() >= 1000:  # the reset and adaptation really happen in the larger cases
        assert spikes.sum() > 0.05 * spikes.numel()

    sigma = None if builtin else surrogate(u_mem, threshold).contiguous()
    spike_grad = on(g_s, case.dtype) if case.upstream[0] else None
    # x is read for dL/dα only; without a spike gradient the op works in the state dtype.
    x_given = None
    if case.mask & ADLIF_PARAM_GRAD_BITS["alpha"]:
        x_given = x_dev if spike_grad is not None else x_dev.to(state)
    grad_x, grad_u0, grad_w0, *params = ops.adlif_backward(
        spike_grad, on(g_u) if case.upstream[1] else None, on(g_w) if case.upstream[2] else None,
        on(g_ulast), on(g_wlast), u_mem, w, x_given, sigma, u_init, w_init, alpha, beta, a, b,
        threshold, GRADIENTS[case.gradient], *kernel, case.mask)
    assert grad_x.is_contiguous() and grad_x.dtype == (case.dtype if case.upstream[0] else state)
    for name, g, want in zip(("x", "u_init", "w_init"), (grad_x, grad_u0, grad_w0), ref_grads):
        torch.testing.assert_close(g.cpu().double(), want, **tolerance_of_sums(want, case.dtype),
                                   msg=lambda m, n=name: f"grad {n}: {m}")
    # Sums of B·T terms below float64: tolerance grows with sqrt(B·T) (raw_cases.py says why),
    # relative to the largest sum (the terms of dL/dβ are large: w_{t−1} − a·u⁺_t − b·s_t).
    terms = math.sqrt(case.shape[0] * case.shape[1])
    for (name, bit), g, want in zip(ADLIF_PARAM_GRAD_BITS.items(), params, ref_grads[3:]):
        if not case.mask & bit:
            assert g.shape == (0,), name
            continue
        assert g.shape == (case.shape[0], case.shape[2]), name
        sum_tol = tol if case.dtype == torch.float64 else {
            "rtol": tol["rtol"] * terms, "atol": tol["atol"] * terms * max(1.0, want.abs().max())}
        torch.testing.assert_close(g.sum(0).cpu().double(), want, **sum_tol,
                                   msg=lambda m, n=name: f"grad {n}: {m}")
