"""Claim 1: EXODUS gradients equal BPTT's, reset included; SLAYER's do not.

Measures, for random multi-layer SNNs (dense and conv; LIF and IAF; with and without a synaptic
current tau_syn, a lower bound min_v_mem, single or multi-spike, subtractive or zero reset), the
relative error ‖g − g_BPTT‖ / ‖g_BPTT‖ of every parameter's gradient (weights, tau_mem, tau_syn)
for EXODUS and for SLAYER, in float32 and float64. BPTT is the same network with
backend="reference" (autograd through the Python loop, reset included); EXODUS and SLAYER run the
fused kernels. Weights are scaled layer by layer so every spiking layer fires (common.calibrate_),
inputs are Bernoulli spike trains, the loss is cross-entropy of the output spike rates against
random labels. Writes errors.csv/.md (per parameter), summary.csv/.md (per case and dtype), the
README's table cases.md (per case, both dtypes) and scatter.png.

    python -m experiments.gradient_equivalence            # ~1 minute on 2 CPU cores
    python -m experiments.gradient_equivalence --tiny     # seconds
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from exodus_lightning import nn as enn
from experiments import arguments, common, report

EXPERIMENT = "gradient_equivalence"
DTYPES = {"float32": torch.float32, "float64": torch.float64}
# Acceptance thresholds of the claim: EXODUS within rounding of BPTT; SLAYER visibly off.
TOLERANCE = {"float32": 1e-4, "float64": 1e-10}
SLAYER_DIFFERS = 1e-2
# The docs' table (experiments/tables.py copies <out>/cases.md into it).
README_TABLES: dict[str, tuple[str, ...]] = {
    "cases": (
        "case",
        "spike rates per layer",
        "EXODUS max rel. error, float32",
        "float64",
        "SLAYER rel. error (min – max over parameters)",
    ),
}


@dataclass(frozen=True)
class Case:
    """One network family of the comparison."""

    name: str
    kind: str = "dense"  # "dense" or "conv"
    neuron: str = "lif"
    tau_syn: float | None = None
    min_v_mem: float | None = None
    max_spikes: int | None = None  # None = multi-spike
    reset: str = "subtract"

    def spiking_layer(self) -> enn.LIF:
        """A new spiking layer of the case (IAF is an LIF without leak)."""
        settings = {
            "tau_syn": self.tau_syn,
            "min_v_mem": self.min_v_mem,
            "max_spikes_per_step": self.max_spikes,
            "reset": self.reset,
        }
        if self.neuron == "iaf":
            return enn.IAF(**settings)
        return enn.LIF(tau_mem=10.0, norm_input=False, **settings)


CASES = [
    Case("dense LIF multi-spike"),
    Case("dense LIF single-spike", max_spikes=1),
    Case("dense LIF tau_syn", tau_syn=5.0),
    Case("dense LIF min_v_mem", min_v_mem=-1.0),
    Case("dense LIF reset to zero", max_spikes=1, reset="zero"),
    Case("dense IAF multi-spike", neuron="iaf"),
    Case("dense IAF single-spike min_v_mem", neuron="iaf", max_spikes=1, min_v_mem=-0.5),
    Case("conv LIF multi-spike", kind="conv"),
    Case("conv IAF single-spike tau_syn", kind="conv", neuron="iaf", max_spikes=1, tau_syn=5.0),
]


@dataclass(frozen=True)
class Sizes:
    """Problem sizes: full run or --tiny."""

    batch: int
    time: int
    dense: tuple[int, ...]
    conv_input: tuple[int, int, int]
    conv_channels: tuple[int, ...]
    classes: int


FULL = Sizes(
    batch=8,
    time=100,
    dense=(40, 64, 64, 10),
    conv_input=(2, 16, 16),
    conv_channels=(8, 16),
    classes=10,
)
TINY = Sizes(
    batch=2, time=12, dense=(10, 12, 12, 4), conv_input=(2, 8, 8), conv_channels=(4,), classes=4
)


def build(
    case: Case, sizes: Sizes, dtype: torch.dtype, seed: int
) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, list[float]]:
    """A calibrated random network of the case, its input spikes, labels and spike rates."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    if case.kind == "dense":
        model = common.dense_snn(sizes.dense, case.spiking_layer)
        shape = (sizes.batch, sizes.time, sizes.dense[0])
    else:
        model = common.conv_snn(
            sizes.conv_input, sizes.conv_channels, sizes.classes, case.spiking_layer
        )
        shape = (sizes.batch, sizes.time, *sizes.conv_input)
    model = common.set_variant(model.to(dtype), "exodus")
    x = (torch.rand(shape, generator=generator) < 0.1).to(dtype)
    labels = torch.randint(0, sizes.classes, (sizes.batch,), generator=generator)
    rates = common.calibrate_(model, x, target_rate=0.1)
    return model, x, labels, rates


