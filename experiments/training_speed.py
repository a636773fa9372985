"""Claim 3 (speed): a full training step with EXODUS vs BPTT and every installed peer.

One training step (forward, cross-entropy on the time-averaged output, backward, Adam step) of
the paper's two networks, the SHD MLP (700 inputs → 128 → 128 LIF → 20,
models.FeedForwardSNN) and a DVS conv net ((2, 32, 32) input, conv/LIF/pool blocks,
models.ConvSNN), over a sweep of T, one spike per step at most. Each implementation runs
the same network with the same weights: EXODUS (fused kernels), BPTT (backend="reference",
autograd through a Python loop), and, when installed, sinabs, snnTorch, SpikingJelly and Norse
with their LIF layers in place of ours, configured to the same dynamics (experiments/peers.py),
run eagerly; --compiled-peers adds snnTorch and Norse with their per-step cell under
torch.compile (compiled in the untimed warm-up round; benchmark_peers measures them by default).
A peer that is not installed, does not import or fails in a measurement is left out with a
note below the table; the others are measured.

Per cell (network, T, implementation), equivalence first, then speed and memory:
    spike rate         the reference's spikes per neuron and step, over all LIF layers (CSV, and a
                       line below the README table, one figure per cell): the
                       equivalence columns can only see differences where neurons spike
    spike mismatch     fraction of spikes (all LIF layers) differing from a float64 reference
    input-grad error   relative error of ∂loss/∂input against that reference (the reference
                       is our autograd loop with the implementation's own surrogate)
    ms/step            median (min–max) over rounds interleaved across implementations
                       (timing.py), all in one process per cell
    peak MB            most bytes of tensors live at once in one step (memory.step_peak_mb:
                       PyTorch's allocator accounting), each in a fresh process
    saved MB           tensors autograd keeps for backward (exact, allocator-independent)
CPU always; CUDA too when present. Writes speed.csv/.md, speed_readme.md (the README's
table), speed.png (time vs T) and memory.png (saved-for-backward MB vs T).

    python -m experiments.training_speed                   # CPU sweep: ~7 minutes on 2 cores
    python -m experiments.training_speed --devices cuda    # GPU sweep (larger batches)
    python -m experiments.training_speed --tiny            # seconds
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from experiments import arguments, isolated, memory, peers, report, timing
from experiments.common import relative_error

EXPERIMENT = "training_speed"
OURS = peers.OURS
PEERS = peers.PEERS
TAU_MEM = 20.0
README_COLUMNS = (
    "network",
    "batch",
    "T",
    "implementation",
    "spike mismatch",
    "input-grad error",
    "ms/step, median (min–max)",
    "speed-up vs BPTT",
    "peak MB",
    "saved for backward MB",
)
README_TABLES = {"speed_readme": README_COLUMNS}
NETWORK_NAMES = {"shd_mlp": "SHD MLP 700→128→128→20", "dvs_conv": "DVS conv (2,32,32)"}


@dataclass(frozen=True)
class Sweep:
    """Batch sizes and time steps per (device, network)."""

    batch: int
    times: tuple[int, ...]


SWEEPS = {
    ("cpu", "shd_mlp"): Sweep(32, (50, 100, 250, 500)),
    ("cpu", "dvs_conv"): Sweep(8, (25, 50, 100, 200)),
    ("cuda", "shd_mlp"): Sweep(128, (100, 250, 500, 1000)),
    ("cuda", "dvs_conv"): Sweep(32, (50, 100, 200, 300)),
}
TINY = {"shd_mlp": Sweep(2, (8, 16)), "dvs_conv": Sweep(2, (4, 8))}
TINY_SHAPES = {"shd_mlp": (40,), "dvs_conv": (2, 16, 16)}
SHAPES = {"shd_mlp": (700,), "dvs_conv": (2, 32, 32)}
CLASSES = {"shd_mlp": 20, "dvs_conv": 11}


# ---------------------------------------------------------------------------------------------
# Networks and inputs


def base_model(network: str, input_shape: tuple[int, ...]) -> torch.nn.Module:
    """Our network (seeded weights, one spike per step at most), before any swap."""
    from exodus_lightning import models

    torch.manual_seed(0)
    common = dict(
        tau_mem=TAU_MEM, readout="exp_leak", readout_tau_mem=TAU_MEM, max_spikes_per_step=1
    )
    if network == "shd_mlp":
        return models.FeedForwardSNN(input_shape, CLASSES[network], hidden_sizes=(128, 128),
                                     **common)
    return models.ConvSNN(input_shape, CLASSES[network], channels=(16, 32, 32), **common)


def build(network: str, implementation: str, input_shape: tuple[int, ...]):
    """(model, forward, reset): the network in one implementation (peers.swap_neurons).

    forward: (batch, time, *input_shape) -> (batch, time, classes); reset: zero neuron states.
    """
    from exodus_lightning import nn as enn

    model = peers.swap_neurons(base_model(network, input_shape), implementation)

    def reset() -> None:
        enn.reset_states(model)
        if implementation == "sinabs":
            import sinabs

            sinabs.reset_states(model)

    return model, model, reset


def inputs(network: str, batch: int, time: int, input_shape: tuple[int, ...], device: str,
           dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded event-like input (5 % ones) and labels."""
    generator = torch.Generator().manual_seed(1)
    x = (torch.rand(batch, time, *input_shape, generator=generator) < 0.05).to(dtype)
    labels = torch.randint(0, CLASSES[network], (batch,), generator=generator)
    return x.to(device), labels.to(device)


