"""Ways to compute a DelayedLinear layer on CPU: equal outputs, time per call.

Gaussian delays (training): the (out, in, D) kernel w · K in one conv1d over the left-padded
input (what nn.DelayedLinear runs), one matmul per lag on the shifted input, or an unfolded
(batch, time, in, D) window contracted with einsum. Rounded delays (evaluation): conv1d with the
one-hot kernel (what the layer runs), one sparse matmul per lag, or gathering x[t − d[o, i]]
for every synapse (a chunk of outputs at a time). Every variant is checked against the
layer's own result first, then timed (median of alternating runs after a warm-up).

    python -m experiments.delay_speed                 # SHD size: (32, 250, 700) -> 256, D = 25
    python -m experiments.delay_speed --threads 1     # one core
    python -m experiments.delay_speed --tiny          # seconds, tiny shapes (tests)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from exodus_lightning.nn.delay import delayed_linear, gaussian_delay_kernel
from experiments import arguments, report, timing

EXPERIMENT = "delay_speed"
# The table of docs/delays.md (experiments/tables.py copies it there).
README_TABLES: dict[str, tuple[str, ...]] = {
    "speed": ("delays", "method", "fwd ms", "fwd+bwd ms"),
}
SIGMA = 3.0
GATHER_CHUNK = 8  # outputs per gather: (batch, time, 8, in) floats at a time


def soft_shifts(x: Tensor, weight: Tensor, delays: Tensor, max_delay: int) -> Tensor:
    """Σ_k shift_k(x) @ (w · K[:, :, k])ᵀ: one matmul per lag."""
    kernel = weight[..., None] * gaussian_delay_kernel(delays, SIGMA, max_delay)
    padded = F.pad(x, (0, 0, max_delay - 1, 0))
    steps = x.shape[1]
    y = x.new_zeros(x.shape[0], steps, weight.shape[0])
    for lag in range(max_delay):
        start = max_delay - 1 - lag
        y = y + padded[:, start : start + steps] @ kernel[:, :, lag].t()
    return y


def soft_unfold(x: Tensor, weight: Tensor, delays: Tensor, max_delay: int) -> Tensor:
    """Windows (batch, time, in, D) of the padded input, contracted with the kernel."""
    kernel = weight[..., None] * gaussian_delay_kernel(delays, SIGMA, max_delay)
    windows = F.pad(x, (0, 0, max_delay - 1, 0)).unfold(1, max_delay, 1)
    return torch.einsum("btil,oil->bto", windows, kernel.flip(-1))


def rounded_sparse(x: Tensor, weight: Tensor, delays: Tensor, max_delay: int) -> Tensor:
    """Σ_k shift_k(x) @ S_kᵀ with S_k the sparse (CSR) weights of the synapses at lag k."""
    lags = delays.round().long()
    padded = F.pad(x, (0, 0, max_delay - 1, 0))
    batch, steps, inputs = x.shape
    y = x.new_zeros(batch * steps, weight.shape[0])
    for lag in range(max_delay):
        sparse = (weight * (lags == lag)).to_sparse_csr()  # (out, in)
        start = max_delay - 1 - lag
        shifted = padded[:, start : start + steps].reshape(batch * steps, inputs)
        y = y + torch.sparse.mm(sparse, shifted.t()).t()
    return y.view(batch, steps, -1)


def rounded_gather(x: Tensor, weight: Tensor, delays: Tensor, max_delay: int) -> Tensor:
    """y[b, t, o] = Σ_i w[o, i] · x[b, t − d[o, i], i] by indexing, GATHER_CHUNK outputs at
    a time."""
    lags = delays.round().long()
    padded = F.pad(x, (0, 0, max_delay - 1, 0))
    batch, steps, inputs = x.shape
    times = torch.arange(steps)[:, None, None] + (max_delay - 1)
    channels = torch.arange(inputs)
    parts = []
    for first in range(0, weight.shape[0], GATHER_CHUNK):
        chunk = slice(first, first + GATHER_CHUNK)
        picked = padded[:, times - lags[chunk], channels]  # (batch, time, chunk, in)
        parts.append(torch.einsum("btoi,oi->bto", picked, weight[chunk]))
    return torch.cat(parts, dim=-1)


def variants() -> list[tuple[str, bool, Callable[..., Tensor]]]:
    """(name, rounded, function(x, weight, delays, max_delay)); the layer's own come first."""
    return [
        ("conv1d with the Gaussian kernel (the layer)", False,
         lambda x, w, d, D: delayed_linear(x, w, d, SIGMA, D)),
        ("one matmul per lag", False, soft_shifts),
        ("unfold + einsum", False, soft_unfold),
        ("conv1d with the one-hot kernel (the layer)", True,
         lambda x, w, d, D: delayed_linear(x, w, d, SIGMA, D, rounded=True)),
        ("one sparse matmul per lag", True, rounded_sparse),
        ("gather x[t - d] per synapse", True, rounded_gather),
    ]


