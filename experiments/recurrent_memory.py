"""LIFRecurrent, ALIFRecurrent and adLIFRecurrent three ways: memory kept for backward, peak
memory and time per pass, on CPU.

- fused: our layer with an nn.Linear connection, which runs the whole sequence as one
  autograd function (ops.lif_recurrent, ops.alif_recurrent, ops.adlif_recurrent),
- loop: our layer with the same Linear wrapped so it is not recognised (nn.Sequential
  (linear, nn.Identity())): the per-step loop the layer runs for any other module,
- sinabs: sinabs.layers' layer of the same name with the same Linear (where sinabs is installed
  and has that layer; it has no adLIF).

Per variant: the bytes autograd keeps for backward (unique storages saved by the graph, the
input and parameters left out), the peak memory of one forward + backward pass
(memory.step_peak_mb, each variant in a fresh process), the time of forward + backward and of
forward alone (no autograd) as median (min–max) over interleaved rounds, and the agreement
with the first variant (spike mismatches, largest relative gradient difference):
memory.csv/.md, and the docs' table variants.md.

    python -m experiments.recurrent_memory             # (32, 300, 512)
    python -m experiments.recurrent_memory --tiny      # seconds, tiny shapes (tests)
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from exodus_lightning import nn as enn
from experiments import arguments, isolated, memory, report
from experiments.sinabs_speed import max_relative, spread_ms, timings

EXPERIMENT = "recurrent_memory"
VARIANTS = ("fused", "loop", "sinabs")
# The docs' table (experiments/tables.py copies <out>/variants.md into it).
README_TABLES: dict[str, tuple[str, ...]] = {
    "variants": ("case, (B, T, F)", "variant", "kept for backward", "peak fwd+bwd", "fwd+bwd",
                 "fwd"),
}


@dataclass
class Case:
    """One layer configuration; shape is (batch, time, features)."""

    name: str
    shape: tuple[int, int, int]
    kwargs: dict[str, Any] = field(default_factory=dict)
    scale: float = 0.7  # input = (uniform[0, 1) − 0.2) · scale
    layer: str = "LIFRecurrent"  # the class name, in our nn and in sinabs.layers


def cases(tiny: bool) -> list[Case]:
    shape = (2, 12, 8) if tiny else (32, 300, 512)
    return [
        Case("LIF, tau_mem=20", shape, {"tau_mem": 20.0, "norm_input": False}),
        Case("LIF, tau_syn=5, min_v_mem=-1", shape,
             {"tau_mem": 20.0, "tau_syn": 5.0, "min_v_mem": -1.0, "norm_input": False},
             scale=0.055),
        Case("ALIF, tau_mem=20, tau_adapt=100", shape,
             {"tau_mem": 20.0, "tau_adapt": 100.0, "norm_input": False}, layer="ALIFRecurrent"),
        Case("adLIF, the authors' SE-adLIF defaults", shape, {"num_neurons": shape[2]},
             scale=20.0, layer="adLIFRecurrent"),
    ]


def variants(case: Case | None = None) -> list[str]:
    """The variants that can run case (any case when None): sinabs where it is installed and
    has the layer."""
    have_sinabs = importlib.util.find_spec("sinabs") is not None
    if have_sinabs and case is not None:
        import sinabs.layers as sl

        have_sinabs = hasattr(sl, case.layer)
    return [v for v in VARIANTS if v != "sinabs" or have_sinabs]


def build(variant: str, case: Case, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    features = case.shape[2]
    linear = nn.Linear(features, features, bias=False)
    nn.init.normal_(linear.weight, std=0.3 / features**0.5)
    if variant == "sinabs":
        import sinabs.layers as sl

        return getattr(sl, case.layer)(rec_connect=linear, **case.kwargs)
    connection = linear if variant == "fused" else nn.Sequential(linear, nn.Identity())
    return getattr(enn, case.layer)(rec_connect=connection, **case.kwargs)


def inputs(case: Case, seed: int) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = (torch.rand(case.shape, generator=generator) - 0.2) * case.scale
    return x, torch.randn(case.shape, generator=generator)


def step(layer: nn.Module, x: Tensor, weights: Tensor, backward: bool) -> dict[str, Tensor]:
    """One forward (+ backward) pass from rest; spikes and gradients by name."""
    layer.reset_states()
    if not backward:
        with torch.no_grad():
            return {"spikes": layer(x)}
    x = x.detach().requires_grad_()
    layer.zero_grad(set_to_none=True)
    spikes = layer(x)
    (spikes * weights).sum().backward()
    # The recurrent weight by one name, however it is wrapped.
    grads = {"grad_" + ("weight" if n.startswith("rec_connect.") else n): p.grad
             for n, p in layer.named_parameters() if p.grad is not None}
    return {"spikes": spikes.detach(), "grad_x": x.grad} | grads


def saved_bytes(layer: nn.Module, x: Tensor) -> int:
    """Bytes of the unique storages autograd keeps for backward after a forward pass, without
    those of the input and the parameters (alive anyway)."""
    layer.reset_states()
    x = x.detach().requires_grad_()
    known = {x.untyped_storage().data_ptr()}
    known |= {p.untyped_storage().data_ptr() for p in layer.parameters()}
    storages: dict[int, int] = {}

    def pack(tensor: Tensor) -> Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in known:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        spikes = layer(x)
    del spikes
    return sum(storages.values())


def peak_rss_mib(variant: str, case: Case, seed: int, fresh_process: bool = True) -> float:
    """Peak memory of one forward + backward pass (memory.step_peak_mb), in a fresh process
    (fresh_process=False: in this one, for the tiny runs that only check the table is made)."""
    if not fresh_process:
        return _peak_mib(variant, asdict(case), seed)
    return isolated.run(_peak_mib, variant=variant, case=asdict(case), seed=seed)


def _peak_mib(variant: str, case: dict, seed: int) -> float:
    """Child of peak_rss_mib: load the kernels on a tiny input, then measure one pass."""
    case_ = Case(**{**case, "shape": tuple(case["shape"])})
    layer = build(variant, case_, seed)
    x, weights = inputs(case_, seed)
    small = (1, 2, case_.shape[2])
    step(layer, torch.rand(small), torch.rand(small), True)
    return memory.step_peak_mb(lambda: step(layer, x, weights, True))


def run_case(case: Case, repeats: int, seed: int, fresh_process: bool = True
             ) -> list[dict[str, Any]]:
    names = variants(case)
    layers = {name: build(name, case, seed) for name in names}
    x, weights = inputs(case, seed)
    results = {name: step(layer, x, weights, True) for name, layer in layers.items()}
    full = timings([lambda layer=layer: step(layer, x, weights, True)
                    for layer in layers.values()], repeats)
    forward = timings([lambda layer=layer: step(layer, x, weights, False)
                       for layer in layers.values()], repeats)
    first = results[names[0]]
    rows = []
    for index, name in enumerate(names):
        result = results[name]
        mismatches = int((result["spikes"] != first["spikes"]).sum().item())
        grad_diff = max(max_relative(result[k], first[k]) for k in first if k.startswith("grad_"))
        rows.append({
            "case": case.name,
            "(B, T, F)": str(case.shape),
            "variant": name,
            "saved for backward MiB": saved_bytes(layers[name], x) / 2**20,
            "peak fwd+bwd MiB": peak_rss_mib(name, case, seed, fresh_process),
            **{"fwd+bwd ms" + k: v for k, v in spread_ms(full[index]).items()},
            **{"fwd ms" + k: v for k, v in spread_ms(forward[index]).items()},
            f"spike mismatches vs {names[0]}": mismatches,
            f"max grad diff vs {names[0]} (rel.)": grad_diff,
            "spike rate": float(first["spikes"].mean().item()),
        })
    return rows


def readme_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The docs' rows: memory in whole MiB, times in whole ms."""
    return [dict(zip(README_TABLES["variants"], (
        f"{row['case']}, {row['(B, T, F)']}", row["variant"],
        f"{row['saved for backward MiB']:.0f} MiB", f"{row['peak fwd+bwd MiB']:.0f} MiB",
        _ms(row, "fwd+bwd ms"), _ms(row, "fwd ms")))) for row in rows]


