"""Speed and memory of one LIF (ALIF, adLIF) layer: the EXODUS extension vs the BPTT reference
loop, with glibc's default allocator and with freed memory kept for reuse.

Per case (shape, trained parameters, neuron model) and allocator mode, one fresh process times
forward + backward of the variants in interleaved rounds (timing.py: median, min–max); the
peak memory of one step (memory.step_peak_mb: the most bytes of tensors live at once, by
PyTorch's allocator) is read for each variant in a fresh process of its own. Writes three
README tables into --out:

    lif                LIF: extension vs reference, both allocators, plus a sweep over T
    alif_adlif         ALIF and adLIF: fused op vs autograd loop
    custom_surrogate   the built-in SingleExponential (fused in the kernel) vs the same
                       formula as a custom callable (compiled automatically after its first
                       backward passes) and wrapped by ops.uncompiled_surrogate (run as it is),
                       both allocators, 1 and 2 torch threads

    python -m experiments.benchmark_ops            # the full tables (~8 minutes on 2 cores)
    python -m experiments.benchmark_ops --tiny     # small shapes, seconds

"Reuse" is ops.keep_freed_memory() (what the CLI does on CPU; the same as
MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=<large>): on CPU, page faults on fresh 80 MB tensors
otherwise dominate (see docs/ops.md).
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file, too

from experiments import arguments, isolated, memory, report, timing  # noqa: E402

SHAPES = [(32, 300, 2048), (32, 100, 8192), (32, 1000, 512)]
SWEEP_T = [100, 300, 1000, 3000]
SWEEP_BF = 32 * 512
TINY_SHAPE = (4, 50, 256)
TINY_SWEEP_T = [50, 150]
TINY_BF = 4 * 256
ALLOCATORS = ("default", "reuse")

# Which parameters get gradients in a case, and how its row is labelled.
TRAINABLE = {"": "fixed", "alpha": "α trained", "alpha+threshold": "α, θ trained",
             "alpha+rho+beta+b0": "α, ρ, β, b0 trained", "alpha+beta+a+b": "α, β, a, b trained"}
NEURON_NAMES = {"lif": "LIF", "alif": "ALIF", "adlif": "adLIF"}

LIF_COLUMNS = (
    "(B, T, F)",
    "parameters",
    "default: extension ms",
    "default: reference ms",
    "speed-up",
    "reuse: extension ms",
    "reuse: reference ms",
    "speed-up (reuse)",
    "peak MB, extension / reference",
)
ALIF_ADLIF_COLUMNS = (
    "neuron",
    "parameters",
    "fused op, ms (min–max)",
    "autograd loop, ms (min–max)",
    "speed-up",
    "peak MB, op / loop",
)
CUSTOM_SURROGATE_COLUMNS = (
    "glibc allocator",
    "torch threads",
    "fused SingleExponential, ms (min–max)",
    "custom callable, ms (min–max)",
    "custom / fused",
    "uncompiled_surrogate(custom), ms (min–max)",
    "uncompiled / fused",
    "peak MB, fused / custom / uncompiled",
)
README_TABLES = {
    "lif": LIF_COLUMNS,
    "alif_adlif": ALIF_ADLIF_COLUMNS,
    "custom_surrogate": CUSTOM_SURROGATE_COLUMNS,
}


def custom_single_exponential(v_mem, threshold):
    """SingleExponential's formula as a plain function: a custom (not fused) surrogate."""
    import torch

    width = threshold * 0.5
    return 1.0 / width * torch.exp(-(v_mem - threshold).abs() / width)


@functools.cache
def uncompiled_custom_single_exponential():
    """custom_single_exponential wrapped by ops.uncompiled_surrogate: never compiled."""
    from exodus_lightning import ops

    return ops.uncompiled_surrogate(custom_single_exponential)


