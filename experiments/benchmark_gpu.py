"""GPU speed of the EXODUS ops, and of the open-neuromorphic benchmark network, in one process.

    python experiments/benchmark_gpu.py                       # on a CUDA GPU, ~1-2 minutes
    python experiments/benchmark_gpu.py --json out.json       # also write the figures
    python experiments/benchmark_gpu.py --device cpu --tiny   # smoke run of every code path

Three Markdown tables, all measured in this one process (CUDA events, median of --repeats after
warm-up):

1. The device's copy bandwidth (bytes read + written per second by ``dst.copy_(src)``): the
   ceiling of a memory-bound op.
2. One LIF layer's raw ops alone: forward, and backward without and with the α gradient, as time,
   effective bandwidth (the bytes each must move: forward reads x and writes spikes and v_mem,
   backward reads the spike gradient and v_mem and writes dL/dx) and percent of the copy ceiling.
3. The open-neuromorphic benchmark network, Linear(16384 → 16384) + LIF, batch 16, T = 500,
   float32, forward + backward, the same network (weights, dynamics: experiments/peers.py) in
   every implementation: exodus-lightning, the plain BPTT loop (our reference) and every peer
   importable here (sinabs, SpikingJelly 2 with the CUDA kernel it selects, snnTorch, Norse,
   and Norse under torch.compile). Each row first shows that it computes the same thing (spike
   mismatch and input-gradient error against a float64 reference with its surrogate), then
   time and the peak memory of one step (memory.step_peak_mb). A peer that fails gets a row
   saying why.

With --out, the tables (2 and 3) are also written there as ops.md and network.md, each with
the provenance line (device, commit, versions) below it, and the figures as result.json.
"""

from __future__ import annotations

import copy
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from exodus_lightning.ops._extension import load  # noqa: E402
from exodus_lightning.ops._library import ops as lib  # noqa: E402
from experiments import arguments, memory, peers, provenance, report  # noqa: E402
from experiments.common import relative_error  # noqa: E402

OP_SHAPES = [(32, 300, 2048), (16, 500, 16384), (1, 3000, 16384)]
TINY_OP_SHAPES = [(2, 20, 64), (1, 40, 96)]
NETWORK = dict(batch=16, time=500, features=16384)
TINY_NETWORK = dict(batch=2, time=20, features=256)
TAU_MEM = 10.0
SURROGATE = (0, [0.5, 1.0])  # SingleExponential's kernel code and parameters


class Timer:
    """Median milliseconds of a function: CUDA events on a GPU, the wall clock on a CPU."""

    def __init__(self, device: str, repeats: int, warmup: int = 3) -> None:
        self.device, self.repeats, self.warmup = device, repeats, warmup

    def __call__(self, fn: Callable[[], object]) -> float:
        for _ in range(self.warmup):
            fn()
        times = []
        for _ in range(self.repeats):
            if self.device == "cuda":
                start, stop = (torch.cuda.Event(enable_timing=True) for _ in range(2))
                start.record()
                fn()
                stop.record()
                stop.synchronize()
                times.append(start.elapsed_time(stop))
            else:
                begin = time.perf_counter()
                fn()
                times.append((time.perf_counter() - begin) * 1e3)
        return statistics.median(times)


def copy_bandwidth(device: str, timer: Timer, tiny: bool) -> float:
    """GB/s of dst.copy_(src), counting the bytes read and written."""
    numel = 2**20 if tiny else 2**28  # 1 GiB of float32
    src = torch.randn(numel, device=device)
    dst = torch.empty_like(src)
    ms = timer(lambda: dst.copy_(src))
    return 2 * src.nbytes / ms / 1e6


def op_rows(device: str, timer: Timer, shapes, dtypes, ceiling: float) -> list[dict]:
    """Forward and backward of the raw LIF ops at each shape and input dtype."""
    return [
        row
        for shape in shapes
        for dtype in dtypes
        for row in _op_rows(device, timer, shape, dtype, ceiling)
    ]


