"""Train-loader throughput of each DataModule, cold and cached, vs. a matching SNN on CPU.

Writes fabricated datasets of realistic per-sample size (exodus_lightning.data.fabricate),
then for every DataModule times one epoch of its train loader:
  cold    no cache: tonic parses every file, events are binned every time
  cached  second epoch with `cache_dir` set (the first epoch, which fills the cache, is untimed)
with 0 and 2 workers, and times forward + backward of a plain-PyTorch
(features -> 128 LIF -> classes, mean-over-time readout) network on one batch of that shape.
Prints a Markdown table of samples per second (best of a few runs: the machine may be shared).

    python experiments/benchmark_data.py --quick
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

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
    write_shd(root, num_train=num_samples, num_test=10, spikes_per_sample=5000)
    write_ssc(root, num_train=num_samples, num_valid=10, num_test=10, spikes_per_sample=5000)


def make_module(
    name: str, root: Path, cache_dir: Path | None, workers: int, batch_size: int, num_samples: int
):
    common = {
        "data_dir": root,
        "download": False,
        "batch_size": batch_size,
        "num_workers": workers,
        "cache_dir": cache_dir,
        "pin_memory": False,
    }
    if name == "NMNIST":
        return NMNISTDataModule(**common)
    if name == "DVSGesture":
        return DVSGestureDataModule(**common)
    if name == "SHD":
        return SHDDataModule(**common)
    if name == "SSC":
        return SSCDataModule(**common)
    common.pop("cache_dir")
    common.pop("data_dir")
    return RandmanDataModule(**common, num_train_samples=num_samples)


def epoch_samples_per_second(module, repeats: int) -> float:
    """Best of `repeats` epochs of the train loader (the machine may be shared: best = least
    disturbed); each epoch includes starting its workers."""
    best = 0.0
    for _ in range(repeats):
        loader = module.train_dataloader()
        start = time.perf_counter()
        count = sum(len(targets) for _, targets in loader)
        best = max(best, count / (time.perf_counter() - start))
    return best


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


def main() -> None:
    parser = arguments.parser("python experiments/benchmark_data.py", __doc__)
    parser.add_argument("--quick", action="store_true", help="300 samples per dataset")
    parser.add_argument("--num-samples", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--repeats", type=int, default=2, help="epochs timed; the best is shown")
    parser.add_argument(
        "--datasets", nargs="+", default=["NMNIST", "DVSGesture", "SHD", "SSC", "Randman"]
    )
    parser.add_argument("--work-dir", type=Path, default=None, help="default: a temp folder")
    args = parser.parse_args()
    num_samples = 300 if args.quick else args.num_samples
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="exodus-data-bench-"))
    root = work_dir / "data"
    torch.set_num_threads(max(1, torch.get_num_threads()))
    start = time.perf_counter()
    fabricate(root, num_samples, args.quick)
    print(
        f"fabricated {num_samples} samples per dataset in {time.perf_counter() - start:.0f} s "
        f"under {work_dir}; torch threads: {torch.get_num_threads()}\n"
    )

    rows = []
    for name in args.datasets:
        results = {}
        for mode in ("cold", "cached"):
            for workers in args.workers:
                if name == "Randman" and mode == "cached":
                    results[(mode, workers)] = float("nan")  # generated in memory: nothing to cache
                    continue
                cache_dir = work_dir / f"cache-{name}-{workers}" if mode == "cached" else None
                module = make_module(name, root, cache_dir, workers, args.batch_size, num_samples)
                module.setup("fit")
                if mode == "cached":
                    epoch_samples_per_second(module, repeats=1)  # fills the cache
                results[(mode, workers)] = epoch_samples_per_second(module, args.repeats)
                if cache_dir is not None:
                    shutil.rmtree(cache_dir)
        snn = snn_samples_per_second(
            module.input_shape, module.num_time_steps, module.num_classes, args.batch_size
        )
        best = np.nanmax(list(results.values()))
        row = {
            "dataset": name,
            "sample shape (T, features)": (
                f"({module.num_time_steps}, {', '.join(map(str, module.input_shape))})"
            ),
        }
        for (mode, workers), samples_per_second in results.items():
            cell = "-" if np.isnan(samples_per_second) else f"{samples_per_second:.0f}"
            row[f"{mode} w={workers}"] = cell
        row["SNN fwd+bwd"] = f"{snn:.0f}"
        row["loader / SNN (best)"] = f"{best / snn:.1f}x"
        rows.append(row)
        print(f"{name}: best loader {best:.0f} samples/s, SNN {snn:.0f}", file=sys.stderr)
    print(report.markdown_table(rows), end="")
    if args.work_dir is None:
        shutil.rmtree(work_dir)


if __name__ == "__main__":
    main()
