"""Memory of one step: the peak its tensors need (CPU or CUDA) and what autograd saves.

Peak memory is PyTorch's own allocator accounting, read the same way for every implementation:

    CPU   peak = max over the step of the running sum of the bytes PyTorch's CPU allocator hands
          out and takes back (torch.profiler with profile_memory=True: one event per allocation
          and per free, in time order)
    CUDA  peak = max_memory_allocated after the step − memory_allocated before it, the peak
          statistics reset just before the step

Both count the tensors (and the kernels' buffers taken from PyTorch's allocator) that are live
at once during the step, not what the C library keeps resident afterwards: a Python loop's
thousands of small freed per-step tensors stay in glibc's heap and would inflate a resident-
memory (VmHWM) reading 1.2–4× over what the step needs, while a fused op's few large blocks
go back to the OS at once; an RSS figure would compare allocators, not implementations.
A block allocated before the step and freed during it is not seen (the profiler does not know
its size), so a step that frees earlier tensors (e.g. last step's gradients) reads a little
high, never low. Measure in a fresh process (see isolated.py) after a warm-up step that loads
the code (libraries, kernels, compiled graphs), so the figure is this step's alone.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

MB = 2**20


def cpu_allocator_peak_bytes(step: Callable[[], object]) -> int:
    """Peak of the bytes PyTorch's CPU allocator has out during step(), above its start."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the profiler's notes about its own setup
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
            step()
    # The raw events (one per allocation, + bytes, and per free, − bytes): the aggregated
    # per-op figures of profiler.events() lose the order, and so the peak.
    cpu = torch._C._autograd.DeviceType.CPU
    events = sorted(
        (event.start_ns(), event.nbytes())
        for event in profiler.profiler.kineto_results.events()
        if event.name() == "[memory]" and event.device_type() == cpu
    )
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


def step_peak_mb(step: Callable[[], object], device: str = "cpu") -> float:
    """Peak memory (MB) of the tensors that running step() allocates; see the module docstring."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / MB
    return cpu_allocator_peak_bytes(step) / MB


def saved_for_backward_mb(forward: Callable[[], object]) -> float:
    """MB of the distinct tensors autograd keeps for the backward pass of forward().

    Exact and allocator-independent: the memory that a BPTT graph over time steps costs and
    EXODUS's saved membrane avoids. Storages shared by several saved tensors count once.
    """
    import torch

    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        forward()
    return sum(storages.values()) / MB
