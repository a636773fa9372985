"""Custom surrogates (any callable (v_mem, threshold) -> dS/dV) in the backward pass of the ops.

The built-in surrogates are evaluated inside the backward kernels. A custom one runs in PyTorch on
the saved membrane, and its values σ feed the same reverse-scan op. Called on the whole (B, T, N)
membrane, every operation of the formula would make a full-size temporary: one pass over memory
each and, with glibc's default allocator, fresh pages to fault in. So:

- a callable used again and again on large membranes is compiled with torch.compile into one
  fused loop that writes σ for the whole membrane, about as fast as a built-in surrogate: from
  its AUTO_COMPILE_AFTER + 1-th backward pass on a membrane of at least AUTO_COMPILE_ELEMENTS
  elements (CPU or CUDA), so smoke tests and one-off gradients never pay the compile (seconds).
  The compiled formula may round differently in the last bit; a callable that does not compile
  runs as it is, with one warning. ``compiled_surrogate(fn)`` compiles from the first backward
  pass on any size, ``uncompiled_surrogate(fn)`` never;
- otherwise the callable runs as it is: with one intra-op thread on CPU, on blocks of batch rows
  small enough to stay in cache, each block going through the scan before the next one is
  evaluated (elsewhere on the whole membrane). Batch rows are independent neurons, so for a
  callable that is elementwise in v_mem the values are those of one call on the whole membrane,
  bit for bit (blocks are aligned to PyTorch's vector loops, ALIGN_ELEMENTS; with several
  threads PyTorch's own loops may still round an element at the edge of a thread's chunk
  differently, as they do for the whole membrane between thread counts).

The contract: the callable must be elementwise in v_mem. It gets the membrane as (b, T, N) (all
batch rows or a block of them, N = prod(features)) with the threshold ((N,), or for ALIF the
(b, T, N) trace), and returns dS/dV as anything that broadcasts to (b, T, N).
"""

from __future__ import annotations

import math
import numbers
import threading
import warnings
import weakref
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from .cpu_memory import empty_huge_pages

Surrogate = Callable[[Tensor, Tensor], Tensor]

# Membrane elements per block of batch rows (at least one row): 1 MB of float32, so a block's
# membrane, the callable's temporaries and σ stay in cache between the callable and the scan.
BLOCK_ELEMENTS = 1 << 18
# Blocks run only with at most this many intra-op threads (see scan_with_surrogate).
BLOCKS_MAX_THREADS = 1
# Blocks hold a multiple of this many elements. PyTorch's CPU loops run vectorised (two vectors
# at a time: 32 float32, 16 float64, 64 float16 elements with AVX-512) and finish the last few
# elements with a scalar loop that may round differently (sigmoid, tanh, ...). With blocks
# aligned, the same elements end up in a scalar tail as in one call on the whole membrane.
ALIGN_ELEMENTS = 64
# A plain callable is compiled from its (AUTO_COMPILE_AFTER + 1)-th backward pass on a membrane
# of at least AUTO_COMPILE_ELEMENTS elements. Measured on 2 cores: the compile takes ~13 s the
# first time (~4 s with inductor's disk cache warm) and then saves 20-130 ms per backward pass
# at (32, 300, 2048), so a run of a few hundred steps breaks even; fast_dev_run and one-off
# gradients never compile.
AUTO_COMPILE_ELEMENTS = 1 << 20
AUTO_COMPILE_AFTER = 10


