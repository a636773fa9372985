"""Speed and memory of one LIF (ALIF, adLIF) layer: the EXODUS extension vs the BPTT reference
loop.

Prints a Markdown table of forward+backward median time and peak extra memory for each
(batch, time, features) shape, on CPU and (when present) CUDA, plus a sweep over T at fixed
batch·features. Each measurement runs in its own process so peak memory is that
implementation's alone.

    python experiments/benchmark_ops.py                 # the full table (a few minutes on 2 cores)
    python experiments/benchmark_ops.py --quick         # small shapes, seconds
    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000 python experiments/benchmark_ops.py
    python experiments/benchmark_ops.py --keep-freed-memory   # the same, set from Python
    python experiments/benchmark_ops.py --surrogates-only    # only the custom-surrogate table

The last two let glibc reuse freed memory instead of returning it to the OS after every call;
on CPU, page faults on fresh 80 MB tensors otherwise dominate (see the README).

After each device's table comes the custom-surrogate table: SingleExponential fused into the
kernels against the same formula as a plain Python function (evaluated in blocks) and the same
function wrapped by ops.compiled_surrogate, with both glibc allocator modes. The three run
interleaved, step after step, in one process per allocator mode, so that load from other
processes on a shared machine hits them alike; the ratios are per pair of neighbouring steps.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file, too

from experiments import arguments, report  # noqa: E402

SHAPES = [(32, 300, 2048), (32, 100, 8192), (32, 1000, 512)]
SWEEP_T = [100, 300, 1000, 3000]
SWEEP_BF = 32 * 512
# The custom-surrogate table's variants: the fused built-in, the plain function (in blocks), and
# the plain function compiled (ops.compiled_surrogate).
SURROGATES = ("fused", "custom", "compiled")


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
        self._sampler = subprocess.Popen(
            [sys.executable, "-c", _SAMPLER, str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._sampler.stdout.readline()  # "ready"
        self.peak = self.current()
        return self

    def __exit__(self, *exc) -> None:
        self._sampler.stdin.close()
        sampled = int(self._sampler.stdout.readline())
        self._sampler.wait()
        self.peak = max(self.peak, sampled, self.current())


# Which LIF parameters get gradients in a benchmark case, and how its row is labelled.
TRAINABLE = {"": "", "alpha": " trainable α", "alpha+threshold": " trainable α, θ",
             "alpha+rho+beta+b0": " trainable α, ρ, β, b0",
             "alpha+beta+a+b": " trainable α, β, a, b"}


def custom_single_exponential(v_mem, threshold):
    """SingleExponential's formula as a plain function: a custom (not fused) surrogate."""
    import torch

    width = threshold * 0.5
    return 1.0 / width * torch.exp(-(v_mem - threshold).abs() / width)


def surrogate_for(name: str):
    """The surrogate of a SURROGATES variant (None: the op's fused default)."""
    from exodus_lightning import ops

    return {"fused": None, "custom": custom_single_exponential,
            "compiled": ops.compiled_surrogate(custom_single_exponential)}[name]


def measure(
    backend: str,
    device: str,
    batch: int,
    time: int,
    features: int,
    repeats: int,
    trainable: str = "",
    neuron: str = "lif",
    surrogate: str = "fused",
) -> dict:
    """Median forward+backward seconds and peak extra memory (MB) of one LIF, ALIF or adLIF
    layer.

    α = 0.9 and θ = 1, fixed (the backward then needs no parameter gradients) or, as named in
    ``trainable`` ("alpha", "alpha+threshold"), per-neuron parameters that get gradients:
    "alpha" is nn.LIF's default (τ trains, θ does not). ALIF (``neuron="alif"``): ρ = 0.95,
    β = 1.8 (sinabs' default), b0 = θ; "alpha+rho+beta+b0" trains all four. adLIF
    (``neuron="adlif"``): β = 0.99, a = 60, b = 120 (mid-range of SE-adLIF's q·a, q·b), a
    stronger drive for a similar spike rate; "alpha+beta+a+b" trains all four (as SE-adLIF).
    ``surrogate``: one of SURROGATES (LIF only); "compiled" compiles in a warm-up step.

    Peak extra memory: the highest memory during the first full-size step minus what was there
    before it (inputs, interpreter, libraries): resident memory on CPU, allocated memory on CUDA.
    """
    import statistics
    import time as clock

    import torch

    from exodus_lightning import ops

    torch.manual_seed(0)
    # ~10 % spike rate, like PEERS.md's measurements.
    drive = torch.randn(batch, time, features, device=device) * 0.6 + 0.25
    if neuron == "adlif":  # the input enters scaled by 1 − α, and adaptation pulls u down
        drive = drive * 8 + 3
    x = drive.requires_grad_()
    upstream = torch.randn(batch, time, features, device=device)
    trained = trainable.split("+") if trainable else []
    alpha = torch.full((features,), 0.9, device=device, requires_grad="alpha" in trained)
    threshold = torch.ones(features, device=device,
                           requires_grad="threshold" in trained or "b0" in trained)
    rho = torch.full((features,), 0.95, device=device, requires_grad="rho" in trained)
    beta = torch.full((features,), 0.99 if neuron == "adlif" else 1.8, device=device,
                      requires_grad="beta" in trained)
    a = torch.full((features,), 60.0, device=device, requires_grad="a" in trained)
    b = torch.full((features,), 120.0, device=device, requires_grad="b" in trained)

    def layer(x, alpha, threshold):
        if neuron == "alif":
            return ops.alif(x, alpha, rho, beta, threshold, max_spikes=None, backend=backend)[0]
        if neuron == "adlif":
            return ops.adlif(x, alpha, beta, a, b, threshold, backend=backend)[0]
        return ops.lif(x, alpha, threshold, surrogate=surrogate_fn, backend=backend)[0]

    surrogate_fn = surrogate_for(surrogate)

    def step():
        layer(x, alpha, threshold).backward(upstream)
        x.grad = alpha.grad = threshold.grad = rho.grad = beta.grad = a.grad = b.grad = None
        if device == "cuda":
            torch.cuda.synchronize()

    # Load the extension on a tiny input, so that memory freed by a full-size warm-up step and
    # kept by the allocator cannot hide the peak; the first full-size step is measured, not timed.
    tiny = x.detach()[:1, :2].requires_grad_()
    layer(tiny, alpha, threshold).sum().backward()
    if surrogate == "compiled":  # the compile, and what it allocates and keeps, before the peak
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
        rate = layer(x, alpha, threshold).mean().item()
    return {"seconds": statistics.median(times), "peak_mb": peak / 2**20, "rate": rate}


