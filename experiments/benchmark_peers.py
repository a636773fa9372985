"""One LIF layer, forward + backward: ours vs every installed peer, each first shown to compute
the same thing.

For each implementation of experiments/peers.py (exodus, the BPTT autograd loop, sinabs,
snnTorch, SpikingJelly, Norse, and snnTorch and Norse with their per-step cell under
torch.compile, compiled before the timed rounds), on the same input:

    spike mismatch     fraction of outputs that differ from the float64 reference's spikes
    input-grad error   ‖∂L/∂x − ∂L/∂x_ref‖ / ‖∂L/∂x_ref‖, L = Σ spikes · g for a fixed random g
    ms fwd+bwd         median (min–max) over interleaved rounds (timing.py), one fresh process
                       per glibc allocator mode: default, and reuse (ops.keep_freed_memory(),
                       what exodus-lightning's CLI does on CPU)
    peak MB            most bytes of tensors live at once in one step (memory.step_peak_mb:
                       PyTorch's allocator accounting), each implementation in a fresh process

The reference is our autograd loop in float64 with the peer's own surrogate (peers.py), so a
fast wrong answer shows as a mismatch, not as a win. A peer that is not installed, does not
import or fails in one of the measurements is left out of the table with a note below it
(in the table file that experiments/tables.py copies into the docs), and the others are measured.

    python -m experiments.benchmark_peers             # (32, 300, 2048): ~4 minutes on 2 cores
    python -m experiments.benchmark_peers --tiny      # seconds
    python -m experiments.benchmark_peers --only norse norse-compiled   # ours and these peers
"""

from __future__ import annotations

import math
import time as clock
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
    """The benchmark's input (~24 % spike rate at α = e^(−1/20), θ = 1) and upstream gradient."""
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


def time_all(names: list[str], shape: list[int], rounds: int) -> dict[str, dict]:
    """Seconds per forward + backward of each implementation, interleaved (timing.py); run in
    a fresh process per allocator mode (isolated.run).

    Each step runs once first, untimed (for the compiled peers this compiles; its seconds are
    returned as "first"); a peer whose first step fails is returned in "failed", not timed.
    """
    steps, first, failed = {}, {}, {}
    for name in names:
        try:
            start = clock.perf_counter()
            step = _step(name, tuple(shape))
            step()
            first[name] = clock.perf_counter() - start
            steps[name] = step
        except Exception as error:
            if name in peers.OURS:
                raise
            failed[name] = peers.one_line(error)
    times = timing.interleaved(steps, rounds)
    return {"samples": {name: list(t.samples) for name, t in times.items()},
            "first": first, "failed": failed}


def peak_mb(name: str, shape: list[int]) -> float:
    """Peak memory of one forward + backward (run in a fresh process: isolated.run), after one
    step of the same shape that loads the code (libraries, kernels, compiled graphs)."""
    step = _step(name, tuple(shape))
    step()
    return memory.step_peak_mb(step)


def _drop(name: str, stage: str, error: BaseException | str, names: list[str],
          notes: list[str], shape: tuple[int, ...]) -> None:
    """Leave a failing peer out of the table with a note; our own implementations must run."""
    if name in peers.OURS:
        raise error if isinstance(error, BaseException) else RuntimeError(error)
    names.remove(name)
    reason = error if isinstance(error, str) else peers.one_line(error)
    notes.append(f"- {name} left out: its {stage} at {shape} failed: {reason}")


def run(options: Any) -> dict:
    out = arguments.setup(options)
    shape = TINY_SHAPE if options.tiny else SHAPE
    rounds = options.rounds or (2 if options.tiny else 7)
    notes, names = [], []
    for name in (*peers.OURS, *peers.PEERS, *peers.COMPILED_PEERS):
        if options.only and name not in options.only and name not in peers.OURS:
            continue
        reason = peers.unavailable(name)
        if reason is None:
            names.append(name)
        else:
            notes.append(f"- skipped {reason}")
    same, peaks = {}, {}
    for name in list(names):
        try:
            same[name] = equivalence(name, shape)
        except Exception as error:
            _drop(name, "equivalence check", error, names, notes, shape)
    for name in list(names):
        try:
            peaks[name] = isolated.run(peak_mb, name=name, shape=list(shape),
                                       threads=options.threads)
        except RuntimeError as error:
            _drop(name, "peak-memory step", error, names, notes, shape)
    timed, first = {}, {}
    for allocator in ("default", "reuse"):
        result = isolated.run(time_all, names=names, shape=list(shape), rounds=rounds,
                              threads=options.threads, keep_freed_memory=allocator == "reuse")
        for name, reason in result["failed"].items():
            _drop(name, f"timing ({allocator} allocator)", reason, names, notes, shape)
        timed[allocator] = {name: timing.Timing(tuple(s)) for name, s in result["samples"].items()}
        first[allocator] = result["first"]
    for name in names:
        if name in peers.COMPILED_PEERS:
            seconds = max(first[allocator][name] for allocator in first)
            notes.append(f"- {name}: the peer's per-step cell under torch.compile; compiling "
                         f"(with the first step: ≤ {seconds:.0f} s) runs before the timed rounds")
    rows = []
    for allocator, times in timed.items():
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
                                       tiny=options.tiny, notes=notes)
    body = f"{title}\n\n{table}"
    report.report(EXPERIMENT, options, "One LIF layer: ours vs peers", [("Table", body)], body)
    return {"rows": rows, "notes": notes}


def main(argv: list[str] | None = None) -> dict:
    parser = arguments.experiment_parser(EXPERIMENT, __doc__)
    parser.add_argument("--rounds", type=int, default=0, help="timed rounds (0: 7, tiny: 2)")
    parser.add_argument("--only", nargs="+", metavar="PEER",
                        choices=[*peers.PEERS, *peers.COMPILED_PEERS],
                        help="measure only these peers (ours always); default: every peer")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
