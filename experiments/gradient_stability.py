"""Claim 2: SLAYER's reset-free gradient grows or shrinks with depth and T; EXODUS tracks BPTT.

Measures the gradient norm ‖∂L/∂W_l‖ of every layer l of dense multi-spike LIF (and IAF)
networks, for EXODUS, SLAYER without any gradient scaling, and BPTT (the reference loop), as
the number of spiking layers grows (fixed T) and as T grows (fixed depth). Each network is
initialised layer by layer so that every layer fires ~0.1 spikes per step (common.calibrate_),
so deep networks neither go silent nor saturate; inputs are Bernoulli spike trains, the loss is
cross-entropy of the last layer's spike rates against random labels. Several seeds; tables give
the median over seeds of the norms and of the ratios SLAYER/BPTT and EXODUS/BPTT.
Writes norms.csv (every measurement), depth.csv/.md and time.csv/.md (summaries), the README's
tables depth_sweep.md and time_sweep.md, and plots:
depth.png (first-layer norm and ratio vs depth), layers.png (norm per layer, deepest network),
time.png (first-layer norm and ratio vs T).

    python -m experiments.gradient_stability            # a few minutes on 2 CPU cores
    python -m experiments.gradient_stability --tiny     # seconds
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from exodus_lightning import nn as enn
from experiments import arguments, common, report

# The docs' tables (experiments/tables.py copies <out>/<stem>.md into it).
RATIOS = ("SLAYER/BPTT, first layer", "SLAYER/BPTT, last layer", "max |EXODUS/BPTT − 1|")
README_TABLES: dict[str, tuple[str, ...]] = {
    "depth_sweep": ("neuron", "spiking layers", "BPTT ‖∂L/∂W₁‖", "EXODUS ‖∂L/∂W₁‖",
                    "SLAYER ‖∂L/∂W₁‖", *RATIOS),
    "time_sweep": ("neuron", "T", *RATIOS),
}

EXPERIMENT = "gradient_stability"
VARIANTS = tuple(common.VARIANTS)  # bptt, exodus, slayer
# A ratio outside [1/EXPLODE, EXPLODE] counts as exploding / vanishing relative to BPTT.
EXPLODE = 10.0


@dataclass(frozen=True)
class Settings:
    """Sweep sizes: full run or --tiny."""

    batch: int
    inputs: int
    width: int
    classes: int
    depths: tuple[int, ...]
    fixed_time: int
    times: tuple[int, ...]
    fixed_depth: int
    seeds: int


FULL = Settings(
    batch=16,
    inputs=64,
    width=128,
    classes=10,
    depths=(2, 4, 6, 8, 10),
    fixed_time=100,
    times=(25, 50, 100, 200, 400),
    fixed_depth=4,
    seeds=3,
)
TINY = Settings(
    batch=2,
    inputs=8,
    width=12,
    classes=4,
    depths=(2, 4),
    fixed_time=10,
    times=(8, 24),
    fixed_depth=3,
    seeds=1,
)
# Multi-spike, threshold 1, subtractive reset: the layers' defaults.
NEURONS: dict[str, Callable[[], enn.LIF]] = {
    "lif": lambda: enn.LIF(tau_mem=20.0, norm_input=False),
    "iaf": enn.IAF,
}


def measure(neuron: str, depth: int, time: int, seed: int, settings: Settings) -> list[dict]:
    """Gradient norm of every layer's weight for each variant, one network; rows per layer."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    sizes = (settings.inputs, *[settings.width] * (depth - 1), settings.classes)
    model = common.set_variant(common.dense_snn(sizes, NEURONS[neuron]), "exodus")
    x = (torch.rand(settings.batch, time, settings.inputs, generator=generator) < 0.1).float()
    labels = torch.randint(0, settings.classes, (settings.batch,), generator=generator)
    rates = common.calibrate_(model, x, target_rate=0.1)
    norms = {}
    for variant in VARIANTS:
        clone = common.variant_copy(model, variant)
        F.cross_entropy(clone(x).mean(1), labels).backward()
        norms[variant] = [layer.weight.grad.norm().item() for layer in common.weight_layers(clone)]
    rows = []
    for layer in range(depth):
        row = {
            "neuron": neuron,
            "depth": depth,
            "time": time,
            "seed": seed,
            "layer": layer + 1,
            "spike_rate": rates[layer],
        }
        for variant in VARIANTS:
            row[f"{variant}_norm"] = norms[variant][layer]
        for variant in ("exodus", "slayer"):
            row[f"{variant}/bptt"] = _ratio(norms[variant][layer], norms["bptt"][layer])
        rows.append(row)
    return rows