def measure_surrogates(device: str, batch: int, time: int, features: int, repeats: int) -> dict:
    """Forward+backward seconds of one LIF layer with each of SURROGATES, run interleaved.

    Per variant: the median, min and max over ``repeats`` steps, and the median, min and max of
    its ratio to the fused step run just before it (load from other processes hits the pair
    alike). Each variant runs once first (the compiled one compiles then).
    """
    import statistics
    import time as clock

    import torch

    from exodus_lightning import ops

    torch.manual_seed(0)
    x = (torch.randn(batch, time, features, device=device) * 0.6 + 0.25).requires_grad_()
    upstream = torch.randn(batch, time, features, device=device)
    alpha = torch.full((features,), 0.9, device=device)
    threshold = torch.ones(features, device=device)
    surrogates = {name: surrogate_for(name) for name in SURROGATES}

    def step(name):
        start = clock.perf_counter()
        ops.lif(x, alpha, threshold, surrogate=surrogates[name], backend="extension")[0].backward(
            upstream)
        x.grad = None
        if device == "cuda":
            torch.cuda.synchronize()
        return clock.perf_counter() - start

    for name in SURROGATES:
        step(name)
    times = {name: [] for name in SURROGATES}
    for _ in range(repeats):
        for name in SURROGATES:
            times[name].append(step(name))
    result = {}
    for name, seconds in times.items():
        ratios = [t / fused for t, fused in zip(seconds, times["fused"])]
        result[name] = {"median": statistics.median(seconds), "min": min(seconds),
                        "max": max(seconds), "ratio": statistics.median(ratios),
                        "ratio_min": min(ratios), "ratio_max": max(ratios)}
    return result


def _child(spec: str) -> None:
    import torch

    args = json.loads(spec)
    torch.set_num_threads(args.pop("threads") or torch.get_num_threads())
    if args.pop("keep_freed_memory"):
        from exodus_lightning import ops

        ops.keep_freed_memory()
    if args.pop("interleaved", False):
        print(json.dumps(measure_surrogates(**args)))
        return
    print(json.dumps(measure(**args)))


