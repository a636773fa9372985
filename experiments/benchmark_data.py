"""Train-loader throughput of each DataModule, by path, vs. a matching SNN on CPU.

Writes fabricated datasets of realistic per-sample size (exodus_lightning.data.fabricate),
then for every DataModule times epochs of its train loader on each path:
  tonic     no cache: tonic parses every file, events are binned every time
  cache     tonic's disk cache (`cache_dir`), second epoch (the first, filling it, is untimed)
  stream    a copy of frames made once by `exodus-lightning prepare` (litdata chunks), read
            with `streaming` (preparing it is untimed; its time is printed)
  stream, as loaded  the same, without the cast of the integer counts to float32 frames that
            on_after_batch_transfer does on the device: what the CPU has to deliver when
            the device is a GPU (on a CPU device the cast is the CPU's work, in "stream")
  events    a copy of events (`prepare --store events`): binned per sample in the workers
  events+device  the same copy with `bin_on_device`: the workers send each event's bin and the
            counting into frames runs on --device, on whole batches, after the transfer
with 0 and 2 workers: samples per second over an epoch (the best after the first: workers
persist between epochs, as in training) and the latency of the first batch (which includes
starting the workers). Every batch is moved to --device (pinned when it is a GPU) and passed
through the DataModule's on_after_batch_transfer, as Lightning does: a row times the batches a
model would receive. On a CPU device freed memory is kept for reuse (ops.keep_freed_memory), as
the CLI does for CPU runs. It also times forward + backward of a plain-PyTorch
(features -> 128 LIF -> classes, mean-over-time readout) network on one batch of that shape, so
the table says whether loading or training is the bottleneck. Prints a Markdown table; writes
the docs' table (samples per second of each path, one cell per --workers value) as
<--out>/loaders.md.

    python experiments/benchmark_data.py --quick
"""

from __future__ import annotations

import gc
import importlib.util
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file, too

from exodus_lightning.data import (  # noqa: E402
    DVSGestureDataModule,
    NMNISTDataModule,
    RandmanDataModule,
    SHDDataModule,
    SSCDataModule,
)
from exodus_lightning.data.fabricate import (  # noqa: E402
    write_dvs_gesture,
    write_nmnist,
    write_shd,
    write_ssc,
)
from experiments import arguments, report  # noqa: E402


