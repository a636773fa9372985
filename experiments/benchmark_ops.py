"""Speed and memory of one LIF layer: the EXODUS extension vs the BPTT reference loop.

Prints a Markdown table of forward+backward median time and peak extra memory for each
(batch, time, features) shape, on CPU and (when present) CUDA, plus a sweep over T at fixed
batch·features. Each measurement runs in its own process so peak memory is that
implementation's alone.

    python experiments/benchmark_ops.py                 # the full table (a few minutes on 2 cores)
    python experiments/benchmark_ops.py --quick         # small shapes, seconds
    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000 python experiments/benchmark_ops.py
    python experiments/benchmark_ops.py --keep-freed-memory   # the same, set from Python

The last two let glibc reuse freed memory instead of returning it to the OS after every call;
on CPU, page faults on fresh 80 MB tensors otherwise dominate (see the README).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

SHAPES = [(32, 300, 2048), (32, 100, 8192), (32, 1000, 512)]
SWEEP_T = [100, 300, 1000, 3000]
SWEEP_BF = 32 * 512


# Run by PeakRSS in a helper process: samples the measured process's resident memory every
# 0.2 ms until its stdin closes, then prints the highest value in bytes.
_SAMPLER = """
import os, select, sys
path, page, peak = f"/proc/{sys.argv[1]}/statm", os.sysconf("SC_PAGE_SIZE"), 0
print("ready", flush=True)
while not select.select([sys.stdin], [], [], 0.0002)[0]:
    with open(path) as statm:
        peak = max(peak, int(statm.read().split()[1]) * page)
print(peak, flush=True)
"""


class PeakRSS:
    """Highest resident memory (bytes) of this process while the ``with`` block runs.

    The kernel's own peak (VmHWM) is updated lazily, only when memory is unmapped, so it misses
    peaks served from the heap. A sampling thread in this process would need the GIL, which a
    Python loop (the reference) holds for milliseconds at a time; a helper process samples
    every 0.2 ms regardless.
    """

    def __init__(self) -> None:
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.peak = self.current()

    def current(self) -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * self.page

    def __enter__(self) -> PeakRSS:
        self._sampler = subprocess.Popen([sys.executable, "-c", _SAMPLER, str(os.getpid())],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._sampler.stdout.readline()  # "ready"
        self.peak = self.current()
        return self

    def __exit__(self, *exc) -> None:
        self._sampler.stdin.close()
        sampled = int(self._sampler.stdout.readline())
        self._sampler.wait()
        self.peak = max(self.peak, sampled, self.current())


# Which LIF parameters get gradients in a benchmark case, and how its row is labelled.
TRAINABLE = {"": "", "alpha": " trainable α", "alpha+threshold": " trainable α, θ"}


def custom_single_exponential(v_mem, threshold):
    """SingleExponential's formula as a plain function: a custom (not fused) surrogate."""
    import torch

    width = threshold * 0.5
    return 1.0 / width * torch.exp(-(v_mem - threshold).abs() / width)


def measure(backend: str, device: str, batch: int, time: int, features: int, repeats: int,
            trainable: str = "", custom_surrogate: bool = False) -> dict:
    """Median forward+backward seconds and peak extra memory (MB) of one LIF layer.

    α = 0.9 and θ = 1, fixed (the backward then needs no parameter gradients) or, as named in
    ``trainable`` ("alpha", "alpha+threshold"), per-neuron parameters that get gradients:
    "alpha" is nn.LIF's default (τ trains, θ does not). ``custom_surrogate``: the built-in
    SingleExponential's formula as a plain function (compiled once, in a warm-up step).

    Peak extra memory: the highest memory during the first full-size step minus what was there
    before it (inputs, interpreter, libraries): resident memory on CPU, allocated memory on CUDA.
    """
    import statistics
    import time as clock

    import torch

    from exodus_lightning import ops

    torch.manual_seed(0)
    # ~10 % spike rate, like PEERS.md's measurements.
    x = (torch.randn(batch, time, features, device=device) * 0.6 + 0.25).requires_grad_()
    upstream = torch.randn(batch, time, features, device=device)
    trained = trainable.split("+") if trainable else []
    alpha = torch.full((features,), 0.9, device=device, requires_grad="alpha" in trained)
    threshold = torch.ones(features, device=device, requires_grad="threshold" in trained)
    surrogate = custom_single_exponential if custom_surrogate else None

    def step():
        spikes, _, _ = ops.lif(x, alpha, threshold, surrogate=surrogate, backend=backend)
        spikes.backward(upstream)
        x.grad = alpha.grad = threshold.grad = None
        if device == "cuda":
            torch.cuda.synchronize()

    # Load the extension on a tiny input, so that memory freed by a full-size warm-up step and
    # kept by the allocator cannot hide the peak; the first full-size step is measured, not timed.
    tiny = x.detach()[:1, :2].requires_grad_()
    ops.lif(tiny, 0.9, 1.0, backend=backend)[0].sum().backward()
    if custom_surrogate:  # the compile, and what it allocates and keeps, before the peak
        step()
    # Peak memory over the first full-size step, time over the following ones: the sampling
    # thread would otherwise take CPU time from the kernels on a machine with few cores.
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        with PeakRSS() as rss:
            base = rss.peak
            step()
        peak = rss.peak - base
    times = []
    for _ in range(repeats):
        start = clock.perf_counter()
        step()
        times.append(clock.perf_counter() - start)
    with torch.no_grad():
        rate = ops.lif(x, 0.9, 1.0, backend=backend)[0].mean().item()
    return {"seconds": statistics.median(times), "peak_mb": peak / 2**20, "rate": rate}


