"""sinabs' layers vs ours with the same arguments: same spikes and gradients, time per step.

Each case builds a sinabs layer and ours from one set of keyword arguments (the import is the
only difference), checks that spikes, final states and input/parameter gradients agree, then
times forward + backward (and forward alone, without autograd) alternately in one process and
reports medians and the speed-up. The defaults are sinabs' (multi-spike, subtracting reset,
SingleExponential surrogate, norm_input=True, trainable tau_mem). Each allocator mode (glibc's
default, and reuse: ops.keep_freed_memory()) runs in a fresh process of its own. Writes
speed.csv/.md (every case and mode) and the docs' table layers.md ("default / reuse" cells).

    python -m experiments.sinabs_speed                      # (32, 300, 2048) and friends, ~12 min
    python -m experiments.sinabs_speed --tiny               # seconds, tiny shapes (tests)
    python -m experiments.sinabs_speed --keep-freed-memory  # the reuse mode alone
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from exodus_lightning import nn as enn
from exodus_lightning import ops
from experiments import arguments, provenance, report, timing

EXPERIMENT = "sinabs_speed"
ROOT = Path(__file__).resolve().parents[1]
TAU_MEM = 20.0
ALLOCATORS = ("default", "reuse")  # reuse: ops.keep_freed_memory()
# The docs' table (experiments/tables.py copies <out>/layers.md into it).
README_TABLES: dict[str, tuple[str, ...]] = {
    "layers": ("layer, (B, T, F)", "sinabs fwd+bwd", "ours fwd+bwd", "fwd+bwd speed-up",
               "forward-only speed-up"),
}


@dataclass
class Case:
    """One layer kind with its arguments; shape is (batch, time, features)."""

    name: str
    layer: str
    shape: tuple[int, int, int]
    kwargs: dict[str, Any] = field(default_factory=dict)
    scale: float = 1.0  # input = (uniform[0, 1) − 0.2) · scale: ~20 % spike rate


def cases(tiny: bool) -> list[Case]:
    big, recurrent = ((2, 12, 16), (2, 12, 8)) if tiny else ((32, 300, 2048), (32, 300, 512))
    return [
        Case("LIF, sinabs' defaults", "LIF", big, {"tau_mem": TAU_MEM}, scale=14.0),
        Case(
            "LIF, tau_syn, min_v_mem=-1",
            "LIF",
            big,
            {"tau_mem": TAU_MEM, "tau_syn": 5.0, "min_v_mem": -1.0},
            scale=3.0,
        ),
        Case("IAF, SingleSpike", "IAF", big, {"spike_fn": "SingleSpike"}, scale=0.7),
        Case(
            "LIFRecurrent, nn.Linear connection",
            "LIFRecurrent",
            recurrent,
            {"tau_mem": TAU_MEM, "norm_input": False},
            scale=0.7,
        ),
    ]


def build(library: Any, activation: Any, case: Case, seed: int) -> nn.Module:
    """The case's layer from library (sinabs.layers or exodus_lightning.nn)."""
    kwargs = dict(case.kwargs)
    if "spike_fn" in kwargs:
        kwargs["spike_fn"] = getattr(activation, kwargs["spike_fn"])
    if case.layer == "LIFRecurrent":
        torch.manual_seed(seed)
        features = case.shape[2]
        rec = nn.Linear(features, features, bias=False)
        nn.init.normal_(rec.weight, std=0.3 / features**0.5)
        kwargs["rec_connect"] = rec
    return getattr(library, case.layer)(**kwargs)


def step(layer: nn.Module, x: Tensor, weights: Tensor, backward: bool) -> dict[str, Tensor]:
    """One forward (+ backward) pass from rest; outputs and gradients by name."""
    layer.reset_states()
    if not backward:
        with torch.no_grad():
            return {"spikes": layer(x)}
    x = x.detach().requires_grad_()
    layer.zero_grad(set_to_none=True)
    spikes = layer(x)
    (spikes * weights).sum().backward()
    grads = {f"grad_{n}": p.grad for n, p in layer.named_parameters() if p.grad is not None}
    return {"spikes": spikes.detach(), "grad_x": x.grad} | grads


