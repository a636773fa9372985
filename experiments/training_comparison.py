"""Claim 3: EXODUS trains as well as or better than SLAYER, and faster than BPTT.

Trains one network with each gradient (EXODUS, SLAYER, BPTT = the reference loop) over several
seeds, through the project's CLI exactly as a user would:

    python -m exodus_lightning fit --config <config> [--config <config> ...] --config <run.yaml>

where the configs are an experiment (default configs/experiments/randman.yaml, the built-in
temporal task; for SHD, SSC and DVS Gesture, which need their data sets, the dataset's config
in configs/) and run.yaml, written here, sets the variant
(model.network.init_args.gradient/backend), the seed, a CSV logger (plus W&B with --wandb) and
a callback that logs the training time of every epoch. Learning curves and times are read back
from each run's metrics.csv. Writes curves.csv (per epoch), runs.csv (per run), summary.csv/.md
(per variant: final and best validation accuracy, mean ± std over seeds; median seconds per
training epoch), the docs' table gradients.md and curves.png, time.png.

    python -m experiments.training_comparison                       # Randman, 3 seeds, CPU
    python -m experiments.training_comparison --config configs/shd.yaml
    python -m experiments.training_comparison --tiny                # 2 batches per epoch
"""

from __future__ import annotations

import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import yaml

from experiments import arguments, common, report

EXPERIMENT = "training_comparison"
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "configs" / "experiments" / "randman.yaml"
# The docs' table (experiments/tables.py copies <out>/gradients.md into it).
README_TABLES: dict[str, tuple[str, ...]] = {
    "gradients": ("gradient", "final val. acc.", "best val. acc.", "s / epoch",
                  "speed-up vs BPTT"),
}
TIME_METRIC = "time/train_epoch_s"


class EpochTimer(L.Callback):
    """Logs the wall-clock seconds of each epoch's training batches (data loading included,
    validation excluded) as time/train_epoch_s."""

    def __init__(self) -> None:
        self.start = 0.0
        self.seconds: float | None = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = time.perf_counter()
        self.seconds = None

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Validation runs inside the training epoch; stop the clock at its start.
        if not trainer.sanity_checking and self.seconds is None and trainer.training:
            self.seconds = time.perf_counter() - self.start

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        seconds = self.seconds if self.seconds is not None else time.perf_counter() - self.start
        pl_module.log(TIME_METRIC, seconds, on_step=False, on_epoch=True)


def run_config(variant: str, seed: int, options: Any, runs: Path) -> dict:
    """The run.yaml contents for one (variant, seed): variant switches, seed, loggers, timer."""
    switches = common.VARIANTS[variant]
    loggers = [
        {
            "class_path": "lightning.pytorch.loggers.CSVLogger",
            "init_args": {"save_dir": str(runs), "name": variant, "version": f"seed{seed}"},
        }
    ]
    if options.wandb:
        loggers.append(
            {
                "class_path": "exodus_lightning.loggers.WandbLogger",
                "init_args": {
                    "save_dir": str(runs),
                    "name": f"{variant}-seed{seed}",
                    "group": f"{EXPERIMENT}-{options.configs[-1].stem}",
                },
            }
        )
    trainer: dict = {
        "logger": loggers,
        "enable_progress_bar": False,
        "callbacks": [{"class_path": f"experiments.{EXPERIMENT}.EpochTimer"}],
    }
    if options.epochs:
        trainer["max_epochs"] = options.epochs
    if options.tiny:
        trainer.update(
            max_epochs=2,
            limit_train_batches=2,
            limit_val_batches=1,
            num_sanity_val_steps=0,
            log_every_n_steps=1,
        )
    config = {
        "seed_everything": seed,
        "trainer": trainer,
        "model": {"network": {"init_args": dict(switches)}},
    }
    if options.tiny:
        config["data"] = {"init_args": {"batch_size": 16}}
    return config