def _op_rows(device: str, timer: Timer, shape, dtype, ceiling: float) -> list[dict]:
    batch, _, features = shape
    x = (torch.randn(shape, device=device) * 0.6 + 0.35).to(dtype)
    v0 = torch.zeros(batch, features, device=device)
    alpha = torch.full((features,), math.exp(-1 / TAU_MEM), device=device)
    threshold = torch.ones(features, device=device)
    codes = (0, 0, 0, *SURROGATE)
    spikes, v_mem, v_last = lib.lif_forward(x, v0, alpha, threshold, threshold, None, *codes)
    grad = torch.randn_like(spikes)
    grad_last = torch.zeros_like(v_last)
    # Forward reads x, writes spikes and v_mem; backward reads the spike gradient and v_mem and
    # writes dL/dx (the per-neuron vectors are negligible).
    moved = x.numel() * (2 * x.element_size() + v_mem.element_size())

    def forward():
        return lib.lif_forward(x, v0, alpha, threshold, threshold, None, *codes)

    def backward(mask):
        return lib.lif_backward(
            grad, None, grad_last, v_mem, None, v0, alpha, threshold, threshold, None, *codes, mask
        )

    rows = []
    for name, fn in (
        ("forward", forward),
        ("backward", lambda: backward(0)),
        ("backward, dα", lambda: backward(1)),
    ):
        ms = timer(fn)
        gbps = moved / ms / 1e6
        rows.append(
            {
                "shape": shape,
                "dtype": str(dtype).removeprefix("torch."),
                "pass": name,
                "ms": ms,
                "GB/s": gbps,
                "% of copy": 100 * gbps / ceiling,
            }
        )
    return rows


# --- the open-neuromorphic benchmark network ------------------------------------------------


# Each row runs the same network: Linear(F → F) with the same seeded weights, then the LIF
# dynamics of experiments/peers.py (single spike, subtractive reset, α = e^(−1/τ)) in that
# implementation, on (B, T, F) input (SpikingJelly's wrapper transposes to its time-first layout).
NETWORK_IMPLEMENTATIONS = {
    "exodus-lightning": ("exodus", False),
    "BPTT loop (reference)": ("bptt", False),
    "sinabs": ("sinabs", False),
    # SpikingJelly 2 picks its CUDA kernel itself (native CUDA, else Triton, else torch); set
    # SJ_LIF_CUDA_IMPLEMENTATION=cuda|triton|torch before the run to choose.
    "SpikingJelly": ("spikingjelly", False),
    "snnTorch": ("snntorch", False),
    "Norse": ("norse", False),
    "Norse + torch.compile": ("norse", True),
}


