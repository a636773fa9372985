"""Claim 3 (speed): a full training step with EXODUS vs BPTT, and vs peer libraries if installed.

Measures the median wall-clock time and the memory of one training step (forward,
cross-entropy on the time-averaged output, backward, Adam step) of the paper's two networks:
the SHD MLP (700 inputs → 128 → 128 LIF → 20, exodus_lightning.models.FeedForwardSNN) and a DVS
conv net ((2, 32, 32) input, conv/LIF/pool blocks, models.ConvSNN), over a sweep of T, for
EXODUS (fused kernels) and BPTT (the same network with backend="reference"). Peers are timed
in the same run when installed, and skipped with a note otherwise: sinabs runs both networks
with its layers in place of ours (exodus_lightning.convert.to_sinabs: same parameters and
dynamics); snnTorch and SpikingJelly run their own SHD MLPs (their neuron conventions differ,
see PEERS.md: timings only). CPU always; CUDA too when present. Memory is reported twice: the
tensors autograd saves for the backward pass (exact, via saved_tensors_hooks) and the peak
growth during the timed steps (CPU: peak RSS; CUDA: max_memory_allocated), each measurement in
its own process.
Writes speed.csv/.md, speed.png (time vs T) and memory.png (saved-for-backward MB vs T).

    python -m experiments.training_speed                   # CPU sweep: ~5 minutes on 2 cores
    python -m experiments.training_speed --devices cuda    # GPU sweep (larger batches)
    python -m experiments.training_speed --tiny            # seconds
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time as clock
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from experiments import arguments, report

EXPERIMENT = "training_speed"
OURS = ("exodus", "bptt")
PEERS = ("sinabs", "snntorch", "spikingjelly")
PEER_MODULES = {"sinabs": "sinabs", "snntorch": "snntorch", "spikingjelly": "spikingjelly"}
TAU_MEM = 20.0


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
# Networks


def build(network: str, implementation: str, input_shape: tuple[int, ...]):
    """(model, forward, reset) for a network in one implementation.

    forward: (batch, time, *input_shape) -> (batch, time, classes); reset: zero neuron states.
    sinabs runs our network with its layers in place of ours (convert.to_sinabs: same
    architecture, parameters and dynamics); snnTorch and SpikingJelly have their own MLPs.
    """
    classes = CLASSES[network]
    if implementation in (*OURS, "sinabs"):
        from exodus_lightning import models
        from exodus_lightning import nn as enn

        backend = "reference" if implementation == "bptt" else "extension"
        if network == "shd_mlp":
            model = models.FeedForwardSNN(
                input_shape,
                classes,
                hidden_sizes=(128, 128),
                tau_mem=TAU_MEM,
                readout="exp_leak",
                readout_tau_mem=TAU_MEM,
                backend=backend,
            )
        else:
            model = models.ConvSNN(
                input_shape,
                classes,
                channels=(16, 32, 32),
                tau_mem=TAU_MEM,
                readout="exp_leak",
                readout_tau_mem=TAU_MEM,
                backend=backend,
            )
        if implementation != "sinabs":
            return model, model, lambda: enn.reset_states(model)
        import sinabs

        from exodus_lightning.convert import to_sinabs

        theirs = to_sinabs(model)
        return theirs, theirs, lambda: sinabs.reset_states(theirs)
    if network != "shd_mlp":
        raise NotImplementedError(f"{implementation}: only the SHD MLP is implemented")
    if implementation == "snntorch":
        return _snntorch_mlp(input_shape[0], classes)
    return _spikingjelly_mlp(input_shape[0], classes)


def _snntorch_mlp(inputs: int, classes: int):
    """snnTorch Leaky neurons stepped in a Python loop over time (its usual pattern)."""
    import snntorch

    beta = math.exp(-1.0 / TAU_MEM)
    linears = torch.nn.ModuleList(
        [torch.nn.Linear(inputs, 128), torch.nn.Linear(128, 128), torch.nn.Linear(128, classes)]
    )
    neurons = torch.nn.ModuleList([snntorch.Leaky(beta=beta) for _ in linears])
    model = torch.nn.ModuleList([linears, neurons])

    def forward(x: torch.Tensor) -> torch.Tensor:
        membranes = [neuron.init_leaky() for neuron in neurons]
        outputs = []
        for x_t in x.unbind(1):
            for index, (linear, neuron) in enumerate(zip(linears, neurons)):
                x_t, membranes[index] = neuron(linear(x_t), membranes[index])
            outputs.append(x_t)
        return torch.stack(outputs, 1)

    return model, forward, lambda: None


def _spikingjelly_mlp(inputs: int, classes: int):
    """SpikingJelly multi-step LIF nodes (subtractive reset, reset not detached), (T, B, F)."""
    from spikingjelly.activation_based import functional, neuron

    layers = []
    for fan_in, fan_out in ((inputs, 128), (128, 128), (128, classes)):
        layers += [
            torch.nn.Linear(fan_in, fan_out),
            neuron.LIFNode(tau=TAU_MEM, v_reset=None, step_mode="m"),
        ]
    model = torch.nn.Sequential(*layers)

    def forward(x: torch.Tensor) -> torch.Tensor:
        return model(x.transpose(0, 1)).transpose(0, 1)

    return model, forward, lambda: functional.reset_net(model)


def available(implementation: str) -> str | None:
    """None if the implementation can run here, else why not."""
    if implementation in OURS:
        return None
    import importlib.util

    if importlib.util.find_spec(PEER_MODULES[implementation]) is None:
        return f"{implementation} is not installed (pip install {implementation})"
    return None


# ---------------------------------------------------------------------------------------------
# Measurement


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak_rss() -> int:
    """Reset the peak RSS of this process (Linux clear_refs 5); return the current RSS, bytes."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    return _rss_kb("VmRSS") * 1024