def make_step(variant: str, device: str, batch: int, time: int, features: int,
              trainable: str = "", neuron: str = "lif"):
    """(step, rate) for one layer: step() runs forward + backward, rate() the spike rate.

    variant: "extension", "reference" (the BPTT loop), "custom" (the extension with
    custom_single_exponential: compiled once it has served AUTO_COMPILE_AFTER backward passes,
    see warm_up) or "uncompiled" (the same, run as it is).
    α = 0.9 and θ = 1, fixed (the backward then needs no parameter gradients) or, as named in
    ``trainable``, per-neuron parameters that get gradients ("alpha" is nn.LIF's default).
    ALIF: ρ = 0.95, β = 1.8 (sinabs' default), b0 = θ. adLIF: β = 0.99, a = 60, b = 120
    (mid-range of SE-adLIF's q·a, q·b), a stronger drive for a
    similar spike rate. ~23 % spike rate (the rate docs/ops.md's heading states).
    """
    import torch

    from exodus_lightning import ops

    backend = "reference" if variant == "reference" else "extension"
    surrogate = {"custom": custom_single_exponential,
                 "uncompiled": uncompiled_custom_single_exponential()}.get(variant)
    generator = torch.Generator().manual_seed(0)
    drive = torch.randn(batch, time, features, generator=generator) * 0.6 + 0.25
    if neuron == "adlif":  # the input enters scaled by 1 − α, and adaptation pulls u down
        drive = drive * 8 + 3
    x = drive.to(device).requires_grad_()
    upstream = torch.randn(batch, time, features, generator=generator).to(device)
    trained = trainable.split("+") if trainable else []

    def parameter(value: float, name: str) -> torch.Tensor:
        return torch.full((features,), value, device=device, requires_grad=name in trained)

    alpha, rho, a, b = parameter(0.9, "alpha"), parameter(0.95, "rho"), parameter(60.0, "a"), \
        parameter(120.0, "b")
    beta = parameter(0.99 if neuron == "adlif" else 1.8, "beta")
    threshold = torch.ones(features, device=device,
                           requires_grad="threshold" in trained or "b0" in trained)
    parameters = (x, alpha, threshold, rho, beta, a, b)

    def layer() -> torch.Tensor:
        if neuron == "alif":
            return ops.alif(x, alpha, rho, beta, threshold, max_spikes=None,
                            surrogate=surrogate, backend=backend)[0]
        if neuron == "adlif":
            return ops.adlif(x, alpha, beta, a, b, threshold, surrogate=surrogate,
                             backend=backend)[0]
        return ops.lif(x, alpha, threshold, surrogate=surrogate, backend=backend)[0]

    def step() -> None:
        layer().backward(upstream)
        for tensor in parameters:
            tensor.grad = None
        if device == "cuda":
            torch.cuda.synchronize()

    def rate() -> float:
        with torch.no_grad():
            return layer().float().mean().item()

    return step, rate


def warm_up(variant: str, step) -> None:
    """Run "custom" past the backward passes after which its callable is compiled (timing and
    memory then see the compiled formula, as a training run does after its first steps)."""
    if variant == "custom":
        from exodus_lightning.ops import custom_surrogate

        for _ in range(custom_surrogate.AUTO_COMPILE_AFTER + 1):
            step()


def time_case(variants: list[str], rounds: int, **case: Any) -> dict:
    """Interleaved timings (seconds) of the variants on one case, and the spike rate."""
    steps = {variant: make_step(variant, **case)[0] for variant in variants}
    for variant, step in steps.items():
        warm_up(variant, step)
    times = timing.interleaved(steps, rounds)
    return {"samples": {v: list(t.samples) for v, t in times.items()},
            "rate": make_step(variants[0], **case)[1]()}


def peak_case(variant: str, **case: Any) -> float:
    """memory.step_peak_mb of one step, after loading the code on a tiny input."""
    tiny = dict(case, batch=1, time=2)
    make_step(variant, **tiny)[0]()
    step = make_step(variant, **case)[0]
    warm_up(variant, step)  # compiling for this shape (what the compiler keeps) comes first
    # The compiled callable keeps σ's memory between steps: counted here as part of the step.
    from exodus_lightning.ops.custom_surrogate import release_kept_memory

    release_kept_memory()
    return memory.step_peak_mb(step, case["device"])


def measure(case: dict, variants: list[str], allocators: tuple[str, ...], rounds: int,
            threads: int) -> dict:
    """{allocator: Timing per variant}, default-allocator peaks and the rate of one case."""
    result: dict[str, Any] = {"peak": {}}
    for allocator in allocators:
        timed = isolated.run(time_case, variants=variants, rounds=rounds, threads=threads,
                             keep_freed_memory=allocator == "reuse", **case)
        result[allocator] = {v: timing.Timing(tuple(s)) for v, s in timed["samples"].items()}
        result["rate"] = timed["rate"]
    for variant in variants:
        result["peak"][variant] = isolated.run(peak_case, variant=variant, threads=threads,
                                               **case)
    return result


def _ratio(slow: timing.Timing, fast: timing.Timing, digits: int = 1) -> str:
    return f"{slow.median / fast.median:.{digits}f}×"


