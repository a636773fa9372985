"""Cases for the raw ``lif_forward``/``lif_backward``/``leaky_*`` ops, shared by every backend.

One list of cases feeds the CUDA kernels run on the host (test_cuda_emulation.py) and on a GPU
(test_cuda.py): each case runs the raw forward op, then the raw backward op with the upstream
gradients and the wanted-gradient mask of the case, and compares everything with the autograd
reference (``lif_reference``) on the CPU in float64.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch

from exodus_lightning.ops import surrogate as sg
from exodus_lightning.ops._codes import GRADIENTS, RESETS, SURROGATE_GIVEN
from exodus_lightning.ops._library import PARAM_GRAD_BITS
from exodus_lightning.ops.reference import leaky_integrate_reference, lif_reference
from tests.tolerances import tolerance, tolerance_of_sums

SURROGATES = {
    "single_exp": sg.SingleExponential(),
    "periodic_exp": sg.PeriodicExponential(),
    "heaviside": sg.Heaviside(window=0.3),
    "gaussian": sg.Gaussian(),
    "fast_sigmoid": sg.FastSigmoid(),
    "arctan": sg.ArcTan(),
    "triangle": sg.Triangle(),
}


def custom_surrogate(v, threshold):
    """Not a built-in: the backward op gets sigma precomputed (kSurrogateGiven)."""
    return 0.7 / (1 + (3 * (v - threshold)).abs()) ** 3


MASKS = (0, 1, 2, 3, 4, 8, 15)
# Shapes that reach the kernels' edges: T shorter than, equal to and not a multiple of the time
# chunks (8 backward, 16 forward); batch·features not a multiple of the 64-thread block.
SHAPES = ((2, 1, 5), (3, 8, 21), (2, 37, 70), (1, 17, 130))


@dataclass(frozen=True)
class Case:
    shape: tuple[int, int, int]
    surrogate: str = "single_exp"
    mask: int = 15
    reset: str = "subtract"
    gradient: str = "exodus"
    max_spikes: int | None = None
    clip: float | None = None
    dtype: torch.dtype = torch.float64
    upstream: tuple[bool, bool] = (True, True)  # gradients on spikes, on the membrane
    seed: int = 0

    @property
    def id(self) -> str:
        b, t, n = self.shape
        dtype = str(self.dtype).removeprefix("torch.")
        return (f"{b}x{t}x{n}-{self.surrogate}-m{self.mask}-{self.reset}-{self.gradient}-"
                f"K{self.max_spikes}-clip{self.clip}-{dtype}-g{int(self.upstream[0])}"
                f"h{int(self.upstream[1])}")


def lif_cases() -> list[Case]:
    """Every surrogate, mask, reset, gradient, spike cap, clip and dtype at least once."""
    cases = []
    for surrogate in [*SURROGATES, "custom"]:
        cases.append(Case((2, 37, 70), surrogate=surrogate, clip=-0.5))
    for mask, clip in itertools.product(MASKS, (None, -0.5, 0.3)):
        cases.append(Case((3, 8, 21), mask=mask, clip=clip))
    for reset, gradient, max_spikes in itertools.product(RESETS, GRADIENTS, (None, 1, 3)):
        cases.append(Case((1, 17, 130), reset=reset, gradient=gradient, max_spikes=max_spikes,
                          clip=-0.4))
    for shape in SHAPES:
        for dtype in (torch.float32, torch.float16, torch.bfloat16):
            cases.append(Case(shape, dtype=dtype, mask=3, clip=-0.5))
    for upstream in ((False, True), (True, False), (False, False)):
        cases.append(Case((2, 37, 70), upstream=upstream, mask=1))
        cases.append(Case((2, 37, 70), upstream=upstream, mask=0, dtype=torch.float16))
    cases.append(Case((2, 37, 70), surrogate="custom", mask=0, reset="zero", max_spikes=1))
    return cases


def _inputs(case: Case):
    """Float64 CPU inputs of a case: x, v_init, per-feature α, θ, subtract, min_v."""
    gen = torch.Generator().manual_seed(case.seed)
    b, t, n = case.shape
    f64 = dict(dtype=torch.float64)
    x = torch.randn(b, t, n, generator=gen, **f64) * 1.5 + 0.3
    v_init = torch.randn(b, n, generator=gen, **f64) * 0.5
    alpha = torch.rand(n, generator=gen, **f64) * 0.5 + 0.45
    threshold = torch.rand(n, generator=gen, **f64) * 0.5 + 0.75
    subtract = threshold * (torch.rand(n, generator=gen, **f64) * 0.4 + 0.8)
    min_v = None if case.clip is None else torch.full((n,), case.clip, **f64)
    upstream = (torch.randn(b, t, n, generator=gen, **f64),
                0.1 * torch.randn(b, t, n, generator=gen, **f64),
                torch.randn(b, n, generator=gen, **f64))
    return x, v_init, alpha, threshold, subtract, min_v, upstream


def _state_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def run_lif_case(ops, device: str, case: Case) -> None:
    """The raw ops of ``ops`` on ``device`` against the float64 reference, for one case."""
    x, v_init, alpha, threshold, subtract, min_v, (w_s, w_v, w_last) = _inputs(case)
    state = _state_dtype(case.dtype)
    # Round the inputs to the case's dtype first, so both sides see the same numbers.
    x = x.to(case.dtype).double()
    if case.dtype != torch.float64:
        v_init, alpha, threshold, subtract, w_v, w_last = (
            t.to(state).double() for t in (v_init, alpha, threshold, subtract, w_v, w_last))
        w_s = w_s.to(case.dtype).double()
    surrogate = custom_surrogate if case.surrogate == "custom" else SURROGATES[case.surrogate]
    max_code = case.max_spikes or 0

    # Reference: autograd through the BPTT loop, in float64.
    leaves = [t.clone().requires_grad_() for t in (x, v_init, alpha, threshold, subtract)]
    min_leaf = None if min_v is None else min_v.clone().requires_grad_()
    x_leaf, v_init_leaf, alpha_leaf, threshold_leaf, subtract_leaf = leaves
    spikes_ref, v_mem_ref, v_last_ref = lif_reference(
        x_leaf, alpha_leaf, threshold_leaf, v_init_leaf, subtract_leaf, min_leaf,
        case.max_spikes, surrogate, case.reset, case.gradient)
    use_g, use_h = case.upstream
    loss = (v_last_ref * w_last).sum()
    if use_g:
        loss = loss + (spikes_ref * w_s).sum()
    if use_h:
        loss = loss + (v_mem_ref * w_v).sum()
    # In the order of the backward op's outputs: x, v_init, α, θ, subtract, min_v.
    wanted = [x_leaf, v_init_leaf, alpha_leaf, threshold_leaf, subtract_leaf]
    if min_leaf is not None:
        wanted.append(min_leaf)
    ref_grads = torch.autograd.grad(loss, wanted, allow_unused=True)

    # The op under test, in the case's dtypes on the device.
    def on(t, dtype=state):
        return None if t is None else t.to(device=device, dtype=dtype)

    codes = (max_code, RESETS[case.reset], GRADIENTS[case.gradient])
    builtin = case.surrogate != "custom"
    kernel = (surrogate.kernel_code, list(surrogate.kernel_params)) if builtin else (
        SURROGATE_GIVEN, [])
    spikes, v_mem, v_last = ops.lif_forward(
        on(x, case.dtype), on(v_init), on(alpha), on(threshold), on(subtract), on(min_v),
        *codes, *kernel)
    tol = tolerance(case.dtype)
    torch.testing.assert_close(spikes.cpu().double(), spikes_ref.detach(), **tol)
    torch.testing.assert_close(v_mem.cpu().double(), v_mem_ref.detach(), **tol)
    torch.testing.assert_close(v_last.cpu().double(), v_last_ref.detach(), **tol)

    sigma = None if builtin else surrogate(v_mem, on(threshold)).contiguous()
    grad_x, grad_v0, *params = ops.lif_backward(
        on(w_s, case.dtype) if use_g else None, on(w_v) if use_h else None, on(w_last), v_mem,
        sigma, on(v_init), on(alpha), on(threshold), on(subtract), on(min_v), *codes, *kernel,
        case.mask)
    assert grad_x.is_contiguous() and grad_x.dtype == (case.dtype if use_g else state)
    for got, want in zip((grad_x, grad_v0), ref_grads[:2]):
        torch.testing.assert_close(got.cpu().double(), want, **tolerance_of_sums(want, case.dtype))
    # A parameter gradient sums B·T terms of either sign: below float64 its rounding error grows
    # with the number of terms (about sqrt(B·T) roundings of their size), not with the sum, which
    # cancellation can make small (seen: 4e-5 on a sum of 70 float32 terms).
    terms = math.sqrt(case.shape[0] * case.shape[1])
    sum_tol = tol if case.dtype == torch.float64 else {k: v * terms for k, v in tol.items()}
    for (name, bit), got, want in itertools.zip_longest(PARAM_GRAD_BITS.items(), params,
                                                        ref_grads[2:]):
        if not case.mask & bit or (name == "min_v_mem" and min_v is None):
            assert got.shape == (0,), name
            continue
        if want is None:  # no path to the loss (subtract with a reset to zero)
            want = torch.zeros(case.shape[2], dtype=torch.float64)
        assert got.shape == (case.shape[0], case.shape[2]), name
        torch.testing.assert_close(got.sum(0).cpu().double(), want, **sum_tol,
                                   msg=lambda m, n=name: f"grad {n}: {m}")


def run_leaky_case(ops, device: str, shape: tuple[int, int, int], dtype: torch.dtype) -> None:
    """The raw leaky ops against the reference."""
    gen = torch.Generator().manual_seed(1)
    b, t, n = shape
    state = _state_dtype(dtype)
    x = torch.randn(b, t, n, generator=gen, dtype=torch.float64).to(dtype).double()
    v_init = torch.randn(b, n, generator=gen, dtype=torch.float64).to(state).double()
    alpha = (torch.rand(n, generator=gen, dtype=torch.float64) * 0.5 + 0.45).to(state).double()
    w_y = torch.randn(b, t, n, generator=gen, dtype=torch.float64).to(dtype).double()
    w_last = torch.randn(b, n, generator=gen, dtype=torch.float64).to(state).double()
    leaves = [v.clone().requires_grad_() for v in (x, alpha, v_init)]
    y_ref, last_ref = leaky_integrate_reference(*leaves)
    ref = torch.autograd.grad((y_ref * w_y).sum() + (last_ref * w_last).sum(), leaves)
    y, y_last = ops.leaky_forward(x.to(device, dtype), v_init.to(device, state),
                                  alpha.to(device, state))
    tol = tolerance(dtype)
    torch.testing.assert_close(y.cpu().double(), y_ref.detach(), **tol)
    torch.testing.assert_close(y_last.cpu().double(), last_ref.detach(), **tol)
    grad_x, grad_v0, grad_alpha = ops.leaky_backward(
        w_y.to(device, dtype), w_last.to(device, state), y, v_init.to(device, state),
        alpha.to(device, state))
    torch.testing.assert_close(grad_x.cpu().double(), ref[0], **tol)
    torch.testing.assert_close(grad_v0.cpu().double(), ref[2], **tol)
    # dL/dα = Σ μ_t · y_{t−1} with the y the op saved, in the input dtype (so half inputs lose
    # precision here by design): μ_t is dL/dx_t.
    y_before = torch.cat([v_init[:, None], y.cpu().double()[:, :-1]], 1)
    want_alpha = (ref[0] * y_before).sum((0, 1))
    if dtype == torch.float64:
        torch.testing.assert_close(want_alpha, ref[1], **tol)
    torch.testing.assert_close(grad_alpha.sum(0).cpu().double(), want_alpha, **tol)