def train(variant: str, seed: int, options: Any, runs: Path) -> Path:
    """Run one training through the CLI; return its metrics.csv. Output goes to a log file."""
    folder = runs / variant / f"seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    run_yaml = folder / "run.yaml"
    run_yaml.write_text(yaml.safe_dump(run_config(variant, seed, options, runs)))
    configs = [arg for path in (*options.configs, run_yaml) for arg in ("--config", str(path))]
    command = [sys.executable, "-m", "exodus_lightning", "fit", *configs, *options.overrides]
    env = dict(os.environ)
    # The timer callback lives in this package: the CLI must be able to import it.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if options.threads:
        env["OMP_NUM_THREADS"] = str(options.threads)
    with open(folder / "output.log", "w") as log:
        result = subprocess.run(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        tail = (folder / "output.log").read_text()[-3000:]
        raise RuntimeError(f"training {variant} seed {seed} failed ({' '.join(command)}):\n{tail}")
    return folder / "metrics.csv"


def epoch_rows(metrics_csv: Path, variant: str, seed: int) -> list[dict]:
    """One row per epoch from a CSVLogger file: train loss/acc, val loss/acc, epoch seconds."""
    wanted = {
        "train/loss_epoch": "train_loss",
        "train/acc": "train_acc",
        "val/loss": "val_loss",
        "val/acc": "val_acc",
        TIME_METRIC: "epoch_s",
    }
    epochs: dict[int, dict] = {}
    for record in report.read_csv(metrics_csv):
        epoch = int(record["epoch"])
        row = epochs.setdefault(epoch, {"variant": variant, "seed": seed, "epoch": epoch})
        for column, name in wanted.items():
            if record.get(column):
                row[name] = float(record[column])
    return [epochs[e] for e in sorted(epochs)]


def summarise(curves: list[dict], variants: list[str]) -> tuple[list[dict], list[dict]]:
    """Per-run rows (final/best val acc, median epoch time) and per-variant rows: accuracy
    mean ± std over seeds, median seconds per epoch."""
    runs = []
    for variant in variants:
        for seed in sorted({r["seed"] for r in curves if r["variant"] == variant}):
            rows = [r for r in curves if r["variant"] == variant and r["seed"] == seed]
            accs = [r["val_acc"] for r in rows if "val_acc" in r]
            times = [r["epoch_s"] for r in rows if "epoch_s" in r]
            runs.append(
                {
                    "variant": variant,
                    "seed": seed,
                    "epochs": len(rows),
                    "final_val_acc": accs[-1] if accs else math.nan,
                    "best_val_acc": max(accs) if accs else math.nan,
                    "final_train_loss": rows[-1].get("train_loss", math.nan),
                    "epoch_s": statistics.median(times) if times else math.nan,
                }
            )
    summary = []
    for variant in variants:
        chosen = [r for r in runs if r["variant"] == variant]
        row = {"variant": variant, "seeds": len(chosen)}
        for column in ("final_val_acc", "best_val_acc"):
            values = [r[column] for r in chosen]
            row[column] = statistics.mean(values)
            row[f"{column}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        # Median over every epoch of every seed: robust to other jobs sharing the machine.
        times = [r["epoch_s"] for r in curves if r["variant"] == variant and "epoch_s" in r]
        row["epoch_s"] = statistics.median(times) if times else math.nan
        summary.append(row)
    bptt = next((row["epoch_s"] for row in summary if row["variant"] == "bptt"), math.nan)
    for row in summary:
        row["speed-up vs bptt"] = bptt / row["epoch_s"]
    return runs, summary


def readme_rows(summary: list[dict]) -> list[dict]:
    """The docs' rows: accuracies in percent (mean ± std over seeds), seconds per epoch and
    the speed-up over BPTT."""
    rows = []
    for row in summary:
        accuracies = [f"{100 * row[column]:.1f} ± {100 * row[f'{column}_std']:.1f} %"
                      for column in ("final_val_acc", "best_val_acc")]
        rows.append(dict(zip(README_TABLES["gradients"], (
            row["variant"].upper(), *accuracies, report.format_value(row["epoch_s"]),
            f"{row['speed-up vs bptt']:.2f}×"))))
    return rows


def plot_curves(curves: list[dict], variants: list[str], path: Path) -> Path:
    """Validation accuracy and training loss per epoch: mean over seeds, band = min..max."""
    figure = report.figure(figsize=(10, 4))
    axes = figure.subplots(1, 2)
    colours = {"bptt": "black", "exodus": "C0", "slayer": "C3"}
    for variant in variants:
        for axis, column in zip(axes, ("val_acc", "train_loss")):
            epochs = sorted({r["epoch"] for r in curves if r["variant"] == variant and column in r})
            values = [
                [
                    r[column]
                    for r in curves
                    if r["variant"] == variant and r["epoch"] == e and column in r
                ]
                for e in epochs
            ]
            if not epochs:
                continue
            xs = [e + 1 for e in epochs]
            style = "--" if variant == "exodus" else "-"
            axis.plot(
                xs,
                [statistics.mean(v) for v in values],
                style,
                color=colours.get(variant),
                label=variant,
            )
            axis.fill_between(
                xs,
                [min(v) for v in values],
                [max(v) for v in values],
                color=colours.get(variant),
                alpha=0.15,
            )
    axes[0].set_ylabel("validation accuracy")
    axes[1].set_ylabel("training loss (epoch mean)")
    for axis in axes:
        axis.set_xlabel("epoch")
        axis.legend()
    return report.save_figure(figure, path)


def plot_time(summary: list[dict], path: Path) -> Path:
    """Seconds per training epoch per variant (median over epochs and seeds)."""
    figure = report.figure(figsize=(5, 3.5))
    axis = figure.subplots()
    names = [s["variant"] for s in summary]
    axis.bar(
        names,
        [s["epoch_s"] for s in summary],
        color=["black" if n == "bptt" else "C0" if n == "exodus" else "C3" for n in names],
    )
    axis.set_ylabel("seconds per training epoch (median)")
    return report.save_figure(figure, path)


def run(options: Any) -> dict:
    """Train every (variant, seed), then tabulate and plot."""
    out = arguments.setup(options).resolve()
    options.configs = [Path(path).resolve() for path in options.config or [DEFAULT_CONFIG]]
    runs = out / "runs"
    variants = options.variants.split(",")
    unknown = set(variants) - set(common.VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variants {sorted(unknown)}; choose from {list(common.VARIANTS)}")
    seeds = list(range(options.seed, options.seed + (1 if options.tiny else options.seeds)))
    curves = []
    jobs = [(variant, seed) for seed in seeds for variant in variants]
    for variant, seed in report.progress(jobs, EXPERIMENT):
        curves += epoch_rows(train(variant, seed, options, runs), variant, seed)
    report.write_table(
        curves,
        out / "curves",
        ["variant", "seed", "epoch", "train_loss", "train_acc", "val_loss", "val_acc", "epoch_s"],
    )
    run_rows, summary = summarise(curves, variants)
    report.write_table(run_rows, out / "runs")
    summary_md = report.write_table(summary, out / "summary")
    report.write_readme_table(readme_rows(summary), out, "gradients", README_TABLES["gradients"],
                              tiny=options.tiny)
    figures = [
        plot_curves(curves, variants, out / "curves.png"),
        plot_time(summary, out / "time.png"),
    ]
    command = " ".join(["python -m experiments.training_comparison", *options.argv])
    names = ", ".join(f"`{os.path.relpath(path, ROOT)}`" for path in options.configs)
    settings = (
        f"Configs {names}, seeds {seeds}, "
        f"{'tiny mode (2 batches per epoch), ' if options.tiny else ''}"
        f"extra overrides {options.overrides or 'none'}. Each run: "
        f"`python -m exodus_lightning fit --config <configs> --config runs/<variant>/"
        f"seed<seed>/run.yaml`.\n"
    )
    report.report(
        EXPERIMENT,
        options,
        "Training comparison: EXODUS vs SLAYER vs BPTT",
        [
            ("Settings", settings),
            ("Command", f"`{command}`\n"),
            ("Summary (mean over seeds)", summary_md),
        ],
        summary_md,
        figures=figures,
        tables={"summary": summary, "curves": curves},
    )
    return {"curves": curves, "runs": run_rows, "summary": summary, "figures": figures}


def main(argv: list[str] | None = None) -> dict:
    parser = arguments.experiment_parser(EXPERIMENT, __doc__)
    parser.add_argument(
        "--config",
        action="append",
        help="experiment config; repeat to layer configs (default: "
        "configs/experiments/randman.yaml)",
    )
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds, from --seed")
    parser.add_argument("--epochs", type=int, default=0, help="max_epochs (0: the config's)")
    parser.add_argument("--variants", default="bptt,exodus,slayer")
    parser.add_argument(
        "overrides",
        nargs="*",
        help="extra CLI arguments for every run, after --, e.g. -- --data.init_args.batch_size 64",
    )
    options = parser.parse_args(argv)
    options.argv = list(sys.argv[1:] if argv is None else argv)
    return run(options)


if __name__ == "__main__":
    main()