def run(options: Any) -> dict:
    import torch

    out = arguments.setup(options)
    devices = (
        options.devices.split(",")
        if options.devices != "auto"
        else (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    )
    shapes = [TINY_SHAPE] if options.tiny else SHAPES
    sweep = TINY_SWEEP_T if options.tiny else SWEEP_T
    bf = TINY_BF if options.tiny else SWEEP_BF
    rounds = options.repeats or (2 if options.tiny else 7)
    wanted = options.tables.split(",")
    unknown = sorted(set(wanted) - set(README_TABLES))
    if unknown:
        raise SystemExit(f"--tables {','.join(unknown)}: choose from {', '.join(README_TABLES)}")
    tables = {}
    for device in devices:
        allocators = ALLOCATORS if device == "cpu" else ("default",)
        suffix = "" if device == "cpu" else f"_{device}"

        def case(batch, time, features, trainable="", neuron="lif", device=device):
            return dict(device=device, batch=batch, time=time, features=features,
                        trainable=trainable, neuron=neuron)

        lif_cases = [case(*shape) for shape in shapes] if "lif" in wanted else []
        if lif_cases:
            lif_cases += [case(*shapes[0], trainable=t) for t in ("alpha", "alpha+threshold")]
            lif_cases += [case(1, t, bf) for t in sweep]
        rows = []
        for spec in report.progress(lif_cases, f"benchmark_ops {device} LIF"):
            result = measure(spec, ["extension", "reference"], allocators, rounds,
                             options.threads)
            default = result["default"]
            reuse = result.get("reuse", default)
            rows.append({
                "(B, T, F)": f"({spec['batch']}, {spec['time']}, {spec['features']})",
                "parameters": TRAINABLE[spec["trainable"]],
                "default: extension ms": default["extension"].cell(),
                "default: reference ms": default["reference"].cell(),
                "speed-up": _ratio(default["reference"], default["extension"]),
                "reuse: extension ms": reuse["extension"].cell() if "reuse" in result else "",
                "reuse: reference ms": reuse["reference"].cell() if "reuse" in result else "",
                "speed-up (reuse)": (_ratio(reuse["reference"], reuse["extension"])
                                     if "reuse" in result else ""),
                "peak MB, extension / reference":
                    f"{result['peak']['extension']:.0f} / {result['peak']['reference']:.0f}",
                "spike rate": result["rate"],
            })
        if rows:
            tables["lif" + suffix] = report.write_readme_table(rows, out, "lif" + suffix,
                                                               LIF_COLUMNS, device, options.tiny)

        adaptive = [case(*shapes[0], neuron=n, trainable=t) for n, t in
                    (("alif", ""), ("alif", "alpha+rho+beta+b0"),
                     ("adlif", ""), ("adlif", "alpha+beta+a+b"))] if "alif_adlif" in wanted else []
        rows = []
        for spec in report.progress(adaptive, f"benchmark_ops {device} ALIF/adLIF"):
            result = measure(spec, ["extension", "reference"], ("default",), rounds,
                             options.threads)
            default = result["default"]
            rows.append({
                "neuron": NEURON_NAMES[spec["neuron"]],
                "parameters": TRAINABLE[spec["trainable"]],
                "fused op, ms (min–max)": default["extension"].cell(),
                "autograd loop, ms (min–max)": default["reference"].cell(),
                "speed-up": _ratio(default["reference"], default["extension"]),
                "peak MB, op / loop":
                    f"{result['peak']['extension']:.0f} / {result['peak']['reference']:.0f}",
                "spike rate": result["rate"],
            })
        if rows:
            tables["alif_adlif" + suffix] = report.write_readme_table(
                rows, out, "alif_adlif" + suffix, ALIF_ADLIF_COLUMNS, device, options.tiny)
        if "custom_surrogate" not in wanted:
            continue
        variants = ["extension", "custom", "uncompiled"]
        rows = []
        for threads in sorted({1, options.threads or torch.get_num_threads()}):
            result = measure(case(*shapes[0]), variants, allocators, rounds, threads)
            rows += [{
                "glibc allocator": allocator,
                "torch threads": threads,
                "fused SingleExponential, ms (min–max)": result[allocator]["extension"].cell(),
                "custom callable, ms (min–max)": result[allocator]["custom"].cell(),
                "custom / fused": _ratio(result[allocator]["custom"],
                                         result[allocator]["extension"], digits=2),
                "uncompiled_surrogate(custom), ms (min–max)":
                    result[allocator]["uncompiled"].cell(),
                "uncompiled / fused": _ratio(result[allocator]["uncompiled"],
                                             result[allocator]["extension"], digits=2),
                "peak MB, fused / custom / uncompiled": " / ".join(
                    f"{result['peak'][v]:.0f}" for v in variants),
            } for allocator in allocators]
        tables["custom_surrogate" + suffix] = report.write_readme_table(
            rows, out, "custom_surrogate" + suffix, CUSTOM_SURROGATE_COLUMNS, device, options.tiny)

    body = "\n".join(f"### {name}\n\n{text}" for name, text in tables.items())
    report.report("benchmark_ops", options, "One layer: fused op vs autograd loop",
                  [("Tables", body)], body)
    return tables


def main(argv: list[str] | None = None) -> dict:
    parser = arguments.experiment_parser("benchmark_ops", __doc__)
    parser.add_argument("--quick", dest="tiny", action="store_true", help="the same as --tiny")
    parser.add_argument("--repeats", type=int, default=0,
                        help="timed rounds per case (0: 7, tiny: 2)")
    parser.add_argument("--devices", default="auto", help="cpu, cuda, or auto (both if present)")
    parser.add_argument("--tables", default=",".join(README_TABLES),
                        help=f"tables to measure, of {', '.join(README_TABLES)} (default: all)")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
