"""The ``exodus_lightning::*`` custom ops: schemas, fake (meta) kernels and autograd.

The C++/CUDA extension only registers kernels for these schemas; defining them here means fake
tensors, ``torch.compile`` and ``opcheck`` work from Python, and the autograd formula (the EXODUS
reverse scan, itself an op) is registered once for every backend device.

Shapes: x, spikes, grad_x (B, T, *F) in the input dtype; v_mem (B, T, *F), v_init, v_last
(B, *F), and the per-feature parameters (N,) with N = prod(F), in the state dtype (float32 for
half/bfloat16 inputs). Parameter gradients come back per (batch, feature), shape (B, N); the
autograd formula sums them over the batch. ``param_grads`` is a bit mask of the wanted ones
(PARAM_GRAD_BITS: α 1, θ 2, subtract 4, min_v_mem 8); the others come back as empty (0,) tensors
and their work is skipped (with none wanted and a subtracting reset, also the spike counts).
"""

from __future__ import annotations

import torch

from ._codes import SURROGATE_GIVEN
from .custom_surrogate import as_btn, batch_rows, fixed_threshold_inputs, scan_with_surrogate

# Bit of each parameter in lif_backward's param_grads mask, in input order (extensions/exodus/
# lif_step.h has the same values).
PARAM_GRAD_BITS = {"alpha": 1, "threshold": 2, "subtract": 4, "min_v_mem": 8}
# The same for alif_backward (extensions/exodus/alif_step.h).
ALIF_PARAM_GRAD_BITS = {"alpha": 1, "rho": 2, "beta": 4, "b0": 8, "min_v_mem": 16}
# The same for adlif_backward (extensions/exodus/adlif_step.h).
ADLIF_PARAM_GRAD_BITS = {"alpha": 1, "beta": 2, "a": 4, "b": 8, "threshold": 16}

# The op schemas, also defined for the CUDA kernels' host emulation (ops/cuda_emulation.py).
# lif_backward's grad_spikes is optional (None: no gradient on the spikes, and grad_x comes back
# in the state dtype), so an unused spike output costs no full-size zero tensor.
SCHEMAS = {
    "lif_forward": (
        "lif_forward(Tensor x, Tensor v_init, Tensor alpha, Tensor threshold, Tensor subtract, "
        "Tensor? min_v_mem, int max_spikes, int reset, int gradient, int surrogate, "
        "float[] surrogate_params) -> (Tensor spikes, Tensor v_mem, Tensor v_last)"
    ),
    "lif_backward": (
        "lif_backward(Tensor? grad_spikes, Tensor? grad_v_mem, Tensor grad_v_last, Tensor v_mem, "
        "Tensor? sigma, Tensor v_init, Tensor alpha, Tensor threshold, Tensor subtract, "
        "Tensor? min_v_mem, int max_spikes, int reset, int gradient, int surrogate, "
        "float[] surrogate_params, int param_grads) -> (Tensor grad_x, Tensor grad_v_init, "
        "Tensor grad_alpha, Tensor grad_threshold, Tensor grad_subtract, Tensor grad_min_v_mem)"
    ),
    "leaky_forward": (
        "leaky_forward(Tensor x, Tensor v_init, Tensor alpha) -> (Tensor y, Tensor y_last)"
    ),
    "leaky_backward": (
        "leaky_backward(Tensor grad_y, Tensor grad_y_last, Tensor y, Tensor v_init, Tensor alpha) "
        "-> (Tensor grad_x, Tensor grad_v_init, Tensor grad_alpha)"
    ),
    "alif_forward": (
        "alif_forward(Tensor x, Tensor v_init, Tensor b_init, Tensor alpha, Tensor rho, "
        "Tensor beta, Tensor b0, Tensor? min_v_mem, int max_spikes, int reset, int gradient, "
        "int surrogate, float[] surrogate_params) -> (Tensor spikes, Tensor v_mem, Tensor b, "
        "Tensor v_last, Tensor b_last)"
    ),
    "alif_backward": (
        "alif_backward(Tensor? grad_spikes, Tensor? grad_v_mem, Tensor? grad_b, "
        "Tensor grad_v_last, Tensor grad_b_last, Tensor v_mem, Tensor b, Tensor? sigma, "
        "Tensor v_init, Tensor b_init, Tensor alpha, Tensor rho, Tensor beta, Tensor b0, "
        "Tensor? min_v_mem, int max_spikes, int reset, int gradient, int surrogate, "
        "float[] surrogate_params, int param_grads) -> (Tensor grad_x, Tensor grad_v_init, "
        "Tensor grad_b_init, Tensor grad_alpha, Tensor grad_rho, Tensor grad_beta, "
        "Tensor grad_b0, Tensor grad_min_v_mem)"
    ),
    # adLIF (docs/adlif_math.md). adlif_backward reads x only for grad_alpha (None otherwise).
    "adlif_forward": (
        "adlif_forward(Tensor x, Tensor u_init, Tensor w_init, Tensor alpha, Tensor beta, "
        "Tensor a, Tensor b, Tensor threshold, int gradient, int surrogate, "
        "float[] surrogate_params) -> (Tensor spikes, Tensor u_mem, Tensor w, Tensor u_last, "
        "Tensor w_last)"
    ),
    "adlif_backward": (
        "adlif_backward(Tensor? grad_spikes, Tensor? grad_u_mem, Tensor? grad_w, "
        "Tensor grad_u_last, Tensor grad_w_last, Tensor u_mem, Tensor w, Tensor? x, "
        "Tensor? sigma, Tensor u_init, Tensor w_init, Tensor alpha, Tensor beta, Tensor a, "
        "Tensor b, Tensor threshold, int gradient, int surrogate, float[] surrogate_params, "
        "int param_grads) -> (Tensor grad_x, Tensor grad_u_init, Tensor grad_w_init, "
        "Tensor grad_alpha, Tensor grad_beta, Tensor grad_a, Tensor grad_b, "
        "Tensor grad_threshold)"
    ),
}


