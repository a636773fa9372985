"""Memory across a long gap: feed-forward LIF vs neurons and networks that can hold a cue.

Trains small networks on the built-in delayed-XOR task (exodus_lightning.data.
DelayedXorDataModule: two cues separated by a silent gap, the class is their XOR, so the first
cue must be held for the whole gap) on the CPU, in minutes:

    LIF           feed-forward LIF (τ_mem = 10 steps, far shorter than the gap)
    ALIF          the same network with adaptive thresholds (sinabs' ALIF, τ_adapt = 200)
    adLIF         the same network with SE-adLIF neurons (adaptation current, τ_w in 60..300)
    LIF recurrent LIF with a recurrent connection in the hidden layer
    LIF + delays  feed-forward LIF with learned synaptic delays (DCLS, models.DelaySNN) that
                  can reach across the gap

and writes a table of the final and best validation accuracy per variant (mean ± std over
seeds: summary.csv/.md, and the docs' table network.md), accuracy.csv (per epoch) and
accuracy.png (validation accuracy per epoch) to the results folder.

    python -m experiments.temporal_memory                  # gap 80, 3 seeds, ~10 minutes on 2 cores
    python -m experiments.temporal_memory --gap 150 --epochs 30
    python -m experiments.temporal_memory --tiny           # seconds (a smoke test)
"""

from __future__ import annotations

import statistics
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file, too

from experiments import arguments, report  # noqa: E402

EXPERIMENT = "temporal_memory"
# The docs' table (experiments/tables.py copies <out>/network.md into it).
README_TABLES: dict[str, tuple[str, ...]] = {
    "network": ("network", "final val acc", "best val acc", "seconds per run"),
}

# Network settings shared by every variant, then each variant's network class and its own
# arguments ("{gap}" stands for a delay span that reaches across the gap).
COMMON = dict(hidden_sizes=(128,), tau_mem=10.0, spike_threshold=0.2, backend="extension")
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "LIF": ("FeedForwardSNN", dict(norm_input=False)),
    "ALIF": ("FeedForwardSNN", dict(norm_input=False, neuron="alif", tau_adapt=200.0,
                                    adapt_scale=5.0)),
    # Single spikes: multi-spike counts fed back through the recurrent weights can grow without
    # bound (a run with them diverged to inf).
    "LIF recurrent": ("FeedForwardSNN", dict(norm_input=False, recurrent=True,
                                             max_spikes_per_step=1)),
    "adLIF": ("FeedForwardSNN", dict(neuron="adlif", gradient="slayer")),
    "LIF + delays": ("DelaySNN", dict(max_delay="{gap}", max_spikes_per_step=None,
                                      reset="subtract", gradient="exodus", dropout=0.0,
                                      readout_tau_mem=20.0, extend_time=False)),
}
# How the README names each variant ("{span}": the delay span that reaches across the gap).
README_NAMES = {
    "LIF": "LIF (τ = 10 steps)",
    "ALIF": "ALIF (τ_adapt = 200)",
    "LIF recurrent": "LIF recurrent (single spike)",
    "adLIF": "adLIF (SE-adLIF)",
    "LIF + delays": "LIF + learned delays (span {span})",
}


def delay_span(gap: int) -> int:
    """A delay span of gap + one cue window + 1 steps reaches from the first cue to the second."""
    from exodus_lightning.data import DelayedXorDataModule

    return gap + DelayedXorDataModule(gap=gap).cue_steps + 1