def saved_for_backward_mb(forward, reset, x: torch.Tensor, labels: torch.Tensor) -> float:
    """MB of the distinct tensors autograd keeps for the backward pass of one forward.

    Exact and allocator-independent (peak RSS is neither: glibc keeps freed blocks resident):
    this is the memory a BPTT graph over time steps costs and EXODUS's saved membrane avoids.
    """
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        reset()
        F.cross_entropy(forward(x).mean(1), labels)
    return sum(storages.values()) / 2**20


def measure(
    network: str, implementation: str, device: str, batch: int, time: int, repeats: int, tiny: bool
) -> dict:
    """Median seconds and peak extra MB of one full training step; see the module docstring."""
    torch.manual_seed(0)
    input_shape = TINY_SHAPES[network] if tiny else SHAPES[network]
    model, forward, reset = build(network, implementation, input_shape)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = (torch.rand(batch, time, *input_shape, device=device) < 0.05).float()
    labels = torch.randint(0, CLASSES[network], (batch,), device=device)

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        reset()
        loss = F.cross_entropy(forward(x).mean(1), labels)
        loss.backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()
        return loss.item()

    step()  # warm-up: kernel build/load, allocator, Adam state
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _reset_peak_rss()
    seconds = []
    for _ in range(repeats):
        start = clock.perf_counter()
        step()
        seconds.append(clock.perf_counter() - start)
    peak = (
        torch.cuda.max_memory_allocated() if device == "cuda" else _rss_kb("VmHWM") * 1024
    ) - base
    return {
        "seconds": statistics.median(seconds),
        "peak_mb": max(peak, 0) / 2**20,
        "saved_mb": saved_for_backward_mb(forward, reset, x, labels),
    }


