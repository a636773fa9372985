"""Shared helpers of the experiments: gradient variants, SNN builders, tables, plots, W&B.

The three gradient variants of the paper are the same layers with different switches:

    bptt    backend="reference", gradient="exodus"   autograd through a Python loop (ground truth)
    exodus  backend="extension", gradient="exodus"   fused kernels, exact gradient
    slayer  backend="extension", gradient="slayer"   fused kernels, reset ignored backward
"""

from __future__ import annotations

import argparse
import copy
import csv
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI

import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402
from tqdm import tqdm  # noqa: E402

from exodus_lightning import nn as enn  # noqa: E402

VARIANTS: dict[str, dict[str, str]] = {
    "bptt": {"gradient": "exodus", "backend": "reference"},
    "exodus": {"gradient": "exodus", "backend": "extension"},
    "slayer": {"gradient": "slayer", "backend": "extension"},
}
WEIGHT_LAYERS = (nn.Linear, nn.Conv2d)


# ---------------------------------------------------------------------------------------------
# Command line, output folder, progress


def make_parser(experiment: str, description: str) -> argparse.ArgumentParser:
    """Parser with the options all experiments share: --tiny, --out, --seed, --wandb, --threads."""
    parser = argparse.ArgumentParser(
        prog=f"python -m experiments.{experiment}", description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true",
                        help="seconds-long smoke run at tiny sizes (used by the tests)")
    parser.add_argument("--out", type=Path, default=Path("results") / experiment,
                        help="results folder (default: results/%(prog)s's name)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--wandb", action="store_true",
                        help="also log tables and plots to Weights & Biases (offline unless "
                             "WANDB_API_KEY is set)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    return parser


def setup(options: argparse.Namespace) -> Path:
    """Apply --threads and create the results folder."""
    if options.threads:
        torch.set_num_threads(options.threads)
    options.out.mkdir(parents=True, exist_ok=True)
    return options.out


def progress(items: Iterable, desc: str, total: int | None = None) -> tqdm:
    """A progress bar on stderr; plain lines when stderr is not a terminal (logs, CI)."""
    return tqdm(items, desc=desc, total=total, dynamic_ncols=True, mininterval=1.0)


# ---------------------------------------------------------------------------------------------
# Variants and gradients


def set_variant(model: nn.Module, variant: str) -> nn.Module:
    """Switch every spiking/leaky layer of model to a variant of VARIANTS, in place."""
    switches = VARIANTS[variant]
    for layer in model.modules():
        if isinstance(layer, enn.LIF):  # IAF and the Squeeze variants are LIFs too
            layer.gradient = switches["gradient"]
            layer.backend = switches["backend"]
        elif isinstance(layer, enn.ExpLeak):
            layer.backend = switches["backend"]
    return model


def variant_copy(model: nn.Module, variant: str) -> nn.Module:
    """A deep copy of model (same weights, fresh states) switched to variant."""
    clone = copy.deepcopy(model)
    enn.reset_states(clone)
    return set_variant(clone, variant)


def parameter_gradients(model: nn.Module) -> dict[str, Tensor]:
    """name -> a detached copy of the gradient, for every parameter that has one."""
    return {name: param.grad.detach().clone() for name, param in model.named_parameters()
            if param.grad is not None}


def relative_error(value: Tensor, reference: Tensor) -> float:
    """‖value − reference‖₂ / ‖reference‖₂ (0 if both are zero, inf if only the reference is)."""
    denominator = reference.double().norm().item()
    numerator = (value.double() - reference.double()).norm().item()
    if denominator == 0.0:
        return 0.0 if numerator == 0.0 else math.inf
    return numerator / denominator


def spiking_layers(model: nn.Module) -> list[nn.Module]:
    """The spiking layers (LIF, IAF and their Squeeze variants) of model, in order."""
    return [layer for layer in model.modules() if isinstance(layer, enn.LIF)]


def weight_layers(model: nn.Module) -> list[nn.Module]:
    """The Linear/Conv2d layers of model, in order."""
    return [layer for layer in model.modules() if isinstance(layer, WEIGHT_LAYERS)]


@torch.no_grad()
def spike_rates(model: nn.Module, x: Tensor) -> list[float]:
    """Mean spikes per neuron and time step of every spiking layer, for input x."""
    rates: list[float] = []

    def record(_module: nn.Module, _inputs: tuple, out: Tensor) -> None:
        rates.append(out.float().mean().item())

    hooks = [layer.register_forward_hook(record) for layer in spiking_layers(model)]
    try:
        enn.reset_states(model)
        model(x)
    finally:
        for hook in hooks:
            hook.remove()
        enn.reset_states(model)
    return rates


@torch.no_grad()
def calibrate_(model: nn.Module, x: Tensor, target_rate: float, iterations: int = 16
               ) -> list[float]:
    """Scale each weight layer in turn so the spiking layer after it fires at target_rate.

    A layer-sequential, data-dependent initialisation (bisection on a log scale of each weight
    tensor, earlier layers already fixed): deep networks then neither go silent nor saturate,
    so the gradients compared are those of a working network. Returns the final rates.
    """
    for index, layer in enumerate(weight_layers(model)[: len(spiking_layers(model))]):
        original = layer.weight.clone()
        low, high = -6.0, 6.0  # log2 of the scale factor
        for _ in range(iterations):
            middle = (low + high) / 2
            layer.weight.copy_(original * 2.0 ** middle)
            if spike_rates(model, x)[index] < target_rate:
                low = middle
            else:
                high = middle
        layer.weight.copy_(original * 2.0 ** ((low + high) / 2))
    return spike_rates(model, x)


# ---------------------------------------------------------------------------------------------
# Networks


def neuron_layer(neuron: str, *, squeeze_batch: int | None = None, layers: ModuleType = enn,
                 **kwargs: Any) -> nn.Module:
    """A spiking layer: neuron "lif" (kwargs: tau_mem, ...) or "iaf", plain or Squeeze.

    ``layers`` is the namespace providing LIF/IAF/LIFSqueeze/IAFSqueeze: exodus_lightning.nn, or
    sinabs.layers (same keywords) when timing the peer.
    """
    name = {"lif": "LIF", "iaf": "IAF"}[neuron]
    if neuron == "iaf":
        kwargs.pop("tau_mem", None)
        kwargs.pop("norm_input", None)
    if squeeze_batch is not None:
        return getattr(layers, name + "Squeeze")(batch_size=squeeze_batch, **kwargs)
    return getattr(layers, name)(**kwargs)


def dense_snn(sizes: Sequence[int], neuron: str = "lif", **neuron_kwargs: Any) -> nn.Sequential:
    """Linear → spiking layer, repeated: sizes = (inputs, hidden..., outputs); (B, T, F) in/out.

    Linear layers act on the last axis, so no time folding is needed.
    """
    modules: list[nn.Module] = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        modules += [nn.Linear(fan_in, fan_out, bias=False), neuron_layer(neuron, **neuron_kwargs)]
    return nn.Sequential(*modules)


def conv_snn(input_shape: Sequence[int], channels: Sequence[int], num_classes: int,
             batch_size: int, neuron: str = "lif", layers: ModuleType = enn,
             **neuron_kwargs: Any) -> nn.Sequential:
    """(conv 3×3 → spiking → avg-pool 2)×n → linear → spiking; (B, T, C, H, W) → (B, T, classes).

    Time is folded into the batch once (FlattenTime) and the Squeeze spiking layers unfold it.
    """
    in_channels, height, width = input_shape
    modules: list[nn.Module] = [layers.FlattenTime()]
    for out_channels in channels:
        modules += [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                    neuron_layer(neuron, squeeze_batch=batch_size, layers=layers,
                                 **neuron_kwargs),
                    nn.AvgPool2d(2)]
        in_channels, height, width = out_channels, height // 2, width // 2
    modules += [nn.Flatten(), nn.Linear(in_channels * height * width, num_classes, bias=False),
                neuron_layer(neuron, squeeze_batch=batch_size, layers=layers, **neuron_kwargs),
                layers.UnflattenTime(batch_size=batch_size)]
    return nn.Sequential(*modules)


def shd_mlp(num_inputs: int = 700, hidden: int = 128, num_classes: int = 20,
            layers: ModuleType = enn, **neuron_kwargs: Any) -> nn.Sequential:
    """The paper's SHD network: inputs → 128 LIF → 128 LIF → 20 LIF, (B, T, F) in and out."""
    kwargs = {"tau_mem": 20.0, **neuron_kwargs}
    sizes = (num_inputs, hidden, hidden, num_classes)
    modules: list[nn.Module] = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        modules += [nn.Linear(fan_in, fan_out), layers.LIF(**kwargs)]
    return nn.Sequential(*modules)


# ---------------------------------------------------------------------------------------------
# Tables, plots, W&B


def format_value(value: Any) -> str:
    """Floats to 3 significant digits (scientific when small or large), the rest via str."""
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if value != 0.0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.2e}"
        return f"{value:.3g}"
    return str(value)


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A GitHub Markdown table of rows (dicts), columns in the given or first-row order."""
    columns = list(columns or (rows[0].keys() if rows else []))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(format_value(row.get(c, "")) for c in columns) + " |"
              for row in rows]
    return "\n".join(lines) + "\n"


def write_table(rows: Sequence[dict[str, Any]], stem: Path,
                columns: Sequence[str] | None = None) -> str:
    """Write rows as stem.csv (full precision) and stem.md; return the Markdown text."""
    columns = list(columns or (rows[0].keys() if rows else []))
    with open(stem.with_suffix(".csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    text = markdown_table(rows, columns)
    stem.with_suffix(".md").write_text(text)
    return text


def read_csv(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV file as dicts of strings."""
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def save_figure(figure: matplotlib.figure.Figure, path: Path) -> Path:
    """Save a figure as PNG and close it."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


class Tracker:
    """Optional W&B logging of tables and images; every method is a no-op when disabled."""

    def __init__(self, enabled: bool, experiment: str, config: dict[str, Any], out: Path):
        self.run = None
        if not enabled:
            return
        import wandb

        # Online only with a key; a user's WANDB_MODE (e.g. "disabled") still wins.
        mode = os.environ.get("WANDB_MODE") or (
            "online" if os.environ.get("WANDB_API_KEY") else "offline")
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "exodus-lightning"),
                              name=experiment, job_type="experiment", mode=mode, dir=str(out),
                              config={k: str(v) if isinstance(v, Path) else v
                                      for k, v in config.items()})

    def table(self, name: str, rows: Sequence[dict[str, Any]]) -> None:
        if self.run is None or not rows:
            return
        import wandb

        columns = list(rows[0].keys())
        self.run.log({name: wandb.Table(columns=columns,
                                        data=[[row.get(c) for c in columns] for row in rows])})

    def image(self, name: str, path: Path) -> None:
        if self.run is None:
            return
        import wandb

        self.run.log({name: wandb.Image(str(path))})

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()


SMOKE_NOTE = (
    "Smoke run (--tiny): tiny sizes and a few steps, only to check that the script runs end to "
    "end. Accuracies near chance (0.1 for 10 classes), nan ratios and noisy timings are "
    "expected here; the numbers say nothing about the methods. Run without --tiny for results."
)


def smoke_banner(tiny: bool) -> str:
    """The line printed above a --tiny run's tables (empty otherwise)."""
    return f"{SMOKE_NOTE}\n" if tiny else ""


def write_report(out: Path, title: str, sections: Sequence[tuple[str, str]],
                 figures: Sequence[Path] = (), smoke: bool = False) -> Path:
    """README.md of a results folder: a title, (heading, Markdown) sections and the figures;
    a smoke (--tiny) run says so first."""
    parts = [f"# {title}\n"]
    if smoke:
        parts.append(f"> **{SMOKE_NOTE}**\n")
    for heading, body in sections:
        parts.append(f"## {heading}\n\n{body}")
    parts += [f"![{path.stem}]({path.name})\n" for path in figures]
    path = out / "README.md"
    path.write_text("\n".join(parts))
    return path

