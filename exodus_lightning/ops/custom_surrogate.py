"""lif_forward with a surrogate that is any callable (v_mem, threshold) -> dS/dV.

The built-in surrogates are evaluated inside the backward kernel. A custom one runs in Python on
the saved membrane, and its values (sigma) feed the same reverse-scan op. Evaluated as it is on
the whole (B, T, N) membrane, every operation of the formula makes a full-size temporary: one
pass over memory each, and with glibc's default allocator fresh pages to fault in. So:

- large backward passes evaluate the callable compiled with torch.compile (once per callable),
  as one fused loop that writes sigma straight into one huge-page buffer;
- the others, and callables that do not compile, evaluate it on blocks of batch rows small
  enough to stay in cache, each block going through the scan before the next is evaluated.
  Batch rows are independent neurons, so for an elementwise callable the results equal those
  on the whole membrane to the last bit. (The compiled formula may differ in the last bit:
  the compiler fuses and reorders the operations.)
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable

import torch
from torch import Tensor

from ._codes import SURROGATE_GIVEN
from ._library import _lif_scan, _save_lif_context, _wanted_param_grads, ops
from .cpu_memory import empty_huge_pages

Surrogate = Callable[[Tensor, Tensor], Tensor]

# Backward passes over at least this many membrane elements compile the callable: the first
# compile takes seconds, which only pays off on large layers (and keeps small tests fast).
COMPILE_MIN_ELEMENTS = 1 << 21
# Membrane elements per block of batch rows (at least one row) for an uncompiled callable: 1 MB
# of float32, so a block's membrane, the callable's temporaries and sigma stay in the L2/L3 cache
# between the callable and the scan.
BLOCK_ELEMENTS = 1 << 18


class CompiledSurrogate:
    """A surrogate compiled with torch.compile into ``out[...] = fn(v_mem, threshold)``."""

    def __init__(self, fn: Surrogate) -> None:
        self.fn = fn

        def write(out: Tensor, v_mem: Tensor, threshold: Tensor) -> None:
            out.copy_(fn(v_mem, threshold))

        self.compiled: Callable | None = torch.compile(write, fullgraph=True)

    def write(self, out: Tensor, v_mem: Tensor, threshold: Tensor) -> bool:
        """Fill out (shaped like v_mem) with fn(v_mem, threshold); False if fn does not compile."""
        if self.compiled is None:
            return False
        try:
            self.compiled(out, v_mem, threshold)
        except Exception as error:  # noqa: BLE001 (whatever fails, the plain callable runs)
            warnings.warn(
                f"exodus_lightning: the custom surrogate {self.fn!r} does not compile "
                f"({type(error).__name__}: {error}); it runs uncompiled",
                stacklevel=2,
            )
            self.compiled = None
            return False
        return True


# One CompiledSurrogate per callable, for as long as the callable lives.
_compiled: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def compiled_surrogate(fn: Surrogate, v_mem: Tensor) -> CompiledSurrogate | None:
    """fn compiled, if compiling pays for a backward pass over v_mem; else None."""
    if v_mem.numel() < COMPILE_MIN_ELEMENTS or torch.compiler.is_compiling():
        return None
    try:
        compiled = _compiled.get(fn)
        if compiled is None:
            compiled = _compiled[fn] = CompiledSurrogate(fn)
    except TypeError:  # not hashable or not weakly referenceable: nowhere to keep it
        return None
    return compiled if compiled.compiled is not None else None


def surrogate_sigma(fn: Surrogate, v_mem: Tensor, threshold: Tensor) -> Tensor:
    """fn(v_mem, threshold) on v_mem viewed as (B, T, N), as a contiguous tensor like v_mem."""
    flat = _flat(v_mem, threshold)
    sigma = fn(flat, threshold)
    return sigma.to(v_mem.dtype).expand(flat.shape).reshape(v_mem.shape).contiguous()


def _flat(v_mem: Tensor, threshold: Tensor) -> Tensor:
    """v_mem (B, T, *F) as (B, T, N), N = prod(F) (given: -1 is ambiguous when B or T is 0)."""
    return v_mem.reshape(v_mem.shape[0], v_mem.shape[1], threshold.shape[0])


def rows_per_block(v_mem: Tensor) -> int:
    """Batch rows of v_mem (B, T, *F) per block: BLOCK_ELEMENTS' worth, at least 1."""
    row = v_mem[0].numel() if v_mem.shape[0] else 0
    return max(1, BLOCK_ELEMENTS // row) if row else max(1, v_mem.shape[0])


def _rows(t: Tensor | None, rows: slice) -> Tensor | None:
    return None if t is None else t[rows]


class LIFWithCustomSurrogate(torch.autograd.Function):
    """lif_forward for a surrogate that is an arbitrary callable (v_mem, threshold) -> dS/dV.

    The callable must be elementwise in v_mem: it gets the membrane, or blocks of its batch rows,
    as (b, T, N) with the (N,) threshold, and returns anything that broadcasts to (b, T, N).
    """

    @staticmethod
    def forward(
        x, v_init, alpha, threshold, subtract, min_v_mem, max_spikes, reset, gradient, surrogate_fn
    ):
        subtract = threshold if subtract is None else subtract
        return ops.lif_forward(
            x,
            v_init,
            alpha,
            threshold,
            subtract,
            min_v_mem,
            max_spikes,
            reset,
            gradient,
            SURROGATE_GIVEN,
            [],
        )

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, v_init, alpha, threshold, subtract, min_v_mem, max_spikes, reset, gradient, fn = inputs
        _spikes, v_mem, _v_last = output
        # subtract=None means "the threshold": passing one tensor twice breaks torch.compile.
        tied = subtract is None
        subtract = threshold if subtract is None else subtract
        _save_lif_context(
            ctx,
            x,
            v_init,
            alpha,
            threshold,
            subtract,
            min_v_mem,
            max_spikes,
            reset,
            gradient,
            v_mem,
            tied,
        )
        ctx.surrogate_fn = fn

    @staticmethod
    def backward(ctx, grad_spikes, grad_v_mem, grad_v_last):
        v_mem, _v_init, _alpha, threshold, _subtract, _min_v_mem = ctx.saved_tensors
        fn = ctx.surrogate_fn
        compiled = compiled_surrogate(fn, v_mem)
        sigma = None
        if compiled is not None:
            sigma = empty_huge_pages(v_mem.shape, v_mem.dtype, v_mem.device)
            flat = _flat(v_mem, threshold)
            if not compiled.write(sigma.view(flat.shape), flat, threshold):
                sigma = None
        rows = rows_per_block(v_mem)
        # Inside torch.compile, the compiler fuses the formula itself, and one call keeps the
        # graph small.
        if sigma is None and (rows >= v_mem.shape[0] or torch.compiler.is_compiling()):
            sigma = surrogate_sigma(fn, v_mem, threshold)
        if sigma is not None:
            grads = _lif_scan(ctx, grad_spikes, grad_v_mem, grad_v_last, sigma, SURROGATE_GIVEN, [])
        else:
            grads = _lif_scan_in_blocks(ctx, fn, grad_spikes, grad_v_mem, grad_v_last, rows)
        grad_x, grad_v0, g_alpha, g_threshold, g_subtract, g_min = grads
        if ctx.tied and g_threshold is not None:
            g_threshold, g_subtract = g_threshold + g_subtract, None
        return grad_x, grad_v0, g_alpha, g_threshold, g_subtract, g_min, None, None, None, None


def _lif_scan_in_blocks(ctx, fn: Surrogate, grad_spikes, grad_v_mem, grad_v_last, rows: int):
    """_lif_scan with sigma = fn(v_mem, threshold), one block of ``rows`` batch rows at a time.

    Each block's outputs are copied into full-size ones allocated once, so per block only
    cache-sized tensors are made (and the allocator reuses them from block to block).
    """
    v_mem, v_init, alpha, threshold, subtract, min_v_mem = ctx.saved_tensors
    if grad_v_last is None:
        grad_v_last = torch.zeros_like(v_init)
    wanted, mask = _wanted_param_grads(ctx)
    batch, features = v_mem.shape[0], alpha.shape[0]
    like = v_mem if grad_spikes is None else grad_spikes
    grad_x = empty_huge_pages(v_mem.shape, like.dtype, v_mem.device)
    grad_v0 = torch.empty_like(v_init)
    sums = [v_mem.new_empty((batch, features)) if want else None for want in wanted.values()]
    for start in range(0, batch, rows):
        block = slice(start, start + rows)
        sigma = surrogate_sigma(fn, v_mem[block], threshold)
        block_x, block_v0, *block_sums = ops.lif_backward(
            _rows(grad_spikes, block),
            _rows(grad_v_mem, block),
            grad_v_last[block],
            v_mem[block],
            sigma,
            v_init[block],
            alpha,
            threshold,
            subtract,
            min_v_mem,
            ctx.max_spikes,
            ctx.reset,
            ctx.gradient,
            SURROGATE_GIVEN,
            [],
            mask,
        )
        grad_x[block] = block_x
        grad_v0[block] = block_v0
        for total, part in zip(sums, block_sums):
            if total is not None:
                total[block] = part
    if grad_spikes is None:  # then grad_x is in the state dtype; half inputs want their own
        grad_x = grad_x.to(ctx.x_dtype)
    return (grad_x, grad_v0, *(None if total is None else total.sum(0) for total in sums))