def measure_isolated(spec: dict, threads: int) -> dict:
    """measure(**spec) in a fresh Python process, so peak memory is this measurement's alone."""
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    result = subprocess.run(
        [sys.executable, "-m", f"experiments.{EXPERIMENT}", "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[1],
    )
    if result.returncode != 0:
        raise RuntimeError(f"measurement {spec} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


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
    }
    for axis, (network, device) in zip(axes[0], panels):
        positive = True
        for implementation in (*OURS, *PEERS):
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
                    styles[implementation],
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
    """Sweep T for each (device, network, implementation); write the table and plots."""
    devices = (
        (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
        if options.devices == "auto"
        else options.devices.split(",")
    )
    check_devices(devices)
    out = arguments.setup(options)
    networks = options.networks.split(",")
    implementations = [*OURS, *PEERS] if options.peers else list(OURS)
    repeats = options.repeats or (2 if options.tiny else 5)
    notes = []
    runnable = []
    for implementation in implementations:
        reason = available(implementation)
        if reason is None:
            runnable.append(implementation)
        else:
            notes.append(f"- skipped {implementation}: {reason}")
    for implementation in ("snntorch", "spikingjelly"):
        if implementation in runnable and "dvs_conv" in networks:
            notes.append(f"- {implementation}: only the SHD MLP is implemented here")
    jobs = []
    for device in devices:
        for network in networks:
            sweep = TINY[network] if options.tiny else SWEEPS[(device, network)]
            for time in sweep.times:
                for implementation in runnable:
                    if network == "dvs_conv" and implementation in ("snntorch", "spikingjelly"):
                        continue
                    jobs.append(
                        {
                            "network": network,
                            "implementation": implementation,
                            "device": device,
                            "batch": sweep.batch,
                            "time": time,
                            "repeats": repeats,
                            "tiny": options.tiny,
                        }
                    )
    rows = []
    for spec in report.progress(jobs, EXPERIMENT):
        result = measure(**spec) if options.in_process else measure_isolated(spec, options.threads)
        rows.append(
            {key: spec[key] for key in ("network", "device", "batch", "time", "implementation")}
            | {
                "ms_per_step": result["seconds"] * 1e3,
                "saved_mb": result["saved_mb"],
                "peak_mb": result["peak_mb"],
            }
        )
    for row in rows:
        bptt = next(
            r
            for r in rows
            if r["implementation"] == "bptt"
            and all(r[k] == row[k] for k in ("network", "device", "batch", "time"))
        )
        row["speed-up vs bptt"] = bptt["ms_per_step"] / row["ms_per_step"]
        row["saved vs bptt"] = row["saved_mb"] / bptt["saved_mb"]
        row["peak vs bptt"] = row["peak_mb"] / bptt["peak_mb"] if bptt["peak_mb"] > 0 else math.nan
    table = report.write_table(rows, out / "speed")
    figures = [
        plot(rows, "ms_per_step", "ms per training step", out / "speed.png"),
        plot(rows, "saved_mb", "MB saved for backward", out / "memory.png"),
    ]
    if options.tiny:
        sweeps = {n: asdict(TINY[n]) for n in networks}
    else:
        sweeps = {f"{d}/{n}": asdict(SWEEPS[(d, n)]) for d in devices for n in networks}
    gpu = f", {torch.cuda.get_device_name(0)}" if "cuda" in devices else ""
    where = "in one process" if options.in_process else "one process per measurement"
    settings = (
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads{gpu}; "
        f"median of {repeats} steps after one warm-up step; {where}; sweeps {sweeps}.\n"
    )
    legend = (
        "saved_mb: tensors autograd keeps for the backward pass (exact); peak_mb: peak "
        "memory growth during the timed steps (CPU: resident set size, which depends on "
        "what the allocator kept from the warm-up step; CUDA: max_memory_allocated).\n"
    )
    sections = [("Settings", settings), ("Results", table + "\n" + legend)]
    if notes:
        sections.append(("Notes", "\n".join(notes) + "\n"))
    report.report(
        EXPERIMENT,
        options,
        "Training speed and memory: EXODUS vs BPTT (and peers)",
        sections,
        table + "\n" + "\n".join(notes),
        figures=figures,
        tables={"steps": rows},
    )
    return {"rows": rows, "figures": figures, "notes": notes}


def main(argv: list[str] | None = None) -> dict | None:
    parser = arguments.experiment_parser(EXPERIMENT, __doc__)
    parser.add_argument("--devices", default="auto", help="cpu, cuda, cpu,cuda or auto")
    parser.add_argument("--networks", default="shd_mlp,dvs_conv")
    parser.add_argument("--repeats", type=int, default=0, help="timed steps (0: 5, tiny: 2)")
    parser.add_argument(
        "--no-peers",
        dest="peers",
        action="store_false",
        help="do not try snnTorch, SpikingJelly and sinabs",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="measure in this process (faster; peak memory less accurate)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.child:
        if options.threads:
            torch.set_num_threads(options.threads)
        print(json.dumps(measure(**json.loads(options.child))))
        return None
    return run(options)


if __name__ == "__main__":
    main()