def max_relative(a: Tensor, b: Tensor) -> float:
    scale = b.abs().max().clamp(min=1e-12)
    return float(((a.float() - b.float()).abs().max() / scale).item())


def compare(theirs: dict[str, Tensor], ours_: dict[str, Tensor]) -> dict[str, Any]:
    """Spike mismatches and the largest relative gradient difference."""
    mismatched = int((theirs["spikes"] != ours_["spikes"]).sum().item())
    grad_error = max(
        (max_relative(ours_[k], theirs[k]) for k in theirs if k.startswith("grad_")), default=0.0
    )
    return {
        "spike mismatches": mismatched,
        "max grad diff (rel.)": grad_error,
        "spike rate": float(theirs["spikes"].mean().item()),
    }


def timings(functions: Sequence[Callable[[], Any]], repeats: int) -> list[timing.Timing]:
    """Seconds of each function over interleaved rounds after one warm-up round
    (timing.interleaved)."""
    times = timing.interleaved(dict(enumerate(functions)), rounds=repeats)
    return [times[index] for index in range(len(functions))]


def spread_ms(times: timing.Timing) -> dict[str, float]:
    """median, min and max of times in ms, as row entries "" / " min" / " max" suffixes."""
    return {"": 1e3 * times.median, " min": 1e3 * times.low, " max": 1e3 * times.high}


def run_case(case: Case, repeats: int, seed: int) -> dict[str, Any]:
    import sinabs.activation as sa
    import sinabs.layers as sl

    theirs = build(sl, sa, case, seed)
    ours_ = build(enn, sa, case, seed)
    if case.layer == "LIFRecurrent":
        ours_.rec_connect = theirs.rec_connect  # one connection: same weights, separate grads
    generator = torch.Generator().manual_seed(seed)
    x = (torch.rand(case.shape, generator=generator) - 0.2) * case.scale
    weights = torch.randn(case.shape, generator=generator)
    check = compare(step(theirs, x, weights, True), step(ours_, x, weights, True))
    full = timings(
        [lambda: step(theirs, x, weights, True), lambda: step(ours_, x, weights, True)], repeats
    )
    forward = timings(
        [lambda: step(theirs, x, weights, False), lambda: step(ours_, x, weights, False)], repeats
    )
    row: dict[str, Any] = {"case": case.name, "(B, T, F)": str(case.shape)}
    for name, times in (("sinabs fwd+bwd ms", full[0]), ("ours fwd+bwd ms", full[1]),
                        ("sinabs fwd ms", forward[0]), ("ours fwd ms", forward[1])):
        row |= {name + suffix: value for suffix, value in spread_ms(times).items()}
    row["fwd+bwd speed-up"] = full[0].median / full[1].median
    row["fwd speed-up"] = forward[0].median / forward[1].median
    return row | check


def measure(options: Any, allocator: str) -> list[dict[str, Any]]:
    """Every case's row with one allocator mode, each mode in a fresh process (glibc's mode
    cannot be switched back once set; a fresh process starts each mode from the same heap)."""
    command = [sys.executable, "-m", f"experiments.{EXPERIMENT}", "--allocator-run", allocator,
               "--out", str(options.out), "--repeats", str(options.repeats),
               "--seed", str(options.seed), "--threads", str(options.threads)]
    command += ["--tiny"] if options.tiny else []
    # stderr (the progress bar) passes through; stdout's last line is the rows as JSON.
    result = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=True)
    return [{"allocator": allocator, **row}
            for row in json.loads(result.stdout.strip().splitlines()[-1])]


def duration(ms: float) -> str:
    """A time cell: "21.4 s" from a second up, "289 ms" below."""
    return f"{ms / 1e3:.1f} s" if ms >= 1e3 else f"{ms:.3g} ms"


