"""Cases for the raw ``alif_forward``/``alif_backward`` ops, shared by every backend.

Each case runs the raw forward op, then the raw backward op with the case's upstream gradients
and wanted-gradient mask, and compares everything with the autograd reference
(``alif_reference``) on the CPU in float64 (as raw_cases.py does for LIF).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch

from exodus_lightning.ops._codes import GRADIENTS, RESETS, SURROGATE_GIVEN
from exodus_lightning.ops._library import ALIF_PARAM_GRAD_BITS
from exodus_lightning.ops.reference import alif_reference
from tests.tolerances import tolerance, tolerance_of_sums

from .raw_cases import SHAPES, SURROGATES, custom_surrogate

ALIF_MASKS = (0, 1, 2, 4, 8, 16, 31)


@dataclass(frozen=True)
class AlifCase:
    shape: tuple[int, int, int]
    surrogate: str = "single_exp"
    mask: int = 31
    reset: str = "subtract"
    gradient: str = "exodus"
    max_spikes: int | None = 1
    clip: float | None = None
    dtype: torch.dtype = torch.float64
    upstream: tuple[bool, bool, bool] = (True, True, True)  # on spikes, v_mem, b
    seed: int = 0

    @property
    def id(self) -> str:
        b, t, n = self.shape
        dtype = str(self.dtype).removeprefix("torch.")
        up = "".join(str(int(u)) for u in self.upstream)
        return (f"{b}x{t}x{n}-{self.surrogate}-m{self.mask}-{self.reset}-{self.gradient}-"
                f"K{self.max_spikes}-clip{self.clip}-{dtype}-up{up}")


def alif_cases() -> list[AlifCase]:
    """Every surrogate, mask, reset, gradient, spike cap, clip, dtype and upstream at least once."""
    cases = [AlifCase((2, 37, 70), surrogate=s, clip=-0.5) for s in [*SURROGATES, "custom"]]
    cases += [AlifCase((3, 8, 21), mask=m, clip=c)
              for m, c in itertools.product(ALIF_MASKS, (None, -0.5, 0.3))]
    cases += [AlifCase((1, 17, 130), reset=r, gradient=g, max_spikes=k, clip=-0.4)
              for r, g, k in itertools.product(RESETS, GRADIENTS, (None, 1, 3))]
    cases += [AlifCase(shape, dtype=dtype, mask=3, clip=-0.5)
              for shape in SHAPES for dtype in (torch.float32, torch.float16, torch.bfloat16)]
    cases += [AlifCase((2, 37, 70), upstream=up, mask=m)
              for up in itertools.product((False, True), repeat=3) for m in (0, 31)]
    cases.append(AlifCase((2, 37, 70), surrogate="custom", mask=0, reset="zero"))
    return cases


def _inputs(case: AlifCase):
    """Float64 CPU inputs: x, v_init, b_init, per-feature α, ρ, β, b0, min_v, and upstreams."""
    gen = torch.Generator().manual_seed(case.seed)
    b, t, n = case.shape
    f64 = dict(dtype=torch.float64)
    x = torch.randn(b, t, n, generator=gen, **f64) * 1.5 + 0.5
    v_init = torch.randn(b, n, generator=gen, **f64) * 0.5
    b_init = torch.rand(b, n, generator=gen, **f64) * 0.5
    alpha = torch.rand(n, generator=gen, **f64) * 0.5 + 0.45
    rho = torch.rand(n, generator=gen, **f64) * 0.3 + 0.65
    beta = torch.rand(n, generator=gen, **f64) * 1.5
    b0 = torch.rand(n, generator=gen, **f64) * 0.5 + 0.75
    min_v = None if case.clip is None else torch.full((n,), case.clip, **f64)
    upstream = (torch.randn(b, t, n, generator=gen, **f64),
                0.1 * torch.randn(b, t, n, generator=gen, **f64),
                0.3 * torch.randn(b, t, n, generator=gen, **f64),
                torch.randn(b, n, generator=gen, **f64),
                torch.randn(b, n, generator=gen, **f64))
    return x, (v_init, b_init, alpha, rho, beta, b0), min_v, upstream


def run_alif_case(ops, device: str, case: AlifCase) -> None:
    """The raw ALIF ops of ``ops`` on ``device`` against the float64 reference."""
    x, state_inputs, min_v, upstream = _inputs(case)
    state = torch.float32 if case.dtype in (torch.float16, torch.bfloat16) else case.dtype
    # Round the inputs to the case's dtypes first, so both sides see the same numbers.
    x = x.to(case.dtype).double()
    state_inputs = [t.to(state).double() for t in state_inputs]
    w_s, w_v, w_b, w_vlast, w_blast = upstream
    w_s = w_s.to(case.dtype).double()
    w_v, w_b, w_vlast, w_blast = (t.to(state).double() for t in (w_v, w_b, w_vlast, w_blast))
    surrogate = custom_surrogate if case.surrogate == "custom" else SURROGATES[case.surrogate]

    leaves = [t.clone().requires_grad_() for t in (x, *state_inputs)]
    min_leaf = None if min_v is None else min_v.clone().requires_grad_()
    x_l, v0_l, b0s_l, alpha_l, rho_l, beta_l, b0_l = leaves
    outs = alif_reference(x_l, alpha_l, rho_l, beta_l, b0_l, v0_l, b0s_l, min_leaf,
                          case.max_spikes, surrogate, case.reset, case.gradient)
    use = (*case.upstream, True, True)
    loss = sum((o * w).sum() for o, w, u in zip(outs, (w_s, w_v, w_b, w_vlast, w_blast), use)
               if u)
    # In the order of the backward op's outputs.
    wanted = [x_l, v0_l, b0s_l, alpha_l, rho_l, beta_l, b0_l] + (
        [min_leaf] if min_leaf is not None else [])
    ref_grads = torch.autograd.grad(loss, wanted, allow_unused=True)

    def on(t, dtype=state):
        return None if t is None else t.to(device=device, dtype=dtype)

    v_init, b_init, alpha, rho, beta, b0 = (on(t) for t in state_inputs)
    codes = (case.max_spikes or 0, RESETS[case.reset], GRADIENTS[case.gradient])
    builtin = case.surrogate != "custom"
    kernel = (surrogate.kernel_code, list(surrogate.kernel_params)) if builtin else (
        SURROGATE_GIVEN, [])
    got = ops.alif_forward(on(x, case.dtype), v_init, b_init, alpha, rho, beta, b0, on(min_v),
                           *codes, *kernel)
    tol = tolerance(case.dtype)
    for name, g, want in zip(("spikes", "v_mem", "b", "v_last", "b_last"), got, outs):
        torch.testing.assert_close(g.cpu().double(), want.detach(), **tol,
                                   msg=lambda m, n=name: f"{n}: {m}")
    spikes, v_mem, b, _, _ = got

    sigma = None
    if not builtin:
        b_before = torch.cat([b_init.unsqueeze(1), b[:, :-1]], 1)
        sigma = surrogate(v_mem, b0 + beta * b_before).contiguous()
    grad_x, grad_v0, grad_b0s, *params = ops.alif_backward(
        on(w_s, case.dtype) if case.upstream[0] else None,
        on(w_v) if case.upstream[1] else None, on(w_b) if case.upstream[2] else None,
        on(w_vlast), on(w_blast), v_mem, b, sigma, v_init, b_init, alpha, rho, beta, b0,
        on(min_v), *codes, *kernel, case.mask)
    assert grad_x.is_contiguous() and grad_x.dtype == (case.dtype if case.upstream[0] else state)
    for name, g, want in zip(("x", "v_init", "b_init"), (grad_x, grad_v0, grad_b0s), ref_grads):
        want = torch.zeros_like(g.double().cpu()) if want is None else want
        torch.testing.assert_close(g.cpu().double(), want, **tolerance_of_sums(want, case.dtype),
                                   msg=lambda m, n=name: f"grad {n}: {m}")
    # Sums of B·T terms below float64: tolerance grows with sqrt(B·T) (raw_cases.py says why).
    terms = math.sqrt(case.shape[0] * case.shape[1])
    sum_tol = tol if case.dtype == torch.float64 else {k: v * terms for k, v in tol.items()}
    for (name, bit), g, want in itertools.zip_longest(ALIF_PARAM_GRAD_BITS.items(), params,
                                                      ref_grads[3:]):
        if not case.mask & bit or (name == "min_v_mem" and min_v is None):
            assert g.shape == (0,), name
            continue
        if want is None:  # no path to the loss (θ's parameters with a reset to zero)
            want = torch.zeros(case.shape[2], dtype=torch.float64)
        assert g.shape == (case.shape[0], case.shape[2]), name
        torch.testing.assert_close(g.sum(0).cpu().double(), want, **sum_tol,
                                   msg=lambda m, n=name: f"grad {n}: {m}")