def _ratio(value: float, reference: float) -> float:
    if reference == 0.0:
        return 1.0 if value == 0.0 else math.inf
    return value / reference


def summarise(rows: list[dict], key: str) -> list[dict]:
    """Median over seeds, for the first and the last layer, per (neuron, key value)."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["neuron"], row[key]), []).append(row)
    summary = []
    for (neuron, value), group in sorted(groups.items()):
        depth = max(r["depth"] for r in group)
        out = {"neuron": neuron, key: value}
        for label, layer, columns in (
            ("first", 1, ("bptt_norm", "exodus_norm", "slayer_norm", "slayer/bptt")),
            ("last", depth, ("bptt_norm", "slayer/bptt")),
        ):
            chosen = [r for r in group if r["layer"] == layer]
            for column in columns:
                out[f"{column} ({label})"] = statistics.median(r[column] for r in chosen)
        out["max slayer/bptt"] = max(r["slayer/bptt"] for r in group)
        out["min slayer/bptt"] = min(r["slayer/bptt"] for r in group)
        out["max |exodus/bptt - 1|"] = max(abs(r["exodus/bptt"] - 1) for r in group)
        summary.append(out)
    return summary


def readme_rows(summary: list[dict], key: str) -> list[dict]:
    """The docs' rows of a sweep summary (key "depth" or "time"): 3 significant digits,
    EXODUS's deviation from BPTT in scientific notation."""
    stem = f"{key}_sweep"
    rows = []
    for s in summary:
        values = [s["neuron"].upper(), s[key]]
        if key == "depth":
            values += [f"{s[f'{name}_norm (first)']:.3g}" for name in ("bptt", "exodus", "slayer")]
        values += [f"{s['slayer/bptt (first)']:.3g}", f"{s['slayer/bptt (last)']:.3g}",
                   f"{s['max |exodus/bptt - 1|']:.1e}"]
        rows.append(dict(zip(README_TABLES[stem], values)))
    return rows


def describe(summary: list[dict], key: str) -> str:
    """Plain-language reading of a sweep: how SLAYER/BPTT and EXODUS/BPTT move with key."""
    lines = []
    for neuron in sorted({s["neuron"] for s in summary}):
        group = sorted((s for s in summary if s["neuron"] == neuron), key=lambda s: s[key])
        first, last = group[0], group[-1]
        slayer = [s["slayer/bptt (first)"] for s in group]
        worst = max(max(s["max slayer/bptt"], 1 / max(s["min slayer/bptt"], 1e-300)) for s in group)
        verdict = (
            f"explodes (ratio > {EXPLODE:g})"
            if max(slayer) > EXPLODE
            else f"vanishes (ratio < 1/{EXPLODE:g})"
            if min(slayer) < 1 / EXPLODE
            else f"stays within a factor {EXPLODE:g} of BPTT"
        )
        exodus_dev = max(s["max |exodus/bptt - 1|"] for s in group)
        lines.append(
            f"- {neuron.upper()}: first-layer SLAYER/BPTT norm ratio goes from "
            f"{first['slayer/bptt (first)']:.3g} ({key} {first[key]}) to "
            f"{last['slayer/bptt (first)']:.3g} ({key} {last[key]}): SLAYER's first-layer "
            f"gradient {verdict}; worst layer deviation from BPTT: ×{worst:.3g}. EXODUS/BPTT "
            f"= 1 ± {exodus_dev:.2g} in every layer."
        )
    return "\n".join(lines) + "\n"


def plot_sweep(summary: list[dict], key: str, xlabel: str, path: Path) -> Path:
    """First-layer gradient norm (left) and its ratio to BPTT (right) vs key, log scales."""
    figure = report.figure(figsize=(10, 4))
    axes = figure.subplots(1, 2)
    styles = {"bptt": "k-o", "exodus": "C0--s", "slayer": "C3-^"}
    for neuron, marker_fill in zip(sorted({s["neuron"] for s in summary}), ("full", "none")):
        group = sorted((s for s in summary if s["neuron"] == neuron), key=lambda s: s[key])
        xs = [s[key] for s in group]
        for variant, style in styles.items():
            axes[0].plot(
                xs,
                [s[f"{variant}_norm (first)"] for s in group],
                style,
                fillstyle=marker_fill,
                label=f"{variant} {neuron}",
            )
        axes[1].plot(
            xs,
            [s["exodus_norm (first)"] / s["bptt_norm (first)"] for s in group],
            styles["exodus"],
            fillstyle=marker_fill,
            label=f"exodus/bptt {neuron}",
        )
        axes[1].plot(
            xs,
            [s["slayer/bptt (first)"] for s in group],
            styles["slayer"],
            fillstyle=marker_fill,
            label=f"slayer/bptt {neuron}",
        )
    axes[0].set_ylabel("‖∂L/∂W₁‖ (first layer, median over seeds)")
    axes[1].set_ylabel("ratio to BPTT (first layer)")
    axes[1].axhline(1.0, color="grey", linewidth=0.8)
    for axis in axes:
        axis.set_yscale("log")
        axis.set_xlabel(xlabel)
        axis.legend(fontsize=7)
    return report.save_figure(figure, path)


