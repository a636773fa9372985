"""sinabs' layers vs ours with the same arguments: same spikes and gradients, time per step.

Each case builds a sinabs layer and ours from one set of keyword arguments (the import is the
only difference), checks that spikes, final states and input/parameter gradients agree, then
times forward + backward (and forward alone, without autograd) alternately in one process and
reports medians and the speed-up. The defaults are sinabs' (multi-spike, subtracting reset,
SingleExponential surrogate, norm_input=True, trainable tau_mem).

    python -m experiments.sinabs_speed                      # (32, 300, 2048) and friends
    python -m experiments.sinabs_speed --tiny               # seconds, tiny shapes (tests)
    python -m experiments.sinabs_speed --keep-freed-memory  # glibc keeps freed memory (README)
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from exodus_lightning import nn as enn
from exodus_lightning import ops
from experiments import arguments, report

EXPERIMENT = "sinabs_speed"
TAU_MEM = 20.0


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
        Case("LIF (sinabs' defaults)", "LIF", big, {"tau_mem": TAU_MEM}, scale=14.0),
        Case(
            "LIF, tau_syn, min_v_mem=-1",
            "LIF",
            big,
            {"tau_mem": TAU_MEM, "tau_syn": 5.0, "min_v_mem": -1.0},
            scale=3.0,
        ),
        Case("IAF, single spike", "IAF", big, {"spike_fn": "SingleSpike"}, scale=0.7),
        Case(
            "LIFRecurrent (Linear)",
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


def median_times(functions: Sequence[Callable[[], Any]], repeats: int) -> list[float]:
    """Median seconds of each function, run alternately after one warm-up each."""
    for function in functions:
        function()
    samples: list[list[float]] = [[] for _ in functions]
    for _ in range(repeats):
        for index, function in enumerate(functions):
            start = time.perf_counter()
            function()
            samples[index].append(time.perf_counter() - start)
    return [statistics.median(s) for s in samples]


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
    full = median_times(
        [lambda: step(theirs, x, weights, True), lambda: step(ours_, x, weights, True)], repeats
    )
    forward = median_times(
        [lambda: step(theirs, x, weights, False), lambda: step(ours_, x, weights, False)], repeats
    )
    return {
        "case": case.name,
        "(B, T, F)": str(case.shape),
        "sinabs fwd+bwd ms": 1e3 * full[0],
        "ours fwd+bwd ms": 1e3 * full[1],
        "fwd+bwd speed-up": full[0] / full[1],
        "sinabs fwd ms": 1e3 * forward[0],
        "ours fwd ms": 1e3 * forward[1],
        "fwd speed-up": forward[0] / forward[1],
    } | check


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = arguments.experiment_parser(EXPERIMENT, __doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--keep-freed-memory",
        action="store_true",
        help="let glibc reuse freed memory (ops.keep_freed_memory())",
    )
    options = parser.parse_args(argv)
    out = arguments.setup(options)
    if options.keep_freed_memory:
        ops.keep_freed_memory()
    rows = []
    for case in report.progress(cases(options.tiny), "cases"):
        rows.append(run_case(case, 1 if options.tiny else options.repeats, options.seed))
    table = report.write_table(rows, out / "speed")
    threads = torch.get_num_threads()
    report.report(
        EXPERIMENT,
        options,
        "sinabs vs exodus-lightning, one layer on CPU",
        [
            (
                "Setup",
                f"torch {torch.__version__}, {threads} threads, float32, median of "
                f"{options.repeats} alternating runs after a warm-up; keep_freed_memory="
                f"{options.keep_freed_memory}.\n",
            ),
            ("Results", table),
        ],
        table,
        tables={"speed": rows},
    )
    return {"rows": rows}


if __name__ == "__main__":
    main()