def gradients(
    model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor, variant: str
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Parameter gradients and output spikes of one variant of model."""
    clone = common.variant_copy(model, variant)
    spikes = clone(x)
    F.cross_entropy(spikes.mean(1), labels).backward()
    return common.parameter_gradients(clone), spikes.detach()


def compare(
    case: Case, dtype_name: str, sizes: Sizes, seed: int
) -> tuple[list[dict], dict, dict[str, dict[str, torch.Tensor]]]:
    """Per-parameter error rows, one summary row and the gradients of every variant."""
    model, x, labels, rates = build(case, sizes, DTYPES[dtype_name], seed)
    grads, outputs = {}, {}
    for variant in common.VARIANTS:
        grads[variant], outputs[variant] = gradients(model, x, labels, variant)
    rows = []
    for name, reference in grads["bptt"].items():
        rows.append(
            {
                "case": case.name,
                "dtype": dtype_name,
                "parameter": name,
                "bptt_norm": reference.norm().item(),
                "exodus_rel_error": common.relative_error(grads["exodus"][name], reference),
                "slayer_rel_error": common.relative_error(grads["slayer"][name], reference),
                "slayer_norm_ratio": grads["slayer"][name].norm().item()
                / max(reference.norm().item(), 1e-300),
            }
        )
    summary = {
        "case": case.name,
        "dtype": dtype_name,
        "spike_rates": "/".join(f"{r:.2f}" for r in rates),
        "forward_max_diff": (outputs["exodus"] - outputs["bptt"]).abs().max().item(),
        "exodus_max_rel_error": max(r["exodus_rel_error"] for r in rows),
        "slayer_min_rel_error": min(r["slayer_rel_error"] for r in rows),
        "slayer_max_rel_error": max(r["slayer_rel_error"] for r in rows),
    }
    summary["exodus_equals_bptt"] = summary["exodus_max_rel_error"] <= TOLERANCE[dtype_name]
    return rows, summary, grads


def scatter(all_grads: list[tuple[str, dict]], path: Path) -> Path:
    """EXODUS vs BPTT and SLAYER vs BPTT weight gradients (float32), each tensor scaled to
    max |BPTT| = 1 so that all cases share the axes."""
    figure = report.figure(figsize=(10, 4.6))
    axes = figure.subplots(1, 2)
    for label, grads in all_grads:
        xs, ys_exodus, ys_slayer = [], [], []
        for name, reference in grads["bptt"].items():
            if not name.endswith("weight"):
                continue
            scale = reference.abs().max().clamp_min(1e-30)
            xs.append((reference / scale).flatten())
            ys_exodus.append((grads["exodus"][name] / scale).flatten())
            ys_slayer.append((grads["slayer"][name] / scale).flatten())
        if not xs:
            continue
        x = torch.cat(xs).float().numpy()
        axes[0].scatter(x, torch.cat(ys_exodus).float().numpy(), s=3, alpha=0.5, label=label)
        axes[1].scatter(x, torch.cat(ys_slayer).float().numpy(), s=3, alpha=0.5, label=label)
    for axis, name in zip(axes, ("EXODUS", "SLAYER (no scaling)")):
        axis.axline((0, 0), slope=1, color="black", linewidth=0.8, linestyle="--")
        axis.set_xlabel("BPTT weight gradient (scaled)")
        axis.set_ylabel(f"{name} weight gradient (same scale)")
        axis.set_title(f"{name} vs BPTT, float32")
    axes[1].set_yscale("symlog", linthresh=1.0)
    axes[0].legend(fontsize=6, markerscale=3, loc="upper left")
    return report.save_figure(figure, path)


def readme_rows(summaries: list[dict]) -> list[dict]:
    """One row per case: EXODUS's largest error in each dtype; spike rates and SLAYER's range
    from the float32 network (what training uses)."""
    by_case: dict[str, dict[str, dict]] = {}
    for summary in summaries:
        by_case.setdefault(summary["case"], {})[summary["dtype"]] = summary
    rows = []
    for case, runs in by_case.items():
        single, double = runs["float32"], runs["float64"]
        rows.append(dict(zip(README_TABLES["cases"], (
            case,
            single["spike_rates"],
            f"{single['exodus_max_rel_error']:.1e}",
            f"{double['exodus_max_rel_error']:.1e}",
            f"{single['slayer_min_rel_error']:.2g} – {single['slayer_max_rel_error']:.2g}",
        ))))
    return rows


def run(options: Any) -> dict:
    """Run every case in both dtypes; write the tables, the plot and a README."""
    out = arguments.setup(options)
    sizes = TINY if options.tiny else FULL
    jobs = [(case, dtype) for case in CASES for dtype in DTYPES]
    rows, summaries, scatter_grads = [], [], []
    for case, dtype_name in report.progress(jobs, EXPERIMENT):
        case_rows, summary, grads = compare(case, dtype_name, sizes, options.seed)
        rows += case_rows
        summaries.append(summary)
        if dtype_name == "float32":
            scatter_grads.append((case.name, grads))
    errors_md = report.write_table(rows, out / "errors")
    summary_md = report.write_table(summaries, out / "summary")
    report.write_readme_table(readme_rows(summaries), out, "cases", README_TABLES["cases"],
                              tiny=options.tiny)
    figure = scatter(scatter_grads, out / "scatter.png")
    verdict = all(s["exodus_equals_bptt"] for s in summaries)
    settings = (
        f"batch {sizes.batch}, T = {sizes.time}, dense sizes {sizes.dense}, conv input "
        f"{sizes.conv_input} channels {sizes.conv_channels}, seed {options.seed}; "
        f"tolerance {TOLERANCE}.\n"
    )
    conclusion = (
        f"EXODUS equals BPTT within tolerance in every case: **{verdict}**. "
        f"SLAYER's relative error ranges from "
        f"{min(s['slayer_min_rel_error'] for s in summaries):.2g} to "
        f"{max(s['slayer_max_rel_error'] for s in summaries):.2g}.\n"
    )
    report.report(
        EXPERIMENT,
        options,
        "Gradient equivalence: EXODUS and SLAYER vs BPTT",
        [
            ("Settings", settings),
            ("Conclusion", conclusion),
            ("Per case", summary_md),
            ("Per parameter", errors_md),
        ],
        summary_md + "\n" + conclusion,
        figures=[figure],
        tables={"summary": summaries, "errors": rows},
    )
    return {"rows": rows, "summary": summaries, "verdict": verdict}


def main(argv: list[str] | None = None) -> dict:
    return run(arguments.experiment_parser(EXPERIMENT, __doc__).parse_args(argv))


if __name__ == "__main__":
    main()