def plot_layers(rows: list[dict], depth: int, time: int, path: Path) -> Path:
    """Gradient norm of every layer of the deepest network, per variant (median over seeds)."""
    neurons = sorted({r["neuron"] for r in rows})
    figure = report.figure(figsize=(5 * len(neurons), 4))
    axes = figure.subplots(1, len(neurons), squeeze=False)
    for axis, neuron in zip(axes[0], neurons):
        chosen = [
            r for r in rows if r["neuron"] == neuron and r["depth"] == depth and r["time"] == time
        ]
        layers = sorted({r["layer"] for r in chosen})
        for variant, style in (("bptt", "k-o"), ("exodus", "C0--s"), ("slayer", "C3-^")):
            norms = [
                statistics.median(r[f"{variant}_norm"] for r in chosen if r["layer"] == i)
                for i in layers
            ]
            axis.plot(layers, norms, style, label=variant)
        axis.set_yscale("log")
        axis.set_xlabel("layer (1 = input side)")
        axis.set_ylabel("‖∂L/∂W_l‖")
        axis.set_title(f"{neuron.upper()}, {depth} layers, T = {time}")
        axis.legend()
    return report.save_figure(figure, path)


def run(options: Any) -> dict:
    """Depth sweep and T sweep for each neuron; write tables, plots and a README."""
    out = arguments.setup(options)
    settings = TINY if options.tiny else FULL
    neurons = options.neurons.split(",")
    seeds = range(options.seed, options.seed + (options.seeds or settings.seeds))
    jobs = [
        (n, d, settings.fixed_time, s, "depth")
        for n in neurons
        for d in settings.depths
        for s in seeds
    ]
    jobs += [
        (n, settings.fixed_depth, t, s, "time")
        for n in neurons
        for t in settings.times
        for s in seeds
    ]
    rows = []
    for neuron, depth, time, seed, sweep in report.progress(jobs, EXPERIMENT):
        rows += [{"sweep": sweep, **row} for row in measure(neuron, depth, time, seed, settings)]
    report.write_table(rows, out / "norms")
    depth_summary = summarise([r for r in rows if r["sweep"] == "depth"], "depth")
    time_summary = summarise([r for r in rows if r["sweep"] == "time"], "time")
    depth_md = report.write_table(depth_summary, out / "depth")
    time_md = report.write_table(time_summary, out / "time")
    for key, summary in (("depth", depth_summary), ("time", time_summary)):
        report.write_readme_table(readme_rows(summary, key), out, f"{key}_sweep",
                                  README_TABLES[f"{key}_sweep"], tiny=options.tiny)
    figures = [
        plot_sweep(
            depth_summary, "depth", f"spiking layers (T = {settings.fixed_time})", out / "depth.png"
        ),
        plot_layers(
            [r for r in rows if r["sweep"] == "depth"],
            max(settings.depths),
            settings.fixed_time,
            out / "layers.png",
        ),
        plot_sweep(
            time_summary, "time", f"time steps T ({settings.fixed_depth} layers)", out / "time.png"
        ),
    ]
    reading = (
        "Depth sweep:\n"
        + describe(depth_summary, "depth")
        + "\nT sweep:\n"
        + describe(time_summary, "time")
    )
    settings_text = (
        f"{settings}; neurons {neurons}; multi-spike, threshold 1, subtractive "
        f"reset, SingleExponential surrogate; every layer calibrated to 0.1 "
        f"spikes/step; no gradient scaling for SLAYER.\n"
    )
    report.report(
        EXPERIMENT,
        options,
        "Gradient stability: norms per layer vs depth and T",
        [
            ("Settings", settings_text),
            ("What the numbers show", reading),
            ("Depth sweep", depth_md),
            ("T sweep", time_md),
        ],
        depth_md + "\n" + time_md + "\n" + reading,
        figures=figures,
        tables={"depth": depth_summary, "time": time_summary},
    )
    return {"rows": rows, "depth": depth_summary, "time": time_summary}


def main(argv: list[str] | None = None) -> dict:
    parser = arguments.experiment_parser(EXPERIMENT, __doc__)
    parser.add_argument("--neurons", default="lif,iaf", help="comma list of: lif, iaf")
    parser.add_argument("--seeds", type=int, default=0, help="number of seeds (0: default)")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
