"""torch.compile on a recurrent layer: compile time against the sequence length, per path.

LIFRecurrent(tau_mem=10, nn.Linear(F, F), tau_syn=5) compiled with fullgraph=True, three ways:

- op: a linear connection and a built-in surrogate, the scan as one custom op
  (exodus_lightning::recurrent_scan): one node of the graph whatever T,
- function: the same with a custom surrogate (a Python callable, here the single exponential
  written out), which cannot travel inside the op: the same loops as an autograd function,
  traced step by step,
- loop: a connection the layer does not recognise (nn.Sequential(linear, nn.Identity())), the
  per-step loop differentiated by autograd.

Per row, in a fresh process with an empty inductor cache (--tiny: in this process): the first
compiled forward + backward (compile included), then the compiled and the eager forward +
backward (median of a few).

    python -m experiments.compile_time            # T = 25 and 100 (and 500 for the op), inductor
    python -m experiments.compile_time --tiny     # seconds: T = 12, aot_eager (tests)
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from exodus_lightning import nn as enn
from experiments import arguments, isolated, report

EXPERIMENT = "compile_time"
PATHS = ("op", "function", "loop")
README_TABLES: dict[str, tuple[str, ...]] = {
    "paths": ("path", "(B, T, F)", "backend", "first compiled fwd+bwd", "compiled fwd+bwd",
              "eager fwd+bwd"),
}


def exponential_surrogate(v: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """The single exponential surrogate as a plain callable (not fused)."""
    return torch.exp(-(v - threshold).abs())


def build(path: str, features: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    linear = nn.Linear(features, features)
    nn.init.normal_(linear.weight, std=0.3 / features**0.5)
    connection = nn.Sequential(linear, nn.Identity()) if path == "loop" else linear
    extra = {"surrogate_grad_fn": exponential_surrogate} if path == "function" else {}
    return enn.LIFRecurrent(10.0, connection, tau_syn=5.0, **extra)


def measure(path: str, shape: list[int], backend: str, repeats: int, seed: int
            ) -> dict[str, Any]:
    """Seconds of the first compiled step, then compiled and eager steps (in a child process,
    or in this one for --tiny, whose TORCHINDUCTOR_CACHE_DIR is restored after)."""
    previous = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    with tempfile.TemporaryDirectory() as cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache  # a cold compile, as a user's first
        try:
            return _measure(path, shape, backend, repeats, seed)
        finally:
            if previous is None:
                del os.environ["TORCHINDUCTOR_CACHE_DIR"]
            else:
                os.environ["TORCHINDUCTOR_CACHE_DIR"] = previous


def _measure(path: str, shape: list[int], backend: str, repeats: int, seed: int
             ) -> dict[str, Any]:
    layer = build(path, shape[2], seed)
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=generator) * 0.6

    def step(module: nn.Module) -> float:
        layer.reset_states()
        layer.zero_grad(set_to_none=True)
        start = time.perf_counter()
        out = module(x)
        out.sum().backward()
        return time.perf_counter() - start

    step(layer)  # the extension is loaded before any timing
    compiled = torch.compile(layer, fullgraph=True, backend=backend)
    first = step(compiled)
    compiled_times = [step(compiled) for _ in range(repeats)]
    eager_times = [step(layer) for _ in range(repeats)]
    layer.reset_states()
    with torch.no_grad():
        rate = float(layer(x).mean())
    return {"first s": first, "compiled ms": 1e3 * statistics.median(compiled_times),
            "eager ms": 1e3 * statistics.median(eager_times), "spikes per neuron and step": rate}


def rows_to_run(tiny: bool) -> list[tuple[str, tuple[int, int, int], str]]:
    if tiny:
        return [(path, (2, 12, 8), "aot_eager") for path in PATHS]
    runs = [(path, (8, time_, 64), "inductor") for path in PATHS for time_ in (25, 100)]
    return runs + [("op", (8, 500, 64), "inductor")]


def readme_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [dict(zip(README_TABLES["paths"], (
        row["path"], row["(B, T, F)"], row["backend"], f"{row['first s']:.1f} s",
        f"{row['compiled ms']:.1f} ms", f"{row['eager ms']:.1f} ms"))) for row in rows]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = arguments.experiment_parser(EXPERIMENT, __doc__)
    parser.add_argument("--repeats", type=int, default=5)
    options = parser.parse_args(argv)
    out = arguments.setup(options)
    rows = []
    for path, shape, backend in report.progress(rows_to_run(options.tiny), "rows"):
        settings = dict(path=path, shape=list(shape), backend=backend, repeats=options.repeats,
                        seed=options.seed)
        if options.tiny:  # a fresh process per row is most of a tiny run
            torch._dynamo.reset()
            result = measure(**settings)
        else:
            result = isolated.run(measure, threads=options.threads, **settings)
        rows.append({"path": path, "(B, T, F)": str(shape), "backend": backend, **result})
    table = report.write_table(rows, out / "compile")
    report.write_readme_table(readme_rows(rows), out, "paths", README_TABLES["paths"],
                              tiny=options.tiny)
    report.report(
        EXPERIMENT,
        options,
        "torch.compile on LIFRecurrent: compile time per path and sequence length, CPU",
        [
            (
                "Setup",
                f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, "
                f"torch.compile(fullgraph=True); each row in a fresh process with an empty "
                f"inductor cache; compiled and eager steps: median of {options.repeats}.\n",
            ),
            ("Results", table),
        ],
        table,
        tables={"compile": rows},
    )
    return {"rows": rows}


if __name__ == "__main__":
    main()