def run(spec: dict) -> dict:
    """measure(**spec) in a fresh process; spec also holds "threads" and "keep_freed_memory"."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ.copy(),
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = arguments.parser("python experiments/benchmark_ops.py", __doc__)
    parser.add_argument("--quick", action="store_true", help="small shapes (a smoke test)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    parser.add_argument("--devices", default="auto", help="cpu, cuda, or auto (both if present)")
    parser.add_argument(
        "--keep-freed-memory",
        action="store_true",
        help="call exodus_lightning.ops.keep_freed_memory() (as the CLI does on "
        "CPU); same effect as the MALLOC_* variables",
    )
    parser.add_argument("--surrogates-only", action="store_true",
                        help="only the custom-surrogate table (both allocator modes)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.child:
        _child(options.child)
        return

    import torch

    devices = (
        options.devices.split(",")
        if options.devices != "auto"
        else (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    )
    shapes = [(4, 50, 256)] if options.quick else SHAPES
    sweep = [50, 150] if options.quick else SWEEP_T
    bf = 4 * 256 if options.quick else SWEEP_BF
    allocator = "default"
    if options.keep_freed_memory:
        allocator = "reuse (keep_freed_memory)"
    elif os.environ.get("MALLOC_MMAP_MAX_") == "0":
        allocator = "reuse (MALLOC_* variables)"
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
        f"glibc allocator: {allocator}\n"
    )
    for device in devices:
        if options.surrogates_only:
            print(custom_surrogate_table(device, shapes[0], options))
            continue
        settings = dict(
            device=device,
            repeats=options.repeats,
            threads=options.threads,
            keep_freed_memory=options.keep_freed_memory,
        )
        rows = []
        results = {}
        # (B, T, F, trainable): every shape, the first again with trainable parameters, then
        # the sweep over T.
        cases = [(b, t, f, "", "lif") for b, t, f in shapes]
        cases += [(*shapes[0], "alpha", "lif"), (*shapes[0], "alpha+threshold", "lif")]
        cases += [(1, t, bf, "", "lif") for t in sweep]
        cases += [(*shapes[0], "", "alif"), (*shapes[0], "alpha+rho+beta+b0", "alif")]
        cases += [(*shapes[0], "", "adlif"), (*shapes[0], "alpha+beta+a+b", "adlif")]
        for batch, time, features, trainable, neuron in cases:
            case = dict(settings, batch=batch, time=time, features=features, trainable=trainable,
                        neuron=neuron)
            ext, ref = (run(dict(case, backend=b)) for b in ("extension", "reference"))
            if neuron == "lif":
                results[(batch, time, features, trainable)] = ext
            label = {"lif": "", "alif": "ALIF ", "adlif": "adLIF "}[neuron] + (
                f"({batch}, {time}, {features})" + TRAINABLE[trainable])
            rows.append(
                {
                    "(B, T, F)": label,
                    "extension ms": f"{ext['seconds'] * 1e3:.1f}",
                    "reference ms": f"{ref['seconds'] * 1e3:.1f}",
                    "speed-up": f"{ref['seconds'] / ext['seconds']:.1f}×",
                    "extension peak MB": f"{ext['peak_mb']:.0f}",
                    "reference peak MB": f"{ref['peak_mb']:.0f}",
                    "spike rate": f"{ext['rate']:.3f}",
                }
            )
            print(
                f"  {device} {label}: extension {ext['seconds'] * 1e3:.1f} ms, "
                f"reference {ref['seconds'] * 1e3:.1f} ms",
                file=sys.stderr,
            )
        print(f"### {device}: one LIF (ALIF, adLIF) layer, forward + backward (median of "
              f"{options.repeats})\n")
        print(report.markdown_table(rows), end="")
        last = results[(1, sweep[-1], bf, "")]["seconds"]
        ratios = ", ".join(
            f"T {t} → {sweep[-1]}: × {last / results[(1, t, bf, '')]['seconds']:.1f} "
            f"(linear × {sweep[-1] / t:.0f})"
            for t in sweep[:-1]
        )
        print(f"\nTime at B·F = {bf}, {ratios}\n")
        print(custom_surrogate_table(device, shapes[0], options))


def custom_surrogate_table(device: str, shape: tuple[int, int, int], options) -> str:
    """SingleExponential fused vs the same formula as a custom callable, plain and compiled.

    Both glibc allocator modes, each in its own process; times from measure_surrogates (one
    interleaved run), peak memory from measure (each variant in its own process).
    """
    rows = []
    for keep in (False, True):
        common = dict(device=device, batch=shape[0], time=shape[1], features=shape[2],
                      repeats=options.repeats, threads=options.threads, keep_freed_memory=keep)
        times = run(dict(common, interleaved=True))
        for name in SURROGATES:
            peak = run(dict(common, backend="extension", surrogate=name))["peak_mb"]
            t = times[name]
            rows.append({
                "glibc allocator": "keep_freed_memory" if keep else "default",
                "surrogate": {"fused": "SingleExponential() (fused)",
                              "custom": "the same formula, a plain function",
                              "compiled": "the same, ops.compiled_surrogate(fn)"}[name],
                "ms, median (min–max)": f"{t['median'] * 1e3:.1f} "
                                        f"({t['min'] * 1e3:.1f}–{t['max'] * 1e3:.1f})",
                "× fused, median (min–max)": f"{t['ratio']:.2f} "
                                             f"({t['ratio_min']:.2f}–{t['ratio_max']:.2f})",
                "peak MB": f"{peak:.0f}",
            })
        print(f"  {device} custom surrogates, keep_freed_memory={keep}: "
              + ", ".join(f"{n} {times[n]['ratio']:.2f}×" for n in SURROGATES), file=sys.stderr)
    return (f"### {device}: custom surrogate at {shape}, forward + backward, "
            f"{options.repeats} interleaved steps each\n\n" + report.markdown_table(rows))


if __name__ == "__main__":
    main()