def _network(implementation: str, features: int, device: str, compiled: bool = False):
    """(linear, step): step(x) = spikes of the LIF dynamics on linear(x), x (B, T, F)."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(features, features, device=device)
    layer = peers.lif_layer(implementation, math.exp(-1 / TAU_MEM), device)

    def step(x: torch.Tensor) -> torch.Tensor:
        return layer(linear(x))

    return linear, (torch.compile(step) if compiled else step)


def _equivalence(implementation: str, linear, step, spikes_in: torch.Tensor,
                 references: dict) -> dict:
    """Spike mismatch and input-gradient error against the float64 reference with the
    implementation's surrogate (peers.reference_layer), on the benchmark's input; references
    caches the reference per surrogate."""
    upstream = torch.randn(spikes_in.shape, generator=torch.Generator().manual_seed(1)).to(
        spikes_in.device
    )
    x = spikes_in.clone().requires_grad_()
    spikes = step(x)
    spikes.backward(upstream)
    surrogate = peers.IMPLEMENTATIONS[implementation].surrogate_name
    if surrogate not in references:
        reference_linear = copy.deepcopy(linear).double()
        reference = peers.reference_layer(implementation, math.exp(-1 / TAU_MEM))
        x64 = spikes_in.double().requires_grad_()
        spikes64 = reference(reference_linear(x64))
        spikes64.backward(upstream.double())
        references[surrogate] = (spikes64.detach(), x64.grad)
    spikes64, grad64 = references[surrogate]
    return {
        "spike mismatch": (spikes.detach().double() != spikes64).double().mean().item(),
        "input-grad error": relative_error(x.grad, grad64),
    }


def network_rows(device: str, timer: Timer, net: dict, names: list[str] | None,
                 budget_s: float = math.inf) -> list[dict]:
    """Equivalence, forward + backward time and peak memory of the benchmark network, per
    implementation; each row is printed as it is measured, and implementations not started
    within budget_s seconds get a row saying so (a stage time limit then loses nothing)."""
    start = time.perf_counter()
    references: dict = {}
    rows = []
    batch, steps, features = net["batch"], net["time"], net["features"]
    generator = torch.Generator().manual_seed(0)
    spikes_in = (torch.rand(batch, steps, features, generator=generator) < 0.05).float()
    spikes_in = spikes_in.to(device)
    for name, (implementation, compiled) in NETWORK_IMPLEMENTATIONS.items():
        if names and name not in names:
            continue
        reason = peers.unavailable(implementation)
        if reason is None and time.perf_counter() - start > budget_s:
            reason = f"skipped: the run's --budget of {budget_s:.0f} s was spent"
        if reason:
            rows.append({"implementation": name, "note": reason})
            continue
        try:
            linear, step = _network(implementation, features, device, compiled)
            row = {"implementation": name,
                   **_equivalence(implementation, linear, step, spikes_in, references)}
            row |= _time_network(linear, step, spikes_in, device, timer)
            row["note"] = peers.IMPLEMENTATIONS[implementation].surrogate_name + " surrogate"
            rows.append(row)
        except Exception as error:  # a peer's failure is a row, not the end of the run
            message = str(error).strip().splitlines()[0][:160] if str(error).strip() else ""
            rows.append(
                {"implementation": name, "note": f"failed: {type(error).__name__}: {message}"}
            )
        print(f"network row: {rows[-1]}", file=sys.stderr, flush=True)
        if device == "cuda":
            torch.cuda.empty_cache()
    ours = next((r for r in rows if r["implementation"] == "exodus-lightning" and "ms" in r), None)
    for row in rows:
        if ours and "ms" in row:
            row["time vs ours"] = row["ms"] / ours["ms"]
    return rows


def _time_network(linear, step, spikes_in, device: str, timer: Timer) -> dict:
    """Median time and peak memory of one forward + backward of a built network."""

    def train_step():
        linear.zero_grad(set_to_none=True)
        step(spikes_in).sum().backward()

    ms = timer(train_step)
    peak_mb = float("nan")
    if device == "cuda":
        linear.zero_grad(set_to_none=True)
        peak_mb = memory.step_peak_mb(train_step, device)
    return {"ms": ms, "peak MB": peak_mb}


# Event batches counted into frames, per dataset: frame shape (T, *input shape) and events per
# sample of experiments/benchmark_data.py's fabricated data (its full run), batch 32.
BINNING_CASES = {
    "SHD": ((250, 100), 5_000),
    "N-MNIST": ((100, 2, 34, 34), 4_000),
    "DVS Gesture": ((300, 2, 32, 32), 50_000),
}
TINY_BINNING_CASES = {"tiny": ((10, 2, 4, 4), 100)}
BINNING_BATCH = 32
BINNING_COLUMNS = ["dataset", "events per batch", "workers: count on CPU, ms",
                   "workers: float32 frames to device, ms", "bin_on_device: positions to device "
                   "+ count there, ms", "bin_on_device / workers (device side)"]


def event_positions(shape: tuple[int, ...], events: int, generator: torch.Generator):
    """One sample's events as flat frame indices, in time order: uniform over the frame's
    channels or pixels, their times uniform over the T bins."""
    per_bin = math.prod(shape[1:])
    bins = torch.sort(torch.randint(shape[0], (events,), generator=generator)).values
    return (bins * per_bin + torch.randint(per_bin, (events,), generator=generator)).numpy()


def binning_rows(device: str, timer: Timer, cases: dict) -> list[dict]:
    """Where a batch's events are counted into frames (data/device_binning.py): in the workers
    (count_positions per sample on one CPU core, then the dense float32 batch to the device,
    from pinned memory) or on the device (the int32 positions to it, then
    EventPositionsBatch.frames() there). The workers' counting runs in parallel with training
    on other cores; the device side is what a training step waits for."""
    from exodus_lightning.data.device_binning import EventPositions, collate_event_positions

    cpu_timer = Timer("cpu", timer.repeats, timer.warmup)
    rows = []
    for name, (shape, events) in cases.items():
        generator = torch.Generator().manual_seed(0)
        samples = [EventPositions(event_positions(shape, events, generator), shape)
                   for _ in range(BINNING_BATCH)]
        # np.asarray(EventPositions): the binning transform's counting (count_positions).
        count = cpu_timer(lambda samples=samples: [np.asarray(sample) for sample in samples])
        frames = torch.from_numpy(np.stack([np.asarray(sample) for sample in samples]))
        batch = collate_event_positions(samples)
        if device == "cuda":
            frames, batch = frames.pin_memory(), batch.pin_memory()
        dense_ms = timer(lambda frames=frames: frames.to(device, non_blocking=True))
        device_ms = timer(lambda batch=batch: batch.to(device).frames())
        rows.append({
            "dataset": name,
            "events per batch": f"{BINNING_BATCH * events:,}",
            "workers: count on CPU, ms": f"{count:.2f}",
            "workers: float32 frames to device, ms": f"{dense_ms:.3f}",
            "bin_on_device: positions to device + count there, ms": f"{device_ms:.3f}",
            "bin_on_device / workers (device side)": f"{device_ms / dense_ms:.2f}×",
        })
    return rows


NETWORK_COLUMNS = ["implementation", "spike mismatch", "input-grad error", "ms", "peak MB",
                   "time vs ours", "note"]
OP_COLUMNS = ["shape", "dtype", "pass", "ms", "GB/s", "% of copy"]
README_TABLES = {"ops": tuple(OP_COLUMNS), "binning": tuple(BINNING_COLUMNS),
                 "network": tuple(NETWORK_COLUMNS)}


def main(argv: list[str] | None = None) -> dict:
    parser = arguments.parser("python experiments/benchmark_gpu.py", __doc__)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--tiny", action="store_true", help="small shapes: a smoke run")
    parser.add_argument("--skip-network", action="store_true")
    parser.add_argument("--budget", type=float, default=math.inf,
                        help="seconds after which no further network row is started")
    parser.add_argument("--only", nargs="*", help="network rows to run (names as printed)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--out", type=Path, help="also write the tables and figures here")
    options = parser.parse_args(argv)

    device = options.device
    if device == "cuda" and not torch.cuda.is_available():
        parser.exit(
            2,
            "benchmark_gpu: no CUDA GPU is visible; use --device cpu --tiny for a "
            "smoke run of the code paths\n",
        )
    load(device)
    timer = Timer(device, options.repeats)
    header = (torch.cuda.get_device_name(0) if device == "cuda" else "CPU") + (
        f" | torch {torch.__version__} | CUDA {torch.version.cuda}"
    )
    print(f"# GPU benchmark ({header}){' — tiny smoke run' if options.tiny else ''}\n")

    ceiling = copy_bandwidth(device, timer, options.tiny)
    print(f"Copy bandwidth (read + write): {ceiling:.0f} GB/s\n")

    shapes = TINY_OP_SHAPES if options.tiny else OP_SHAPES
    op = op_rows(device, timer, shapes, [torch.float32, torch.bfloat16], ceiling)
    print("## One LIF layer, raw ops\n")
    print(report.markdown_table(op, OP_COLUMNS))

    binning = binning_rows(device, timer, TINY_BINNING_CASES if options.tiny else BINNING_CASES)
    print(f"## Events counted into frames, batch {BINNING_BATCH}\n")
    print(report.markdown_table(binning, BINNING_COLUMNS))

    net = []
    if not options.skip_network:
        spec = TINY_NETWORK if options.tiny else NETWORK
        # A network step takes 10-1000x longer than an op: fewer repeats keep the run short.
        net_timer = Timer(device, max(3, options.repeats // 3), warmup=2)
        net = network_rows(device, net_timer, spec, options.only, options.budget)
        print(
            f"## Linear({spec['features']} → {spec['features']}) + LIF, batch "
            f"{spec['batch']}, T = {spec['time']}, float32, forward + backward\n"
        )
        print(report.markdown_table(net, NETWORK_COLUMNS))
    result = {"device": header, "copy GB/s": ceiling, "ops": op, "binning": binning,
              "network": net}
    if options.json:
        options.json.write_text(json.dumps(result, indent=1, default=str))
    if options.out:
        options.out.mkdir(parents=True, exist_ok=True)
        line = provenance.line(provenance.collect(device))
        line = f"{report.SMOKE_TABLE_MARK} {line}" if options.tiny else line
        for stem, rows, columns in (("ops", op, OP_COLUMNS),
                                    ("binning", binning, BINNING_COLUMNS),
                                    ("network", net, NETWORK_COLUMNS)):
            if rows:
                text = report.markdown_table(rows, columns) + "\n" + line + "\n"
                (options.out / f"{stem}.md").write_text(text)
        (options.out / "result.json").write_text(json.dumps(result, indent=1, default=str))
    return result


if __name__ == "__main__":
    main()