def median_times(functions: Sequence[Callable[[], Any]], repeats: int) -> list[float]:
    """Median seconds of each function, in interleaved rounds after one warm-up round
    (timing.interleaved)."""
    times = timing.interleaved(dict(enumerate(functions)), rounds=repeats)
    return [times[index].median for index in range(len(functions))]


def run(shape: tuple[int, int, int, int, int], repeats: int, seed: int) -> list[dict[str, Any]]:
    batch, steps, inputs, outputs, max_delay = shape
    generator = torch.Generator().manual_seed(seed)
    x = (torch.rand(batch, steps, inputs, generator=generator) < 0.05).float()
    weight = torch.randn(outputs, inputs, generator=generator) / inputs**0.5
    delays = torch.rand(outputs, inputs, generator=generator) * (max_delay - 1)

    def forward(function: Callable[..., Tensor]) -> Callable[[], Tensor]:
        def call() -> Tensor:
            with torch.no_grad():
                return function(x, weight, delays, max_delay)
        return call

    def forward_backward(function: Callable[..., Tensor]) -> Callable[[], None]:
        def call() -> None:
            w = weight.clone().requires_grad_()
            d = delays.clone().requires_grad_()
            function(x, w, d, max_delay).sum().backward()
        return call

    rows = []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse.*")  # CSR is "beta" in torch
        # The layer's own result for each kind of delay (the first variant of each kind).
        references: dict[bool, Tensor] = {}
        for _, rounded, function in variants():
            references.setdefault(rounded, forward(function)())
        fwd = median_times([forward(f) for _, _, f in variants()], repeats)
        both = median_times([forward_backward(f) for _, _, f in variants()], repeats)
        for (name, rounded, function), seconds, seconds_both in zip(variants(), fwd, both):
            reference = references[rounded]
            error = (forward(function)() - reference).abs().max() / reference.abs().max()
            rows.append({
                "delays": "rounded" if rounded else f"Gaussian, σ = {SIGMA:g}",
                "method": name,
                "max diff (rel.)": float(error),
                "fwd ms": 1e3 * seconds,
                "fwd+bwd ms": 1e3 * seconds_both,
            })
    return rows


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = arguments.experiment_parser(EXPERIMENT, __doc__)
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args(argv)
    out = arguments.setup(options)
    shape = (2, 12, 9, 5, 4) if options.tiny else (32, 250, 700, 256, 25)
    rows = run(shape, 1 if options.tiny else options.repeats, options.seed)
    table = report.write_readme_table(rows, out, "speed", README_TABLES["speed"],
                                      tiny=options.tiny)
    report.report(
        EXPERIMENT,
        options,
        "DelayedLinear on CPU: conv1d vs the alternatives",
        [
            (
                "Setup",
                f"(batch, time, in, out, max_delay) = {shape}, 5 % input spikes, float32, torch "
                f"{torch.__version__}, {torch.get_num_threads()} threads; median of "
                f"{options.repeats} alternating runs after a warm-up. fwd+bwd: gradients for "
                "the weights and (Gaussian) the delays.\n",
            ),
            ("Results", table),
        ],
        table,
        tables={"speed": rows},
    )
    return {"rows": rows}


if __name__ == "__main__":
    main()