def _ms(row: dict[str, Any], column: str) -> str:
    """"median (min–max) ms" of a time column, whole ms."""
    return f"{row[column]:.0f} ({row[column + ' min']:.0f}–{row[column + ' max']:.0f}) ms"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = arguments.experiment_parser(EXPERIMENT, __doc__)
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args(argv)
    out = arguments.setup(options)
    rows = []
    for case in report.progress(cases(options.tiny), "cases"):
        # --tiny measures peaks in this process: a fresh one per row is most of a tiny run.
        rows += run_case(case, 1 if options.tiny else options.repeats, options.seed,
                         fresh_process=not options.tiny)
    table = report.write_table(rows, out / "memory")
    report.write_readme_table(readme_rows(rows), out, "variants", README_TABLES["variants"],
                              tiny=options.tiny)
    threads = torch.get_num_threads()
    report.report(
        EXPERIMENT,
        options,
        "LIFRecurrent / ALIFRecurrent / adLIFRecurrent: whole-sequence function vs per-step "
        "loop vs sinabs, CPU",
        [
            (
                "Setup",
                f"torch {torch.__version__}, {threads} threads, float32, nn.Linear(F, F, "
                f"bias=False) connection, median of {options.repeats} alternating runs after a "
                f"warm-up. Peak: bytes of tensors live at once in one forward + backward pass "
                f"(PyTorch's allocator, memory.py), a fresh process per variant.\n",
            ),
            ("Results", table),
        ],
        table,
        tables={"memory": rows},
    )
    return {"rows": rows}


if __name__ == "__main__":
    main()