def _child(spec: str) -> None:
    import torch

    args = json.loads(spec)
    torch.set_num_threads(args.pop("threads") or torch.get_num_threads())
    if args.pop("keep_freed_memory"):
        from exodus_lightning import ops

        ops.keep_freed_memory()
    print(json.dumps(measure(**args)))


def run(backend, device, batch, time, features, repeats, threads, trainable="",
        keep_freed_memory=False, custom_surrogate=False) -> dict:
    spec = json.dumps(dict(backend=backend, device=device, batch=batch, time=time,
                           features=features, repeats=repeats, threads=threads,
                           trainable=trainable, keep_freed_memory=keep_freed_memory,
                           custom_surrogate=custom_surrogate))
    out = subprocess.run([sys.executable, __file__, "--child", spec], capture_output=True,
                         text=True, check=True, env=os.environ.copy())
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(rows: list[list[str]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes (a smoke test)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    parser.add_argument("--devices", default="auto", help="cpu, cuda, or auto (both if present)")
    parser.add_argument("--keep-freed-memory", action="store_true",
                        help="call exodus_lightning.ops.keep_freed_memory() (as the CLI does on "
                             "CPU); same effect as the MALLOC_* variables")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.child:
        _child(options.child)
        return

    import torch

    devices = options.devices.split(",") if options.devices != "auto" else (
        ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    shapes = [(4, 50, 256)] if options.quick else SHAPES
    sweep = [50, 150] if options.quick else SWEEP_T
    bf = 4 * 256 if options.quick else SWEEP_BF
    allocator = "default"
    if options.keep_freed_memory:
        allocator = "reuse (keep_freed_memory)"
    elif os.environ.get("MALLOC_MMAP_MAX_") == "0":
        allocator = "reuse (MALLOC_* variables)"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"glibc allocator: {allocator}\n")
    for device in devices:
        rows = []
        results = {}
        # (B, T, F, trainable): every shape, the first again with trainable parameters, then
        # the sweep over T.
        cases = [(b, t, f, "") for b, t, f in shapes]
        cases += [(*shapes[0], "alpha"), (*shapes[0], "alpha+threshold")]
        cases += [(1, t, bf, "") for t in sweep]
        for batch, time, features, trainable in cases:
            ext, ref = (run(backend, device, batch, time, features, options.repeats,
                            options.threads, trainable, options.keep_freed_memory)
                        for backend in ("extension", "reference"))
            results[(batch, time, features, trainable)] = ext
            label = f"({batch}, {time}, {features})" + TRAINABLE[trainable]
            rows.append([
                label,
                f"{ext['seconds'] * 1e3:.1f}",
                f"{ref['seconds'] * 1e3:.1f}",
                f"{ref['seconds'] / ext['seconds']:.1f}×",
                f"{ext['peak_mb']:.0f}",
                f"{ref['peak_mb']:.0f}",
                f"{ext['rate']:.3f}",
            ])
            print(f"  {device} {label}: extension {ext['seconds'] * 1e3:.1f} ms, "
                  f"reference {ref['seconds'] * 1e3:.1f} ms", file=sys.stderr)
        print(f"### {device}: one LIF layer, forward + backward (median of {options.repeats})\n")
        print(table(rows, ["(B, T, F)", "extension ms", "reference ms", "speed-up",
                           "extension peak MB", "reference peak MB", "spike rate"]))
        last = results[(1, sweep[-1], bf, "")]["seconds"]
        ratios = ", ".join(
            f"T {t} → {sweep[-1]}: × {last / results[(1, t, bf, '')]['seconds']:.1f} "
            f"(linear × {sweep[-1] / t:.0f})" for t in sweep[:-1])
        print(f"\nTime at B·F = {bf}, {ratios}\n")
        print(custom_surrogate_table(device, shapes[0], options))

def custom_surrogate_table(device: str, shape: tuple[int, int, int], options) -> str:
    """The extension with SingleExponential fused vs the same formula as a custom callable.

    Both allocators (glibc's default, keep_freed_memory), each measurement in its own process.
    """
    rows = []
    for keep in (False, True):
        fused, custom = (run("extension", device, *shape, options.repeats, options.threads,
                             keep_freed_memory=keep, custom_surrogate=is_custom)
                         for is_custom in (False, True))
        rows.append([
            "keep_freed_memory" if keep else "default",
            f"{fused['seconds'] * 1e3:.1f}",
            f"{custom['seconds'] * 1e3:.1f}",
            f"{custom['seconds'] / fused['seconds']:.2f}×",
            f"{fused['peak_mb']:.0f}",
            f"{custom['peak_mb']:.0f}",
        ])
    return (f"### {device}: custom surrogate at {shape}, forward + backward "
            f"(median of {options.repeats})\n\n"
            + table(rows, ["glibc allocator", "fused SingleExponential ms", "custom callable ms",
                           "ratio", "fused peak MB", "custom peak MB"]) + "\n")


if __name__ == "__main__":
    main()
