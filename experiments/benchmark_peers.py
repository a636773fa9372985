"""One LIF layer, forward + backward: ours vs every installed peer, each first shown to compute
the same thing.

For each implementation of experiments/peers.py (exodus, the BPTT autograd loop, sinabs,
snnTorch, SpikingJelly; peers not installed are skipped with a note), on the same input:

    spike mismatch     fraction of outputs that differ from the float64 reference's spikes
    input-grad error   ‖∂L/∂x − ∂L/∂x_ref‖ / ‖∂L/∂x_ref‖, L = Σ spikes · g for a fixed random g
    ms fwd+bwd         median (min–max) over interleaved rounds (timing.py), one fresh process
                       per glibc allocator mode: default, and reuse (ops.keep_freed_memory(),
                       what exodus-lightning's CLI does on CPU)
    peak MB            most bytes of tensors live at once in one step (memory.step_peak_mb:
                       PyTorch's allocator accounting), each implementation in a fresh process

The reference is our autograd loop in float64 with the peer's own surrogate (peers.py), so a
fast wrong answer shows as a mismatch, not as a win.

    python -m experiments.benchmark_peers             # (32, 300, 2048): ~4 minutes on 2 cores
    python -m experiments.benchmark_peers --tiny      # seconds
"""

from __future__ import annotations

import math
from typing import Any

import torch

from experiments import arguments, isolated, memory, peers, report, timing
from experiments.common import relative_error

EXPERIMENT = "benchmark_peers"
ALPHA = math.exp(-1 / 20)
SHAPE = (32, 300, 2048)
TINY_SHAPE = (2, 20, 16)
COLUMNS = (
    "glibc allocator",
    "implementation",
    "surrogate",
    "spike mismatch",
    "input-grad error",
    "ms fwd+bwd, median (min–max)",
    "time vs exodus",
    "peak MB",
)
README_TABLES = {"lif_layer": COLUMNS}


def _inputs(shape: tuple[int, ...], dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The benchmark's input (~10 % spike rate at α = e^(−1/20), θ = 1) and upstream gradient."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=generator, dtype=torch.float64) * 0.6 + 0.25
    upstream = torch.randn(shape, generator=generator, dtype=torch.float64)
    return x.to(dtype), upstream.to(dtype)


def equivalence(name: str, shape: tuple[int, ...]) -> dict[str, float]:
    """Spike mismatch fraction and input-gradient error of name (float32) vs the reference."""
    results = {}
    for label, layer, dtype in (
        ("run", peers.lif_layer(name, ALPHA), torch.float32),
        ("reference", peers.reference_layer(name, ALPHA), torch.float64),
    ):
        x, upstream = _inputs(shape, dtype)
        x.requires_grad_()
        spikes = layer(x)
        spikes.backward(upstream)
        results[label] = (spikes.detach().double(), x.grad.double())
    (spikes, grad), (ref_spikes, ref_grad) = results["run"], results["reference"]
    return {
        "mismatch": (spikes != ref_spikes).double().mean().item(),
        "grad_error": relative_error(grad, ref_grad),
        "rate": ref_spikes.mean().item(),
    }


def _step(name: str, shape: tuple[int, ...]):
    layer = peers.lif_layer(name, ALPHA)
    x, upstream = _inputs(shape, torch.float32)
    x.requires_grad_()

    def step() -> None:
        layer(x).backward(upstream)
        x.grad = None

    return step


def time_all(names: list[str], shape: list[int], rounds: int) -> dict[str, list[float]]:
    """Seconds per forward + backward of each implementation, interleaved (timing.py); run in
    a fresh process per allocator mode (isolated.run)."""
    times = timing.interleaved({name: _step(name, tuple(shape)) for name in names}, rounds)
    return {name: list(t.samples) for name, t in times.items()}


def peak_mb(name: str, shape: list[int]) -> float:
    """Peak memory of one forward + backward (run in a fresh process: isolated.run)."""
    _step(name, (1, 2, *shape[2:]))()  # load the code (kernels, libraries) on a tiny input
    return memory.step_peak_mb(_step(name, tuple(shape)))


def run(options: Any) -> dict:
    out = arguments.setup(options)
    shape = TINY_SHAPE if options.tiny else SHAPE
    rounds = options.rounds or (2 if options.tiny else 7)
    notes, names = [], []
    for name in (*peers.OURS, *peers.PEERS):
        reason = peers.unavailable(name)
        if reason is None:
            names.append(name)
        else:
            notes.append(f"- skipped {reason}")
    same = {name: equivalence(name, shape) for name in names}
    peaks = {name: isolated.run(peak_mb, name=name, shape=list(shape), threads=options.threads)
             for name in names}
    rows = []
    for allocator in ("default", "reuse"):
        samples = isolated.run(time_all, names=names, shape=list(shape), rounds=rounds,
                               threads=options.threads, keep_freed_memory=allocator == "reuse")
        times = {name: timing.Timing(tuple(s)) for name, s in samples.items()}
        rows += [
            {
                "glibc allocator": allocator,
                "implementation": name,
                "surrogate": peers.IMPLEMENTATIONS[name].surrogate_name,
                "spike mismatch": same[name]["mismatch"],
                "input-grad error": same[name]["grad_error"],
                "ms fwd+bwd, median (min–max)": times[name].cell(),
                "time vs exodus": f"{times[name].median / times['exodus'].median:.2f}×",
                "peak MB": peaks[name],
                "spike rate": same[name]["rate"],
            }
            for name in names
        ]
    title = (f"One LIF layer {tuple(shape)}, single spike, α = e^(−1/20), forward + backward, "
             f"float32; {rounds} interleaved rounds")
    table = report.write_readme_table(rows, out, "lif_layer", COLUMNS, device="cpu",
                                       tiny=options.tiny)
    body = f"{title}\n\n{table}" + ("\n" + "\n".join(notes) + "\n" if notes else "")
    report.report(EXPERIMENT, options, "One LIF layer: ours vs peers", [("Table", body)], body)
    return {"rows": rows, "notes": notes}


def main(argv: list[str] | None = None) -> dict:
    parser = arguments.experiment_parser(EXPERIMENT, __doc__)
    parser.add_argument("--rounds", type=int, default=0, help="timed rounds (0: 7, tiny: 2)")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