def train(variant: str, seed: int, options: Any) -> dict[str, Any]:
    """Train one variant with one seed; its validation accuracy per epoch and the time taken."""
    import lightning as L
    import torch

    from exodus_lightning import models
    from exodus_lightning.callbacks import SigmaAnnealing
    from exodus_lightning.data import DelayedXorDataModule
    from exodus_lightning.tasks import SpikingClassifier

    L.seed_everything(seed, verbose=False)
    data = DelayedXorDataModule(batch_size=64, gap=options.gap, seed=seed,
                                num_train_samples=options.train_samples,
                                num_val_samples=options.val_samples, num_test_samples=64)
    name, settings = VARIANTS[variant]
    span = delay_span(options.gap)
    settings = {key: span if value == "{gap}" else value for key, value in settings.items()}
    network = getattr(models, name)(data.input_shape, data.num_classes, **COMMON, **settings)
    module = SpikingClassifier(network, data.num_classes, readout_loss="mean_membrane",
                               optimizer=partial(torch.optim.Adam, lr=options.lr))
    history: list[float] = []

    class ValidationAccuracy(L.Callback):
        def on_validation_epoch_end(self, trainer, module) -> None:
            if not trainer.sanity_checking:
                history.append(float(trainer.callback_metrics["val/acc"]))

    trainer = L.Trainer(max_epochs=options.epochs, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        gradient_clip_val=1.0, accelerator="cpu",
                        callbacks=[ValidationAccuracy()] + ([SigmaAnnealing()]
                                                            if name == "DelaySNN" else []),
                        limit_train_batches=2 if options.tiny else 1.0)
    start = time.perf_counter()
    trainer.fit(module, data)
    return {"history": history, "seconds": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> None:
    parser = arguments.experiment_parser(EXPERIMENT, __doc__)
    parser.add_argument("--gap", type=int, default=80, help="silent steps between the cues")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--train-samples", type=int, default=2048)
    parser.add_argument("--val-samples", type=int, default=1024)
    options = parser.parse_args(argv)
    if options.tiny:
        options.gap, options.epochs, options.seeds = 10, 2, 1
        options.train_samples, options.val_samples = 256, 64
    out = arguments.setup(options)

    runs = []
    for variant in report.progress(VARIANTS, "variants"):
        for seed in range(options.seed, options.seed + options.seeds):
            result = train(variant, seed, options)
            runs.append({"variant": variant, "seed": seed, **result})

    curves = [{"variant": run["variant"], "seed": run["seed"], "epoch": epoch + 1,
               "val_acc": acc} for run in runs for epoch, acc in enumerate(run["history"])]
    report.write_table(curves, out / "accuracy")
    rows = []
    for variant in VARIANTS:
        mine = [run for run in runs if run["variant"] == variant]
        final = [run["history"][-1] for run in mine]
        best = [max(run["history"]) for run in mine]
        rows.append({
            "variant": variant,
            "final val acc": _mean_std(final),
            "best val acc": _mean_std(best),
            "seconds per run": statistics.median(run["seconds"] for run in mine),
        })
    table = report.write_table(rows, out / "summary")
    span = delay_span(options.gap)
    columns = README_TABLES["network"]
    report.write_readme_table(
        [dict(zip(columns, (README_NAMES[row["variant"]].format(span=span),
                            row["final val acc"], row["best val acc"],
                            report.format_value(row["seconds per run"])))) for row in rows],
        out, "network", columns, tiny=options.tiny)

    figure = report.figure(figsize=(6, 4))
    axes = figure.add_subplot()
    for variant in VARIANTS:
        for index, run in enumerate(run for run in runs if run["variant"] == variant):
            epochs = range(1, len(run["history"]) + 1)
            axes.plot(epochs, run["history"], color=f"C{list(VARIANTS).index(variant)}",
                      label=variant if index == 0 else None, alpha=0.8)
    axes.axhline(0.5, color="grey", linestyle=":", label="chance")
    axes.set(xlabel="epoch", ylabel="validation accuracy", ylim=(0, 1.05),
             title=f"Delayed XOR, gap {options.gap} steps")
    axes.legend()
    plot = report.save_figure(figure, out / "accuracy.png")

    settings = (f"gap {options.gap} steps, {options.epochs} epochs, {options.seeds} seeds, "
                f"{options.train_samples} training samples; network {COMMON}")
    report.report(EXPERIMENT, options, "Memory across a gap: delayed XOR",
                  [("Settings", settings + "\n"), ("Validation accuracy", table)], table,
                  figures=[plot], tables={"summary": rows, "accuracy": curves})


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


if __name__ == "__main__":
    main()