def with_spread(row: dict[str, Any], column: str) -> str:
    """"median (min–max)" of a time column, e.g. "289 ms (280 ms–301 ms)"."""
    low, high = duration(row[column + " min"]), duration(row[column + " max"])
    return f"{duration(row[column])} ({low}–{high})"


def times(ratio: float) -> str:
    """A speed-up cell: "74×" from 10 up, "4.6×" below."""
    return f"{ratio:.0f}×" if ratio >= 10 else f"{ratio:.2g}×"


def readme_rows(rows: list[dict[str, Any]], allocators: Sequence[str]) -> list[dict[str, Any]]:
    """One row per case; each cell holds the allocator modes' values joined by " / "."""
    table = []
    for case in dict.fromkeys(row["case"] for row in rows):
        mine = {row["allocator"]: row for row in rows if row["case"] == case}
        by_mode = [mine[allocator] for allocator in allocators]
        table.append(dict(zip(README_TABLES["layers"], (
            f"{case}, {by_mode[0]['(B, T, F)']}",
            " / ".join(with_spread(row, "sinabs fwd+bwd ms") for row in by_mode),
            " / ".join(with_spread(row, "ours fwd+bwd ms") for row in by_mode),
            joined(by_mode, "fwd+bwd speed-up", times),
            joined(by_mode, "fwd speed-up", times),
        ))))
    return table


def joined(rows: list[dict[str, Any]], column: str, show: Callable[[float], str]) -> str:
    """One cell from several rows' values of column, e.g. "289 ms / 159 ms"."""
    return " / ".join(show(row[column]) for row in rows)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = arguments.experiment_parser(EXPERIMENT, __doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--allocators",
        default=",".join(ALLOCATORS),
        help="comma list of glibc allocator modes, each run in a fresh process: default, "
        "reuse (ops.keep_freed_memory())",
    )
    parser.add_argument(
        "--keep-freed-memory",
        action="store_true",
        help="the reuse mode alone (same as --allocators reuse)",
    )
    parser.add_argument("--allocator-run", type=str, default=None,
                        help="internal: measure every case with this allocator mode in this "
                        "process, print the rows as JSON")
    options = parser.parse_args(argv)
    out = arguments.setup(options)
    if options.allocator_run:
        if options.allocator_run == "reuse":
            ops.keep_freed_memory()
        rows = [run_case(case, 1 if options.tiny else options.repeats, options.seed)
                for case in report.progress(cases(options.tiny), options.allocator_run)]
        print(json.dumps(rows))
        return {"rows": rows}
    allocators = ["reuse"] if options.keep_freed_memory else options.allocators.split(",")
    unknown = set(allocators) - set(ALLOCATORS)
    if unknown or not allocators:
        raise SystemExit(f"--allocators: unknown modes {sorted(unknown)}; choose from "
                         f"{', '.join(ALLOCATORS)}")
    rows = [row for allocator in allocators for row in measure(options, allocator)]
    table = report.write_table(rows, out / "speed")
    provenance.note_allocator(" / ".join(
        "reuse (keep_freed_memory)" if mode == "reuse" else mode for mode in allocators)
        + ", a fresh process each")
    report.write_readme_table(readme_rows(rows, allocators), out, "layers",
                              README_TABLES["layers"], tiny=options.tiny)
    threads = options.threads or torch.get_num_threads()
    report.report(
        EXPERIMENT,
        options,
        "sinabs vs exodus-lightning, one layer on CPU",
        [
            (
                "Setup",
                f"torch {torch.__version__}, {threads} threads, float32, median of "
                f"{options.repeats} alternating runs after a warm-up; allocator modes "
                f"{', '.join(allocators)}, each in a fresh process.\n",
            ),
            ("Results", table),
        ],
        table,
        tables={"speed": rows},
    )
    return {"rows": rows}


if __name__ == "__main__":
    main()