def define_library(namespace: str) -> torch.library.Library:
    """A library of the op schemas under ``namespace``, with fake kernels."""
    lib = torch.library.Library(namespace, "DEF")  # noqa: TOR901 (schemas live in Python)
    for schema in SCHEMAS.values():
        lib.define(schema)
    for name, fake in _FAKES.items():
        torch.library.register_fake(f"{namespace}::{name}", fake, lib=lib)
    return lib


def _empty(like: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A contiguous tensor shaped like ``like`` (the kernels' outputs are contiguous)."""
    return like.new_empty(like.shape, dtype=dtype or like.dtype)


def _lif_forward_fake(x, v_init, alpha, *_):
    return _empty(x), _empty(x, alpha.dtype), _empty(v_init)


def _lif_backward_fake(grad_spikes, grad_v_mem, grad_v_last, v_mem, sigma, v_init, alpha,
                       threshold, subtract, min_v_mem, max_spikes, reset, gradient, surrogate,
                       surrogate_params, param_grads):
    if min_v_mem is None:
        param_grads &= ~PARAM_GRAD_BITS["min_v_mem"]
    per_feature = (v_mem.shape[0], alpha.shape[0])
    return (
        _empty(v_mem if grad_spikes is None else grad_spikes),
        _empty(v_init),
        *(v_mem.new_empty(per_feature if param_grads & bit else (0,))
          for bit in PARAM_GRAD_BITS.values()),
    )


def _leaky_forward_fake(x, v_init, alpha):
    return _empty(x), _empty(v_init)


def _leaky_backward_fake(grad_y, grad_y_last, y, v_init, alpha):
    return _empty(grad_y), _empty(v_init), alpha.new_empty((grad_y.shape[0], alpha.shape[0]))


def _alif_forward_fake(x, v_init, b_init, alpha, *_):
    return _empty(x), _empty(x, alpha.dtype), _empty(x, alpha.dtype), _empty(v_init), _empty(b_init)


def _alif_backward_fake(grad_spikes, grad_v_mem, grad_b, grad_v_last, grad_b_last, v_mem, b,
                        sigma, v_init, b_init, alpha, rho, beta, b0, min_v_mem, max_spikes, reset,
                        gradient, surrogate, surrogate_params, param_grads):
    if min_v_mem is None:
        param_grads &= ~ALIF_PARAM_GRAD_BITS["min_v_mem"]
    per_feature = (v_mem.shape[0], alpha.shape[0])
    return (
        _empty(v_mem if grad_spikes is None else grad_spikes),
        _empty(v_init),
        _empty(b_init),
        *(v_mem.new_empty(per_feature if param_grads & bit else (0,))
          for bit in ALIF_PARAM_GRAD_BITS.values()),
    )


def _adlif_forward_fake(x, u_init, w_init, alpha, *_):
    return (_empty(x), _empty(x, alpha.dtype), _empty(x, alpha.dtype), _empty(u_init),
            _empty(w_init))


def _adlif_backward_fake(grad_spikes, grad_u_mem, grad_w, grad_u_last, grad_w_last, u_mem, w, x,
                         sigma, u_init, w_init, alpha, beta, a, b, threshold, gradient,
                         surrogate, surrogate_params, param_grads):
    per_feature = (u_mem.shape[0], alpha.shape[0])
    return (
        _empty(u_mem if grad_spikes is None else grad_spikes),
        _empty(u_init),
        _empty(w_init),
        *(u_mem.new_empty(per_feature if param_grads & bit else (0,))
          for bit in ADLIF_PARAM_GRAD_BITS.values()),
    )


_FAKES = {
    "lif_forward": _lif_forward_fake,
    "lif_backward": _lif_backward_fake,
    "leaky_forward": _leaky_forward_fake,
    "leaky_backward": _leaky_backward_fake,
    "alif_forward": _alif_forward_fake,
    "alif_backward": _alif_backward_fake,
    "adlif_forward": _adlif_forward_fake,
    "adlif_backward": _adlif_backward_fake,
}
_lib = define_library("exodus_lightning")
ops = torch.ops.exodus_lightning


def no_double_backward(name: str):
    def backward(ctx, *grads):
        raise RuntimeError(
            f"exodus_lightning: second-order gradients (double backward, e.g. "
            f"autograd.grad(..., create_graph=True) then backward through the result) do not "
            f"go through the fused kernels ({name}); run that layer or op with "
            f"backend='reference' (an autograd loop over time) for them")
    return backward


# The fused backward passes are first-order only: a graph recorded through them (create_graph)
# raises when a second backward pass reaches it, instead of PyTorch's default for an op without
# a formula, which would treat them as constants (silently zero second-order terms).
for _name in ("lif_backward", "leaky_backward", "alif_backward", "adlif_backward"):
    torch.library.register_autograd(f"exodus_lightning::{_name}", no_double_backward(_name),
                                    setup_context=lambda ctx, inputs, output: None)


# The inputs of lif_forward, by name, in schema order.
_LIF_INPUTS = ("x", "v_init", "alpha", "threshold", "subtract", "min_v_mem", "max_spikes",
               "reset", "gradient", "surrogate", "surrogate_params")


def _wanted_param_grads(ctx) -> tuple[dict[str, bool], int]:
    """Which parameter gradients the backward computes, by name, and their param_grads mask."""
    needs = dict(zip(_LIF_INPUTS, ctx.needs_input_grad))
    wanted = {name: needs[name] for name in PARAM_GRAD_BITS}
    if ctx.tied and wanted["threshold"]:
        wanted["subtract"] = True  # subtract is the threshold: its gradient is part of θ's
    return wanted, sum(PARAM_GRAD_BITS[name] for name, want in wanted.items() if want)


def _lif_scan(ctx, grad_spikes, grad_v_mem, grad_v_last, surrogate, params, surrogate_fn=None):
    """Run the backward op and reduce the per-(batch, feature) parameter gradients.

    surrogate_fn: a custom surrogate (surrogate is then SURROGATE_GIVEN), evaluated as
    custom_surrogate.scan_with_surrogate does (in blocks of batch rows, or compiled).
    """
    v_mem, v_init, alpha, threshold, subtract, min_v_mem = ctx.saved_tensors
    if grad_v_last is None:
        grad_v_last = torch.zeros_like(v_init)
    wanted, mask = _wanted_param_grads(ctx)

    def scan(rows, sigma):
        return ops.lif_backward(
            batch_rows(grad_spikes, rows), batch_rows(grad_v_mem, rows),
            batch_rows(grad_v_last, rows), batch_rows(v_mem, rows), sigma,
            batch_rows(v_init, rows), alpha, threshold, subtract, min_v_mem, ctx.max_spikes,
            ctx.reset, ctx.gradient, surrogate, params, mask,
        )

    inputs = fixed_threshold_inputs(v_mem, threshold, alpha.shape[0])
    grad_x, grad_v0, *param_grads = scan_with_surrogate(surrogate_fn, v_mem, inputs, scan)
    if grad_spikes is None:  # then grad_x is in the state dtype; half inputs want their own
        grad_x = grad_x.to(ctx.x_dtype)
    return (grad_x, grad_v0,
            *(g.sum(0) if want else None for g, want in zip(param_grads, wanted.values())))


def _save_lif_context(ctx, x, v_init, alpha, threshold, subtract, min_v_mem, max_spikes, reset,
                      gradient, v_mem, tied=False) -> None:
    ctx.save_for_backward(v_mem, v_init, alpha, threshold, subtract, min_v_mem)
    ctx.tied = tied
    ctx.x_dtype = x.dtype
    ctx.max_spikes, ctx.reset, ctx.gradient = max_spikes, reset, gradient
    # Unused outputs stay None instead of full-size zero tensors.
    ctx.set_materialize_grads(False)


def _lif_setup_context(ctx, inputs, output):
    given = dict(zip(_LIF_INPUTS, inputs))
    _spikes, v_mem, _v_last = output
    _save_lif_context(ctx, *(given[name] for name in _LIF_INPUTS[:9]), v_mem)
    ctx.surrogate, ctx.surrogate_params = given["surrogate"], given["surrogate_params"]


def _lif_backward(ctx, grad_spikes, grad_v_mem, grad_v_last):
    if ctx.surrogate == SURROGATE_GIVEN:
        raise RuntimeError(
            "exodus_lightning::lif_forward was called with surrogate=-1 (custom) and no way to "
            "evaluate it; use exodus_lightning.ops.lif, which handles custom surrogates"
        )
    grads = _lif_scan(ctx, grad_spikes, grad_v_mem, grad_v_last, ctx.surrogate,
                      ctx.surrogate_params)
    return (*grads, None, None, None, None, None)


torch.library.register_autograd(
    "exodus_lightning::lif_forward", _lif_backward, setup_context=_lif_setup_context
)


class LIFWithCustomSurrogate(torch.autograd.Function):
    """lif_forward for a surrogate that is an arbitrary callable (v_mem, threshold) -> dS/dV.

    In backward the callable runs on the saved membrane viewed as (B, T, N) (or blocks of its
    batch rows: custom_surrogate.py) against the (N,) threshold, and its result feeds the same
    reverse-scan op as the built-in surrogates.
    """

    @staticmethod
    def forward(x, v_init, alpha, threshold, subtract, min_v_mem, max_spikes, reset, gradient,
                surrogate_fn):
        subtract = threshold if subtract is None else subtract
        return ops.lif_forward(x, v_init, alpha, threshold, subtract, min_v_mem, max_spikes,
                               reset, gradient, SURROGATE_GIVEN, [])

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, v_init, alpha, threshold, subtract, min_v_mem, max_spikes, reset, gradient, fn = inputs
        _spikes, v_mem, _v_last = output
        # subtract=None means "the threshold": passing one tensor twice breaks torch.compile.
        tied = subtract is None
        subtract = threshold if subtract is None else subtract
        _save_lif_context(ctx, x, v_init, alpha, threshold, subtract, min_v_mem, max_spikes,
                          reset, gradient, v_mem, tied)
        ctx.surrogate_fn = fn

    @staticmethod
    def backward(ctx, grad_spikes, grad_v_mem, grad_v_last):
        grad_x, grad_v0, g_alpha, g_threshold, g_subtract, g_min = _lif_scan(
            ctx, grad_spikes, grad_v_mem, grad_v_last, SURROGATE_GIVEN, [], ctx.surrogate_fn
        )
        if ctx.tied and g_threshold is not None:
            g_threshold, g_subtract = g_threshold + g_subtract, None
        return grad_x, grad_v0, g_alpha, g_threshold, g_subtract, g_min, None, None, None, None


def _leaky_setup_context(ctx, inputs, output):
    x, v_init, alpha = inputs
    ctx.save_for_backward(output[0], v_init, alpha)
    ctx.set_materialize_grads(False)


def _leaky_backward(ctx, grad_y, grad_y_last):
    y, v_init, alpha = ctx.saved_tensors
    if grad_y is None:
        grad_y = torch.zeros_like(y)
    if grad_y_last is None:
        grad_y_last = torch.zeros_like(v_init)
    grad_x, grad_v0, grad_alpha = ops.leaky_backward(grad_y, grad_y_last, y, v_init, alpha)
    return grad_x, grad_v0, grad_alpha.sum(0)


torch.library.register_autograd(
    "exodus_lightning::leaky_forward", _leaky_backward, setup_context=_leaky_setup_context
)


# The inputs of alif_forward, by name, in schema order.
_ALIF_INPUTS = ("x", "v_init", "b_init", "alpha", "rho", "beta", "b0", "min_v_mem", "max_spikes",
                "reset", "gradient", "surrogate", "surrogate_params")


def _alif_scan(ctx, grad_spikes, grad_v_mem, grad_b, grad_v_last, grad_b_last, surrogate, params,
               surrogate_fn=None):
    """Run alif_backward and reduce the per-(batch, feature) parameter gradients.

    surrogate_fn: a custom surrogate (surrogate is then SURROGATE_GIVEN), evaluated as
    custom_surrogate.scan_with_surrogate does, against the threshold trace
    θ_t = b0 + β · b_{t−1} (b_{−1} = b_init).
    """
    v_mem, b, v_init, b_init, alpha, rho, beta, b0, min_v_mem = ctx.saved_tensors
    if grad_v_last is None:
        grad_v_last = torch.zeros_like(v_init)
    if grad_b_last is None:
        grad_b_last = torch.zeros_like(b_init)
    needs = dict(zip(_ALIF_INPUTS, ctx.needs_input_grad))
    wanted = {name: needs[name] for name in ALIF_PARAM_GRAD_BITS}
    mask = sum(ALIF_PARAM_GRAD_BITS[name] for name, want in wanted.items() if want)

    def scan(rows, sigma):
        return ops.alif_backward(
            *(batch_rows(t, rows) for t in (grad_spikes, grad_v_mem, grad_b, grad_v_last,
                                            grad_b_last, v_mem, b)),
            sigma, batch_rows(v_init, rows), batch_rows(b_init, rows), alpha, rho, beta, b0,
            min_v_mem, ctx.max_spikes, ctx.reset, ctx.gradient, surrogate, params, mask,
        )

    def surrogate_inputs(rows):  # the threshold trace θ_t = b0 + β · b_{t−1}
        v = as_btn(batch_rows(v_mem, rows), alpha.shape[0])
        b_rows = batch_rows(b, rows).reshape(v.shape)
        b_first = batch_rows(b_init, rows).reshape(v.shape[0], 1, v.shape[2])
        return v, b0 + beta * torch.cat([b_first, b_rows[:, :-1]], 1)

    outputs = scan_with_surrogate(surrogate_fn, v_mem, surrogate_inputs, scan)
    grad_x, grad_v0, grad_b0_state, *param_grads = outputs
    if grad_spikes is None:  # then grad_x is in the state dtype; half inputs want their own
        grad_x = grad_x.to(ctx.x_dtype)
    return (grad_x, grad_v0, grad_b0_state,
            *(g.sum(0) if want else None for g, want in zip(param_grads, wanted.values())))


def _save_alif_context(ctx, inputs, v_mem, b) -> None:
    given = dict(zip(_ALIF_INPUTS, inputs))
    ctx.save_for_backward(v_mem, b, *(given[name] for name in _ALIF_INPUTS[1:8]))
    ctx.x_dtype = given["x"].dtype
    ctx.max_spikes, ctx.reset, ctx.gradient = (given[name] for name in
                                               ("max_spikes", "reset", "gradient"))
    ctx.set_materialize_grads(False)


def _alif_setup_context(ctx, inputs, output):
    _spikes, v_mem, b, _v_last, _b_last = output
    _save_alif_context(ctx, inputs, v_mem, b)
    ctx.surrogate, ctx.surrogate_params = inputs[11], inputs[12]


def _alif_backward(ctx, grad_spikes, grad_v_mem, grad_b, grad_v_last, grad_b_last):
    if ctx.surrogate == SURROGATE_GIVEN:
        raise RuntimeError(
            "exodus_lightning::alif_forward was called with surrogate=-1 (custom) and no way to "
            "evaluate it; use exodus_lightning.ops.alif, which handles custom surrogates"
        )
    grads = _alif_scan(ctx, grad_spikes, grad_v_mem, grad_b, grad_v_last, grad_b_last,
                       ctx.surrogate, ctx.surrogate_params)
    return (*grads, None, None, None, None, None)


torch.library.register_autograd(
    "exodus_lightning::alif_forward", _alif_backward, setup_context=_alif_setup_context
)


class ALIFWithCustomSurrogate(torch.autograd.Function):
    """alif_forward for a surrogate that is an arbitrary callable (v_mem, threshold) -> dS/dV.

    In backward the callable runs on the saved membrane against the threshold trace
    θ_t = b0 + β · b_{t−1} (both (B, T, N), or blocks of their batch rows: custom_surrogate.py),
    and its result feeds the reverse-scan op.
    """

    @staticmethod
    def forward(x, v_init, b_init, alpha, rho, beta, b0, min_v_mem, max_spikes, reset, gradient,
                surrogate_fn):
        return ops.alif_forward(x, v_init, b_init, alpha, rho, beta, b0, min_v_mem, max_spikes,
                                reset, gradient, SURROGATE_GIVEN, [])

    @staticmethod
    def setup_context(ctx, inputs, output):
        _spikes, v_mem, b, _v_last, _b_last = output
        _save_alif_context(ctx, (*inputs[:11], SURROGATE_GIVEN, []), v_mem, b)
        ctx.surrogate_fn = inputs[11]

    @staticmethod
    def backward(ctx, grad_spikes, grad_v_mem, grad_b, grad_v_last, grad_b_last):
        grads = _alif_scan(ctx, grad_spikes, grad_v_mem, grad_b, grad_v_last, grad_b_last,
                           SURROGATE_GIVEN, [], ctx.surrogate_fn)
        return (*grads, None, None, None, None)


# The inputs of adlif_forward, by name, in schema order.
_ADLIF_INPUTS = ("x", "u_init", "w_init", "alpha", "beta", "a", "b", "threshold", "gradient",
                 "surrogate", "surrogate_params")


def _adlif_scan(ctx, grad_spikes, grad_u_mem, grad_w, grad_u_last, grad_w_last, surrogate,
                params, surrogate_fn=None):
    """Run adlif_backward and reduce the per-(batch, feature) parameter gradients.

    surrogate_fn: a custom surrogate (surrogate is then SURROGATE_GIVEN), evaluated as
    custom_surrogate.scan_with_surrogate does (in blocks of batch rows, or compiled).
    """
    u_mem, w, x, u_init, w_init, alpha, beta, a, b, threshold = ctx.saved_tensors
    if grad_u_last is None:
        grad_u_last = torch.zeros_like(u_init)
    if grad_w_last is None:
        grad_w_last = torch.zeros_like(w_init)
    if not ctx.saved_x:
        x = None
    elif grad_spikes is None and x.dtype != u_mem.dtype:
        x = x.to(u_mem.dtype)  # without grad_spikes the op works in the state dtype
    mask = sum(ADLIF_PARAM_GRAD_BITS[name] for name, want in ctx.wanted.items() if want)

    def scan(rows, sigma):
        return ops.adlif_backward(
            *(batch_rows(t, rows) for t in (grad_spikes, grad_u_mem, grad_w, grad_u_last,
                                            grad_w_last, u_mem, w, x)),
            sigma, batch_rows(u_init, rows), batch_rows(w_init, rows), alpha, beta, a, b,
            threshold, ctx.gradient, surrogate, params, mask,
        )

    inputs = fixed_threshold_inputs(u_mem, threshold, alpha.shape[0])
    grad_x, grad_u0, grad_w0, *param_grads = scan_with_surrogate(surrogate_fn, u_mem, inputs,
                                                                  scan)
    if grad_spikes is None:  # then grad_x is in the state dtype; half inputs want their own
        grad_x = grad_x.to(ctx.x_dtype)
    return (grad_x, grad_u0, grad_w0,
            *(g.sum(0) if want else None for g, want in zip(param_grads, ctx.wanted.values())))


def _save_adlif_context(ctx, inputs, u_mem, w) -> None:
    given = dict(zip(_ADLIF_INPUTS, inputs))
    needs = dict(zip(_ADLIF_INPUTS, ctx.needs_input_grad))
    ctx.wanted = {name: needs[name] for name in ADLIF_PARAM_GRAD_BITS}
    # x is read back only for dL/dα: keep it alive only then.
    ctx.saved_x = ctx.wanted["alpha"]
    x = given["x"] if ctx.saved_x else None
    ctx.save_for_backward(u_mem, w, x, *(given[name] for name in _ADLIF_INPUTS[1:8]))
    ctx.x_dtype = given["x"].dtype
    ctx.gradient = given["gradient"]
    ctx.set_materialize_grads(False)


def _adlif_setup_context(ctx, inputs, output):
    _spikes, u_mem, w, _u_last, _w_last = output
    _save_adlif_context(ctx, inputs, u_mem, w)
    ctx.surrogate, ctx.surrogate_params = inputs[9], inputs[10]


def _adlif_backward(ctx, grad_spikes, grad_u_mem, grad_w, grad_u_last, grad_w_last):
    if ctx.surrogate == SURROGATE_GIVEN:
        raise RuntimeError(
            "exodus_lightning::adlif_forward was called with surrogate=-1 (custom) and no way to "
            "evaluate it; use exodus_lightning.ops.adlif, which handles custom surrogates"
        )
    grads = _adlif_scan(ctx, grad_spikes, grad_u_mem, grad_w, grad_u_last, grad_w_last,
                        ctx.surrogate, ctx.surrogate_params)
    return (*grads, None, None, None)


torch.library.register_autograd(
    "exodus_lightning::adlif_forward", _adlif_backward, setup_context=_adlif_setup_context
)


class AdLIFWithCustomSurrogate(torch.autograd.Function):
    """adlif_forward for a surrogate that is an arbitrary callable (u_mem, threshold) -> dS/du.

    In backward the callable runs on the saved membrane viewed as (B, T, N) (or blocks of its
    batch rows: custom_surrogate.py) against the (N,) threshold, and its result feeds the same
    reverse-scan op as the built-in surrogates.
    """

    @staticmethod
    def forward(x, u_init, w_init, alpha, beta, a, b, threshold, gradient, surrogate_fn):
        return ops.adlif_forward(x, u_init, w_init, alpha, beta, a, b, threshold, gradient,
                                 SURROGATE_GIVEN, [])

    @staticmethod
    def setup_context(ctx, inputs, output):
        _spikes, u_mem, w, _u_last, _w_last = output
        _save_adlif_context(ctx, (*inputs[:9], SURROGATE_GIVEN, []), u_mem, w)
        ctx.surrogate_fn = inputs[9]

    @staticmethod
    def backward(ctx, grad_spikes, grad_u_mem, grad_w, grad_u_last, grad_w_last):
        grads = _adlif_scan(ctx, grad_spikes, grad_u_mem, grad_w, grad_u_last, grad_w_last,
                            SURROGATE_GIVEN, [], ctx.surrogate_fn)
        return (*grads, None, None)