def rows_per_block(batch: int, row: int) -> int:
    """Batch rows per block for rows of ``row`` elements: about BLOCK_ELEMENTS, aligned.

    The smallest multiple of the rows that make a multiple of ALIGN_ELEMENTS elements, at least
    BLOCK_ELEMENTS' worth; the whole batch when that is more (and for empty rows).
    """
    if row == 0:
        return max(batch, 1)
    step = ALIGN_ELEMENTS // math.gcd(row, ALIGN_ELEMENTS)
    wanted = max(1, BLOCK_ELEMENTS // row)
    return min(max(batch, 1), -(-wanted // step) * step)


def evaluate(fn: Surrogate, v_mem: Tensor, threshold: Tensor) -> Tensor:
    """fn(v_mem, threshold) for v_mem (b, T, N), as a contiguous (b, T, N) tensor of its dtype
    (fn may return anything that broadcasts, a Python number too: a straight-through 1.0)."""
    value = fn(v_mem, threshold)
    if isinstance(value, numbers.Real):
        # A fill, not torch.as_tensor(value, device=...): on a GPU that is a copy from pageable
        # host memory, which waits for the device on every backward pass and fails inside a
        # CUDA-graph capture.
        sigma = torch.full((), float(value), dtype=v_mem.dtype, device=v_mem.device)
    else:
        sigma = torch.as_tensor(value, dtype=v_mem.dtype, device=v_mem.device)
    return sigma.expand(v_mem.shape).contiguous()


class CompiledSurrogate:
    """A custom surrogate that the ops' backward pass evaluates compiled with torch.compile.

    Made by ``compiled_surrogate(fn)``. Called, it is fn itself (the reference backend and the
    recurrent ops call it so). The compiled formula is made on the first backward pass and kept
    here; copies and pickles hold fn only, and compile again when used.
    """

    def __init__(self, fn: Surrogate) -> None:
        self.fn = fn
        self._compiled: _Compiled | None = None

    def __call__(self, v_mem: Tensor, threshold: Tensor) -> Tensor:
        return self.fn(v_mem, threshold)

    def __repr__(self) -> str:
        return f"compiled_surrogate({self.fn!r})"

    def __getstate__(self) -> dict:
        return {"fn": self.fn}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["fn"])

    def compiled(self) -> _Compiled:
        """fn's compiled formula, made on first use."""
        if self._compiled is None:
            self._compiled = _Compiled(self.fn)
        return self._compiled


class UncompiledSurrogate:
    """A custom surrogate that the ops' backward pass runs as it is, never compiled.

    Made by ``uncompiled_surrogate(fn)``; called, it is fn itself.
    """

    def __init__(self, fn: Surrogate) -> None:
        self.fn = fn

    def __call__(self, v_mem: Tensor, threshold: Tensor) -> Tensor:
        return self.fn(v_mem, threshold)

    def __repr__(self) -> str:
        return f"uncompiled_surrogate({self.fn!r})"


def _wrap(fn: Surrogate, wrapper: type, name: str) -> Surrogate:
    from .lif import is_fused_surrogate  # lif imports this module through _library

    if isinstance(fn, wrapper):
        return fn
    if isinstance(fn, (CompiledSurrogate, UncompiledSurrogate)):
        fn = fn.fn
    if is_fused_surrogate(fn):
        return fn
    if not callable(fn):
        raise TypeError(f"{name} needs a callable (v_mem, threshold) -> dS/dV, got "
                        f"{type(fn).__name__}")
    return wrapper(fn)


def compiled_surrogate(fn: Surrogate) -> CompiledSurrogate:
    """``fn`` marked to be compiled (once, with torch.compile) from its first backward pass.

    fn must be elementwise in v_mem (see this module). A plain callable is compiled anyway once
    it has run in AUTO_COMPILE_AFTER backward passes on large membranes; this compiles it from the
    first, on any size. The compile takes seconds; the compiled formula may round differently
    from fn in the last bit. If it does not compile, fn runs as it is (in blocks of batch rows),
    with one warning. A built-in surrogate, already fused into the kernels, comes back as it is.
    """
    return _wrap(fn, CompiledSurrogate, "compiled_surrogate")


def uncompiled_surrogate(fn: Surrogate) -> UncompiledSurrogate:
    """``fn`` marked to run as it is in every backward pass, never compiled (see this module).

    For σ bit for bit as fn computes it, or where torch.compile is unwanted; slower than the
    compiled formula on large layers. A built-in surrogate comes back as it is.
    """
    return _wrap(fn, UncompiledSurrogate, "uncompiled_surrogate")


class _Compiled:
    """fn compiled into ``out[...] = fn(v_mem, threshold)``; write is None once that failed."""

    def __init__(self, fn: Surrogate) -> None:
        self.fn = fn
        self._spare: Tensor | None = None
        self._lock = threading.Lock()
        _KEEPING_MEMORY.add(self)

        def write(out: Tensor, v_mem: Tensor, threshold: Tensor) -> None:
            out.copy_(fn(v_mem, threshold))

        # torch.compile keeps a function's compiled graphs on its code object, at most
        # recompile_limit (8) of them, and with fullgraph=True fails beyond: a code object of
        # its own per callable, so that callables compiled in one process do not add up.
        write.__code__ = write.__code__.replace()
        try:
            self.write: Callable | None = torch.compile(write, fullgraph=True)
        except Exception as error:  # noqa: BLE001 (torch.compile unsupported here)
            self._give_up(error)

    def _give_up(self, error: Exception) -> None:
        warnings.warn(
            f"exodus_lightning: the custom surrogate {self.fn!r} does not compile "
            f"({type(error).__name__}: {error}); it runs as it is, uncompiled "
            f"(ops.uncompiled_surrogate(fn) runs it so without trying)",
            stacklevel=5,
        )
        self.write = None

    def sigma(self, v_mem: Tensor, threshold: Tensor) -> Tensor | None:
        """fn(v_mem, threshold) in one tensor like v_mem (None once fn failed to compile)."""
        if self.write is None:
            return None
        out = self._buffer(v_mem)
        try:
            # Detached: a threshold computed from a parameter is a non-leaf tensor, whose .grad
            # torch.compile reads (with a UserWarning: an error where warnings are errors).
            self.write(out, v_mem.detach(), threshold.detach())
        except Exception as error:  # noqa: BLE001 (whatever fails, fn runs as it is)
            self._give_up(error)
            return None
        return out

    def _buffer(self, like: Tensor) -> Tensor:
        """An uninitialised tensor like ``like``: on CPU a view of the spare (given back by the
        last backward pass, taken so that two at once never share it) when it is large enough.

        With glibc's default allocator a fresh full-size σ costs its page faults on every
        backward pass (~5-10 ms at (32, 300, 2048), a quarter of the fused backward); the spare,
        as large as the largest σ of this callable, stays mapped between steps instead.
        """
        with self._lock:
            spare = self._spare
            if (like.device.type == "cpu" and spare is not None and spare.dtype == like.dtype
                    and spare.numel() >= like.numel()):
                self._spare = None
                return spare[: like.numel()].view(like.shape)
        return empty_huge_pages(like.shape, like.dtype, like.device)

    def release(self) -> None:
        """Drop the spare: the next backward pass allocates σ anew."""
        with self._lock:
            self._spare = None

    def give_back(self, sigma: Tensor) -> None:
        """Keep σ's memory (CPU) for the next backward pass; σ is not used after this."""
        if sigma.device.type != "cpu":
            return
        base = sigma if sigma._base is None else sigma._base
        with self._lock:
            if self._spare is None or base.numel() > self._spare.numel():
                self._spare = base.view(-1)


# Every compiled formula (weakly: a compiled_surrogate wrapper's goes with it), for
# release_kept_memory.
_KEEPING_MEMORY: weakref.WeakSet[_Compiled] = weakref.WeakSet()


class _AutoCompile:
    """A plain callable's count of large backward passes, and its compiled form once made."""

    def __init__(self) -> None:
        self.large_calls = 0
        self.compiled: _Compiled | None = None


# Per plain callable, by identity (sinabs' surrogates are dataclasses: equal by value and
# unhashable), weakly: a callable made anew for every step (a lambda in forward) is forgotten
# with it (and never reaches AUTO_COMPILE_AFTER). Once compiled, _Compiled holds the callable,
# which then lives as long as the process, like torch.compile's own cache of it.
_AUTO_COMPILE: dict[int, tuple[weakref.ref, _AutoCompile]] = {}


def _auto_compile_state(fn: Surrogate) -> _AutoCompile | None:
    """fn's _AutoCompile, made on first use; None for a callable that cannot be referred to
    weakly (then it is never compiled automatically)."""
    key = id(fn)
    entry = _AUTO_COMPILE.get(key)
    if entry is not None and entry[0]() is fn:
        return entry[1]
    try:
        # The registry bound now: at interpreter exit the module's globals may already be None
        # when the last callables are collected.
        ref = weakref.ref(fn, lambda _, key=key, registry=_AUTO_COMPILE: registry.pop(key, None))
    except TypeError:
        return None
    state = _AutoCompile()
    _AUTO_COMPILE[key] = (ref, state)
    return state


def release_kept_memory() -> None:
    """Drop the σ memory that compiled custom surrogates keep between backward passes (CPU):
    the next backward pass allocates it anew (e.g. to measure a step's whole peak)."""
    for compiled in list(_KEEPING_MEMORY):
        compiled.release()


def _compiled_for(fn: Surrogate, v_mem: Tensor) -> _Compiled | None:
    """fn's compiled formula to evaluate σ with, or None where fn runs as it is (also when
    the formula's sigma answers None: fn failed to compile)."""
    if isinstance(fn, UncompiledSurrogate) or torch.compiler.is_compiling():
        return None
    if isinstance(fn, CompiledSurrogate):
        return fn.compiled()
    if v_mem.numel() < AUTO_COMPILE_ELEMENTS or v_mem.device.type not in ("cpu", "cuda"):
        return None
    if v_mem.is_cuda and torch.cuda.is_current_stream_capturing():
        return None  # compiling is no work for a CUDA graph capture (compile before capturing)
    state = _auto_compile_state(fn)
    if state is None:
        return None
    state.large_calls += 1
    if state.large_calls <= AUTO_COMPILE_AFTER:
        return None
    if state.compiled is None:
        state.compiled = _Compiled(fn)
    return state.compiled


def as_btn(v: Tensor, features: int) -> Tensor:
    """v (b, T, *F) as (b, T, N), N = prod(F) = features (given: -1 is ambiguous if b or T is 0)."""
    return v.reshape(v.shape[0], v.shape[1], features)


def batch_rows(t: Tensor | None, rows: slice | None) -> Tensor | None:
    """t's batch rows ``rows`` (None: all of them, t itself)."""
    return t if t is None or rows is None else t[rows]


def fixed_threshold_inputs(
    v_mem: Tensor, threshold: Tensor, features: int
) -> Callable[[slice | None], tuple[Tensor, Tensor]]:
    """surrogate_inputs for scan_with_surrogate with one (N,) threshold: rows -> (v_mem's
    rows as (b, T, N), threshold)."""
    return lambda rows: (as_btn(batch_rows(v_mem, rows), features), threshold)


def scan_with_surrogate(
    fn: Surrogate | None,
    v_mem: Tensor,
    surrogate_inputs: Callable[[slice | None], tuple[Tensor, Tensor]],
    scan: Callable[[slice | None, Tensor], Sequence[Tensor]],
) -> list[Tensor]:
    """The outputs of a backward op run with σ = fn(v, threshold), whole or block by block
    (fn None: the op's built-in surrogate, one call).

    surrogate_inputs(rows): (v, threshold) for those batch rows (None: all), v as (b, T, N).
    scan(rows, sigma): the op's outputs for those rows, each batch-major ((b, ...)) or an empty
    (0,) placeholder for a gradient not computed. The per-block outputs are copied into outputs
    allocated once, so only cache-sized tensors are made per block (the allocator reuses them).
    """
    if fn is None:
        return list(scan(None, None))
    compiled = _compiled_for(fn, v_mem)
    if compiled is not None:
        sigma = compiled.sigma(*surrogate_inputs(None))
        if sigma is not None:
            outputs = list(scan(None, sigma.view(v_mem.shape)))
            compiled.give_back(sigma)
            return outputs
    if isinstance(fn, (CompiledSurrogate, UncompiledSurrogate)):
        fn = fn.fn
    batch = v_mem.shape[0]
    # Inside torch.compile the compiler fuses the formula itself, and one call keeps the graph
    # small. On GPUs the caching allocator reuses memory without page faults, and blocks would
    # only add kernel launches. With several intra-op threads, each of the hundreds of small
    # per-block operations is a parallel region that waits for every thread: when other
    # processes (DataLoader workers, other jobs) hold the cores, each wait is an OS time slice
    # (measured: 2.5 s instead of 50 ms per backward at (32, 300, 2048), 2 threads, loaded
    # 2-core machine); a few full-size operations wait a few times only. (The compiled formula
    # runs on the whole membrane: in blocks it measured 1.0-1.2x slower, as the scan's outputs
    # per block are then copied into full-size ones.)
    # (rows_per_block is plain integer arithmetic: not traced, so asked after is_compiling.)
    if (torch.compiler.is_compiling() or v_mem.device.type != "cpu"
            or torch.get_num_threads() > BLOCKS_MAX_THREADS
            or (rows := rows_per_block(batch, v_mem[0].numel() if batch else 0)) >= batch):
        return list(scan(None, evaluate(fn, *surrogate_inputs(None)).view(v_mem.shape)))
    outputs: list[Tensor] = []
    for start in range(0, batch, rows):
        block = slice(start, start + rows)
        sigma = evaluate(fn, *surrogate_inputs(block)).view(v_mem[block].shape)
        parts = scan(block, sigma)
        if not outputs:
            outputs = [part if part.shape == (0,)
                       else empty_huge_pages((batch, *part.shape[1:]), part.dtype, part.device)
                       for part in parts]
        for total, part in zip(outputs, parts):
            if total.shape != (0,):
                total[block] = part
    return outputs