def _training_step(network, implementation, device, batch, time, input_shape):
    model, forward, reset = build(network, implementation, input_shape)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, labels = inputs(network, batch, time, input_shape, device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        reset()
        F.cross_entropy(forward(x).mean(1), labels).backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()

    def forward_only() -> None:
        reset()
        F.cross_entropy(forward(x).mean(1), labels)

    return step, forward_only


# ---------------------------------------------------------------------------------------------
# Measurement


def equivalence(
    network: str, implementation: str, device: str, batch: int, time: int,
    input_shape: tuple[int, ...], reference: dict | None = None,
) -> tuple[dict[str, float], dict]:
    """Spike mismatch and input-gradient error of one implementation against the float64
    reference with its surrogate; returns (figures, reference) so references can be reused."""
    base = base_model(network, input_shape)
    names = peers.spiking_layer_names(base)

    def run(model: torch.nn.Module, dtype: torch.dtype, reset) -> tuple[list, torch.Tensor]:
        x, labels = inputs(network, batch, time, input_shape, device, dtype)
        x.requires_grad_()
        spikes, remove = peers.record_spikes(model, names)
        try:
            reset()
            F.cross_entropy(model(x).mean(1), labels).backward()
        finally:
            remove()
        return [s.double().cpu() for s in spikes], x.grad.double().cpu()

    if reference is None:
        from exodus_lightning import nn as enn

        ref_model = peers.reference_network(base, implementation).to(device)
        reference = dict(zip(("spikes", "grad"),
                             run(ref_model, torch.float64, lambda: enn.reset_states(ref_model))))
    model, _, reset = build(network, implementation, input_shape)
    spikes, grad = run(model.to(device), torch.float32, reset)
    differing = sum((s != r).sum().item() for s, r in zip(spikes, reference["spikes"]))
    total = sum(r.numel() for r in reference["spikes"])
    rate = sum(r.sum().item() for r in reference["spikes"]) / total
    error = relative_error(grad, reference["grad"])
    return ({"spike rate": rate, "spike mismatch": differing / total, "input-grad error": error},
            reference)


def measure_cell(network: str, implementations: list[str], device: str, batch: int, time: int,
                 rounds: int, tiny: bool) -> dict[str, dict]:
    """Equivalence, interleaved step times and saved-for-backward MB of every implementation
    in one cell, in this process; a peer that fails gets {"failed": reason} instead."""
    input_shape = TINY_SHAPES[network] if tiny else SHAPES[network]
    results: dict[str, dict] = {}
    references: dict[str, dict] = {}
    steps = {}
    for name in implementations:
        surrogate = peers.IMPLEMENTATIONS[name].surrogate_name
        try:
            figures, references[surrogate] = equivalence(
                network, name, device, batch, time, input_shape, references.get(surrogate)
            )
            step, forward_only = _training_step(network, name, device, batch, time, input_shape)
            results[name] = figures | {"saved_mb": memory.saved_for_backward_mb(forward_only)}
        except Exception as error:
            if name in OURS:
                raise
            results[name] = {"failed": f"its equivalence check failed: {peers.one_line(error)}"}
            continue
        steps[name] = step
    synchronize = torch.cuda.synchronize if device == "cuda" else None
    for name, times in timing.interleaved(steps, rounds, synchronize=synchronize).items():
        results[name]["samples"] = list(times.samples)
    return results


def peak_mb(network: str, implementation: str, device: str, batch: int, time: int,
            tiny: bool) -> float:
    """memory.step_peak_mb of one training step, after a warm-up step on a tiny batch."""
    input_shape = TINY_SHAPES[network] if tiny else SHAPES[network]
    warm, _ = _training_step(network, implementation, device, 1, 2, input_shape)
    warm()
    step, _ = _training_step(network, implementation, device, batch, time, input_shape)
    return memory.step_peak_mb(step, device)


# ---------------------------------------------------------------------------------------------
# Report


def plot(rows: list[dict], column: str, ylabel: str, path: Path) -> Path:
    """column vs T, one panel per (network, device), one line per implementation; log-log."""
    panels = sorted({(r["network"], r["device"]) for r in rows})
    figure = report.figure(figsize=(5 * len(panels), 4))
    axes = figure.subplots(1, len(panels), squeeze=False)
    styles = {
        "bptt": "k-o",
        "exodus": "C0-s",
        "sinabs": "C2-^",
        "snntorch": "C1-v",
        "spikingjelly": "C4-d",
        "norse": "C5-x",
    }
    for axis, (network, device) in zip(axes[0], panels):
        positive = True
        for implementation in (*OURS, *PEERS, *peers.COMPILED_PEERS):
            chosen = sorted(
                (
                    r
                    for r in rows
                    if r["network"] == network
                    and r["device"] == device
                    and r["implementation"] == implementation
                ),
                key=lambda r: r["time"],
            )
            if chosen:
                positive &= all(r[column] > 0 for r in chosen)
                axis.plot(
                    [r["time"] for r in chosen],
                    [r[column] for r in chosen],
                    _style(styles, implementation),
                    label=implementation,
                )
        axis.set_xscale("log")
        axis.set_yscale("log" if positive else "linear")  # tiny in-process peaks can be 0 MB
        axis.set_xlabel("time steps T")
        axis.set_ylabel(ylabel)
        batch = next(r["batch"] for r in rows if r["network"] == network and r["device"] == device)
        axis.set_title(f"{network}, {device}, batch {batch}")
        axis.legend()
    return report.save_figure(figure, path)


def rate_note(rows: list[dict]) -> str:
    """The line below a table that states each cell's spike rate (the float64 reference's
    spikes per neuron and step over the LIF layers): the equivalence columns see only spikes."""
    cells = {(r["network"], r["T"]): r["spike rate"] for r in rows}
    rates = ", ".join(f"{net} T = {time}: {rate:.2%}" for (net, time), rate in cells.items())
    return f"- spike rate (LIF layers, reference): {rates}"


def _style(styles: dict[str, str], implementation: str) -> str:
    """The line style of an implementation; a compiled peer's is its eager one, dashed."""
    if implementation in styles:
        return styles[implementation]
    return styles[implementation.removesuffix(peers.COMPILED_SUFFIX)].replace("-", "--")


def check_devices(devices: list[str]) -> None:
    """Exit with one line if a device is unknown or absent (before any output is written)."""
    prog = f"python -m experiments.{EXPERIMENT}"
    unknown = [d for d in devices if d not in ("cpu", "cuda")]
    if unknown:
        raise SystemExit(
            f"{prog}: error: --devices {','.join(unknown)}: choose from cpu, cuda, cpu,cuda or auto"
        )
    if "cuda" in devices and not torch.cuda.is_available():
        raise SystemExit(
            f"{prog}: error: --devices cuda: no CUDA GPU is visible here "
            "(torch.cuda.is_available() is False); run it on a GPU machine, or "
            "measure the CPU with --devices cpu"
        )


def run(options: Any) -> dict:
    """Sweep T for each (device, network); write the tables and plots."""
    devices = (
        (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
        if options.devices == "auto"
        else options.devices.split(",")
    )
    check_devices(devices)
    out = arguments.setup(options)
    networks = options.networks.split(",")
    candidates = [*OURS, *PEERS] if options.peers else list(OURS)
    if options.peers and options.compiled_peers:
        candidates += peers.COMPILED_PEERS
    rounds = options.repeats or (2 if options.tiny else 5)
    reasons = {name: peers.unavailable(name) for name in candidates}
    notes = [f"- skipped {reason}" for reason in reasons.values() if reason]
    runnable = [name for name, reason in reasons.items() if reason is None]
    cells = []
    for device in devices:
        for network in networks:
            sweep = TINY[network] if options.tiny else SWEEPS[(device, network)]
            cells += [(device, network, sweep.batch, time) for time in sweep.times]
    rows = []
    for device, network, batch, time in report.progress(cells, EXPERIMENT):
        cell = dict(network=network, device=device, batch=batch, time=time, tiny=options.tiny)
        if options.in_process:
            results = measure_cell(implementations=runnable, rounds=rounds, **cell)
        else:
            results = isolated.run(measure_cell, implementations=runnable, rounds=rounds,
                                   threads=options.threads, **cell)
        for name in runnable:
            where = f"{NETWORK_NAMES[network]}, {device}, batch {batch}, T = {time}"
            if "failed" in results[name]:
                notes.append(f"- {name} left out of {where}: {results[name]['failed']}")
                continue
            try:
                peak = (peak_mb(implementation=name, **cell) if options.in_process else
                        isolated.run(peak_mb, implementation=name, threads=options.threads,
                                     **cell))
            except Exception as error:
                if name in OURS:
                    raise
                notes.append(f"- {name} left out of {where}: its peak-memory step failed: "
                             f"{peers.one_line(error)}")
                continue
            times = timing.Timing(tuple(results[name]["samples"]))
            rows.append(
                {"network": network, "device": device, "batch": batch, "time": time,
                 "implementation": name,
                 "spike rate": results[name]["spike rate"],
                 "spike mismatch": results[name]["spike mismatch"],
                 "input-grad error": results[name]["input-grad error"],
                 "ms_per_step": times.median * 1e3, "ms_min": times.low * 1e3,
                 "ms_max": times.high * 1e3, "timing": times.cell(),
                 "peak_mb": peak, "saved_mb": results[name]["saved_mb"]}
            )
    for row in rows:
        bptt = next(
            r for r in rows
            if r["implementation"] == "bptt"
            and all(r[k] == row[k] for k in ("network", "device", "batch", "time"))
        )
        row["speed-up vs bptt"] = bptt["ms_per_step"] / row["ms_per_step"]
        row["saved vs bptt"] = row["saved_mb"] / bptt["saved_mb"]
        row["peak vs bptt"] = row["peak_mb"] / bptt["peak_mb"] if bptt["peak_mb"] > 0 else math.nan
    table = report.write_table(rows, out / "speed")
    readme_tables = []
    for device in devices:
        readme_rows = [
            {"network": NETWORK_NAMES[r["network"]], "batch": r["batch"], "T": r["time"],
             "implementation": r["implementation"], "spike rate": r["spike rate"],
             "spike mismatch": r["spike mismatch"],
             "input-grad error": r["input-grad error"],
             "ms/step, median (min–max)": r["timing"],
             "speed-up vs BPTT": f"{r['speed-up vs bptt']:.2f}×",
             "peak MB": r["peak_mb"], "saved for backward MB": r["saved_mb"]}
            for r in rows if r["device"] == device
        ]
        stem = "speed_readme" if device == "cpu" else f"speed_readme_{device}"
        readme_tables.append(
            report.write_readme_table(readme_rows, out, stem, README_COLUMNS, device=device,
                                      tiny=options.tiny, notes=[*notes, rate_note(readme_rows)])
        )
    figures = [
        plot(rows, "ms_per_step", "ms per training step", out / "speed.png"),
        plot(rows, "saved_mb", "MB saved for backward", out / "memory.png"),
    ]
    if options.tiny:
        sweeps = {n: asdict(TINY[n]) for n in networks}
    else:
        sweeps = {f"{d}/{n}": asdict(SWEEPS[(d, n)]) for d in devices for n in networks}
    where = "in one process" if options.in_process else "a fresh process per cell and per peak"
    settings = (
        f"{rounds} timed rounds interleaved across implementations after one warm-up round; "
        f"{where}; sweeps {sweeps}.\n"
    )
    legend = (
        "spike rate: the reference's spikes per neuron and step over the LIF layers; "
        "spike mismatch / input-grad error: against a float64 autograd reference with the "
        "implementation's own surrogate (experiments/peers.py); peak MB: the most bytes of "
        "tensors live at once in one step (memory.py: PyTorch's allocator accounting on CPU, "
        "max_memory_allocated on CUDA); saved for backward MB: tensors autograd keeps (exact).\n"
    )
    readme_text = "\n".join(readme_tables)
    sections = [("Settings", settings), ("Results", readme_text + "\n" + legend)]
    report.report(
        EXPERIMENT,
        options,
        "Training speed and memory: EXODUS vs BPTT and peers",
        sections,
        readme_text,
        figures=figures,
        tables={"steps": rows},
    )
    return {"rows": rows, "figures": figures, "notes": notes, "table": table}


def main(argv: list[str] | None = None) -> dict:
    parser = arguments.experiment_parser(EXPERIMENT, __doc__)
    parser.add_argument("--devices", default="auto", help="cpu, cuda, cpu,cuda or auto")
    parser.add_argument("--networks", default="shd_mlp,dvs_conv")
    parser.add_argument("--repeats", type=int, default=0,
                        help="timed rounds per implementation (0: 5, tiny: 2)")
    parser.add_argument(
        "--no-peers",
        dest="peers",
        action="store_false",
        help="do not try sinabs, snnTorch, SpikingJelly and Norse",
    )
    parser.add_argument(
        "--compiled-peers",
        action="store_true",
        help="also snnTorch and Norse with their per-step cell under torch.compile (compiled "
        "in each cell's warm-up round; adds ~1 min of compiling per cell)",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="measure everything in this process (faster; peak memory less isolated)",
    )
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