def fabricate(root: Path, num_samples: int, quick: bool) -> None:
    """Datasets of ~num_samples training samples each, with realistic events per sample."""
    # N-MNIST: ~4000 events in 300 ms. SHD/SSC: ~5000 spikes per word. DVS Gesture: real
    # recordings hold 10^5 - 10^6 events over ~6 s; we write 2 s (the binned window is 1.5 s)
    # and at most ~440 recordings (the real training set has 1077), to keep the files < 1 GB.
    write_nmnist(root, num_train_per_class=num_samples // 10, num_test_per_class=1, num_events=4000)
    write_dvs_gesture(
        root,
        num_train_users=max(1, min(num_samples, 440) // 22),
        num_test_users=1,
        num_events=10_000 if quick else 50_000,
        duration_ms=2000,
    )
    # Every split holds every class (the DataModules refuse one that lacks classes).
    write_shd(root, num_train=max(num_samples, 20), num_test=20, spikes_per_sample=5000)
    write_ssc(root, num_train=max(num_samples, 35), num_valid=35, num_test=35,
              spikes_per_sample=5000)


PATHS = ("tonic", "cache", "stream", "stream, as loaded", "events", "events+device")
# The docs' table (experiments/tables.py copies <out>/loaders.md into it): its column of
# each path.
README_COLUMNS = {
    "tonic": "tonic",
    "cache": "tonic disk cache",
    "stream": "stream: frames",
    "stream, as loaded": "stream: frames as loaded (no cast)",
    "events": "stream: events, binned in workers",
    "events+device": "stream: events, bin_on_device",
}
README_TABLES: dict[str, tuple[str, ...]] = {
    "loaders": ("dataset", "workers", *README_COLUMNS.values(), "SNN fwd+bwd (CPU)"),
}
README_NAMES = {"SHD": "SHD", "SSC": "SSC", "NMNIST": "N-MNIST", "DVSGesture": "DVS Gesture"}


def significant(value: str) -> str:
    """A rate rounded to 3 significant digits, with thousands separators: 40327 -> 40,300."""
    return f"{float(f'{float(value):.3g}'):,.0f}"


def readme_rows(
    rows: list[dict[str, str]], workers: list[int], quick: bool
) -> list[dict[str, str]]:
    """Samples per second by path (3 significant digits), one row per recorded dataset, one
    value per number of workers in each cell ("w0 / w2")."""
    table = []
    for name, label in README_NAMES.items():
        mine = {row["path"]: row for row in rows if row["dataset"] == name}
        if not mine:
            continue
        first = next(iter(mine.values()))
        shape = first["sample (T, features)"].strip("()").split(", ")
        size = f"{shape[1]} channels" if len(shape) == 2 else " × ".join(shape[1:])
        events = ""
        if name == "DVSGesture":  # events per recording: see fabricate()
            events = f"; {'10⁴' if quick else '5 × 10⁴'} events per recording"
        row = {"dataset": f"{label} (T = {shape[0]}, {size}{events})",
               "workers": " / ".join(map(str, workers)),
               "SNN fwd+bwd (CPU)": f"{float(first['SNN fwd+bwd samples/s']):,.0f}"}  # fmt: skip
        for path, column in README_COLUMNS.items():
            rates = [significant(mine[path][f"w={w} samples/s"]) for w in workers if path in mine]
            row[column] = " / ".join(rates)
        table.append(row)
    return table


def make_module(
    name: str,
    root: Path,
    cache_dir: Path | None,
    workers: int,
    batch_size: int,
    num_samples: int,
    streaming: Path | None = None,
    bin_on_device: bool = False,
    pin_memory: bool = False,
):
    common = {
        "data_dir": root,
        "download": False,
        "batch_size": batch_size,
        "num_workers": workers,
        "cache_dir": cache_dir,
        "pin_memory": pin_memory,
    }
    if streaming is not None:
        # The number of workers asked for, whatever the copy stores (its default is 0 for
        # frames), so that the table shows both.
        common.update(streaming=str(streaming), streaming_workers=workers)
    if bin_on_device:
        common["bin_on_device"] = True
    if name == "NMNIST":
        return NMNISTDataModule(**common)
    if name == "DVSGesture":
        return DVSGestureDataModule(**common)
    if name == "SHD":
        return SHDDataModule(**common)
    if name == "SSC":
        return SSCDataModule(**common)
    for name in ("cache_dir", "data_dir", "streaming", "streaming_workers", "bin_on_device"):
        common.pop(name, None)
    return RandmanDataModule(**common, num_train_samples=num_samples)


def time_epochs(
    module, repeats: int, device: torch.device, cast: bool = True
) -> tuple[float, float]:
    """(samples/s, first-batch latency in s) of the train loader over `repeats` epochs of one
    loader, whose workers persist between epochs as in training: the rate is the best epoch
    after the first (the machine may be shared: best = least disturbed; with repeats=1, the
    first), the latency that of the first batch of the first epoch, starting the workers
    included. Every batch is moved to `device` and (with `cast`) made float32 frames there."""

    def served(batch) -> int:
        batch = move_data_to_device(batch, device)
        inputs, targets = module.on_after_batch_transfer(batch, 0) if cast else batch
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return len(targets)

    loader = module.train_dataloader()
    rates, latency = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        batches = iter(loader)
        count = served(next(batches))
        latency = time.perf_counter() - start if latency is None else latency
        count += sum(served(batch) for batch in batches)
        rates.append(count / (time.perf_counter() - start))
    del batches, loader
    # Stops the workers now: workers forked later would otherwise inherit the iterator and
    # fail to shut it down ("can only test a child process").
    gc.collect()
    return max(rates[1:] or rates), latency


def remove(folder: Path) -> None:
    """Delete a benchmark's folder if it is there (a path that made none leaves nothing)."""
    if folder.exists():
        shutil.rmtree(folder)


def prepare(
    name: str, root: Path, output: Path, batch_size: int, num_samples: int, store: str = "auto"
) -> float:
    """Write the prepared copy of `name` with its default settings, storing `store` ("auto":
    frames, as no augmentation is set; "events"); seconds taken."""
    from exodus_lightning.data.prepare_copy import prepare_copy

    start = time.perf_counter()
    module = make_module(name, root, None, 0, batch_size, num_samples)
    prepare_copy(module, str(output), num_workers=0, store=store, progress=False)
    return time.perf_counter() - start


class Spike(torch.autograd.Function):
    """Heaviside forward, fast-sigmoid surrogate gradient 1 / (1 + 10 |v|)^2 backward."""

    @staticmethod
    def forward(ctx, v: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(v)
        return (v > 0).to(v.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (v,) = ctx.saved_tensors
        return grad / (1 + 10 * v.abs()) ** 2


def snn_samples_per_second(
    input_shape: tuple[int, ...], num_time_steps: int, num_classes: int, batch_size: int
) -> float:
    """Forward + backward of features -> 128 LIF (beta 0.9, threshold 1) -> classes, best of 5."""
    features = int(np.prod(input_shape))
    hidden = torch.nn.Linear(features, 128)
    readout = torch.nn.Linear(128, num_classes)
    inputs = (torch.rand(batch_size, num_time_steps, features) < 0.05).float()
    targets = torch.randint(num_classes, (batch_size,))

    def step() -> None:
        currents = hidden(inputs)
        v = torch.zeros(batch_size, 128)
        spikes = []
        for t in range(num_time_steps):
            v = 0.9 * v + currents[:, t]
            s = Spike.apply(v - 1.0)
            v = v - s
            spikes.append(s)
        logits = readout(torch.stack(spikes, dim=1)).mean(dim=1)
        torch.nn.functional.cross_entropy(logits, targets).backward()

    step()  # warm-up
    timings = []
    for _ in range(5):
        start = time.perf_counter()
        step()
        timings.append(time.perf_counter() - start)
    return batch_size / min(timings)


def main(argv: list[str] | None = None) -> list[dict[str, str]]:
    """Run the benchmark (options: see --help); returns the table's rows."""
    parser = arguments.parser("python experiments/benchmark_data.py", __doc__)
    parser.add_argument("--quick", action="store_true", help="300 samples per dataset")
    parser.add_argument("--num-samples", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument(
        "--repeats", type=int, default=3,
        help="epochs timed per loader; shown: the best after the first (which starts workers)",
    )  # fmt: skip
    parser.add_argument(
        "--datasets", nargs="+", default=["NMNIST", "DVSGesture", "SHD", "SSC", "Randman"]
    )
    parser.add_argument("--work-dir", type=Path, default=None, help="default: a temp folder")
    parser.add_argument(
        "--device", default=None, help="where batches go (default: cuda if available, else cpu)"
    )
    parser.add_argument("--out", type=Path, default=Path("results") / "benchmark_data",
                        help="folder of the docs' table loaders.md")
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    num_samples = 300 if args.quick else args.num_samples
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="exodus-data-bench-"))
    root = work_dir / "data"
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if device.type == "cpu":
        from exodus_lightning.ops import keep_freed_memory
        from experiments import provenance

        if keep_freed_memory():
            provenance.note_keep_freed_memory()
    start = time.perf_counter()
    fabricate(root, num_samples, args.quick)
    print(
        f"fabricated {num_samples} samples per dataset in {time.perf_counter() - start:.0f} s "
        f"under {work_dir}; torch threads: {torch.get_num_threads()}; batches to {device}\n"
    )

    rows = []
    for name in args.datasets:
        paths = ("tonic",) if name == "Randman" else PATHS  # generated in memory
        if "stream" in paths and importlib.util.find_spec("litdata") is None:
            print("litdata is not installed: no stream rows (pip install litdata)", file=sys.stderr)
            paths = paths[:2]
        copies = {"stream": work_dir / f"stream-{name}", "events": work_dir / f"events-{name}"}
        copies["stream, as loaded"] = copies["stream"]
        copies["events+device"] = copies["events"]
        if "stream" in paths:
            for store, folder in (("auto", copies["stream"]), ("events", copies["events"])):
                seconds = prepare(name, root, folder, args.batch_size, num_samples, store)
                print(f"{name}: {folder.name} prepared in {seconds:.1f} s", file=sys.stderr)
        best = 0.0
        for path in paths:
            row = {"dataset": name, "path": path}
            for workers in args.workers:
                cache_dir = work_dir / f"cache-{name}-{workers}" if path == "cache" else None
                module = make_module(
                    name, root, cache_dir, workers, args.batch_size, num_samples,
                    streaming=copies.get(path), bin_on_device=path == "events+device",
                    pin_memory=device.type == "cuda",
                )  # fmt: skip
                module.setup("fit")
                if path == "cache":
                    time_epochs(module, 1, device)  # fills the cache
                rate, latency = time_epochs(module, args.repeats, device,
                                            cast=path != "stream, as loaded")
                best = max(best, rate)
                row[f"w={workers} samples/s"] = f"{rate:.0f}"
                row[f"w={workers} first batch ms"] = f"{1000 * latency:.0f}"
                del module
                if cache_dir is not None:
                    remove(cache_dir)
            rows.append(row)
        for folder in set(copies.values()):
            remove(folder)
        module = make_module(name, root, None, 0, args.batch_size, num_samples)
        snn = snn_samples_per_second(
            module.input_shape, module.num_time_steps, module.num_classes, args.batch_size
        )
        for row in rows:
            if row["dataset"] == name:
                row["sample (T, features)"] = (
                    f"({module.num_time_steps}, {', '.join(map(str, module.input_shape))})"
                )
                row["SNN fwd+bwd samples/s"] = f"{snn:.0f}"
        print(f"{name}: best loader {best:.0f} samples/s, SNN {snn:.0f}", file=sys.stderr)
    print(report.markdown_table(rows), end="")
    args.out.mkdir(parents=True, exist_ok=True)
    report.write_readme_table(readme_rows(rows, args.workers, args.quick), args.out, "loaders",
                              README_TABLES["loaders"], device=device.type)
    if args.work_dir is None:
        remove(work_dir)
    return rows


if __name__ == "__main__":
    main()
