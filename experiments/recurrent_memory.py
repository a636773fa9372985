"""LIFRecurrent, ALIFRecurrent and adLIFRecurrent three ways: memory kept for backward, peak
memory and time per pass, on CPU.

- fused: our layer with an nn.Linear connection, which runs the whole sequence as one
  autograd function (ops.lif_recurrent, ops.alif_recurrent, ops.adlif_recurrent),
- loop: our layer with the same Linear wrapped so it is not recognised (nn.Sequential
  (linear, nn.Identity())): the per-step loop the layer runs for any other module,
- sinabs: sinabs.layers' layer of the same name with the same Linear (where sinabs is installed
  and has that layer; it has no adLIF).

Per variant: the bytes autograd keeps for backward (unique storages saved by the graph, the
input and parameters left out), the peak resident memory of one forward + backward pass above
the process's memory before it (each variant in a fresh process), the median time of forward +
backward and of forward alone (no autograd), and the agreement with the first variant
(spike mismatches, largest relative gradient difference): memory.csv/.md, and the README's
table variants.md.

    python -m experiments.recurrent_memory             # (32, 300, 512)
    python -m experiments.recurrent_memory --tiny      # seconds, tiny shapes (tests)
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from exodus_lightning import nn as enn
from experiments import arguments, report
from experiments.sinabs_speed import max_relative, median_times

EXPERIMENT = "recurrent_memory"
VARIANTS = ("fused", "loop", "sinabs")
# The README's table (experiments/tables.py copies <out>/variants.md into it).
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


def peak_rss_mib(variant: str, case: Case, seed: int) -> float:
    """Peak resident memory of one forward + backward pass above the memory before it, in a
    fresh process (freed memory that an allocator keeps would hide a later pass's peak)."""
    command = [sys.executable, "-m", f"experiments.{EXPERIMENT}", "--measure-peak",
               json.dumps({"variant": variant, "case": asdict(case), "seed": seed})]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def _status_kib(field_name: str) -> int:
    """A memory field of /proc/self/status (VmRSS, VmHWM), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field_name}")


def measure_peak(spec: str) -> None:
    """Child of peak_rss_mib: print the peak increase in MiB (Linux: the high-water mark
    VmHWM, reset just before the pass through /proc/self/clear_refs)."""
    config = json.loads(spec)
    case = Case(**{**config["case"], "shape": tuple(config["case"]["shape"])})
    layer = build(config["variant"], case, config["seed"])
    x, weights = inputs(case, config["seed"])
    # Load the kernels and let every library initialise at a tiny size first.
    small = (1, 2, case.shape[2])
    step(layer, torch.rand(small), torch.rand(small), True)
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = _status_kib("VmRSS")
    step(layer, x, weights, True)
    print((_status_kib("VmHWM") - before) / 1024)


def run_case(case: Case, repeats: int, seed: int) -> list[dict[str, Any]]:
    names = variants(case)
    layers = {name: build(name, case, seed) for name in names}
    x, weights = inputs(case, seed)
    results = {name: step(layer, x, weights, True) for name, layer in layers.items()}
    full = median_times([lambda layer=layer: step(layer, x, weights, True)
                         for layer in layers.values()], repeats)
    forward = median_times([lambda layer=layer: step(layer, x, weights, False)
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
            "peak fwd+bwd MiB": peak_rss_mib(name, case, seed),
            "fwd+bwd ms": 1e3 * full[index],
            "fwd ms": 1e3 * forward[index],
            f"spike mismatches vs {names[0]}": mismatches,
            f"max grad diff vs {names[0]} (rel.)": grad_diff,
            "spike rate": float(first["spikes"].mean().item()),
        })
    return rows


def readme_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The README's rows: memory in whole MiB, times in whole ms."""
    return [dict(zip(README_TABLES["variants"], (
        f"{row['case']}, {row['(B, T, F)']}", row["variant"],
        f"{row['saved for backward MiB']:.0f} MiB", f"{row['peak fwd+bwd MiB']:.0f} MiB",
        f"{row['fwd+bwd ms']:.0f} ms", f"{row['fwd ms']:.0f} ms"))) for row in rows]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = arguments.experiment_parser(EXPERIMENT, __doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--measure-peak", type=str, default=None,
                        help="internal: measure one variant's peak memory (JSON spec)")
    options = parser.parse_args(argv)
    if options.measure_peak:
        measure_peak(options.measure_peak)
        return {}
    out = arguments.setup(options)
    rows = []
    for case in report.progress(cases(options.tiny), "cases"):
        rows += run_case(case, 1 if options.tiny else options.repeats, options.seed)
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
                f"warm-up. Peak: resident memory of one forward + backward pass above the "
                f"process's before it, a fresh process per variant.\n",
            ),
            ("Results", table),
        ],
        table,
        tables={"memory": rows},
    )
    return {"rows": rows}


if __name__ == "__main__":
    main()
