"""The peak-memory method reads what a step allocates: ≥ 100 MB for 100 MB, ~0 for nothing."""

from __future__ import annotations

import pytest
import torch

from experiments import isolated, memory

pytestmark = pytest.mark.skipif(
    not memory.cpu_peak_supported(), reason="reads Linux's /proc/self/status"
)

HUNDRED_MB = 100 * memory.MB


def _peak_of(kind: str) -> float:
    """Run in a fresh process: the peak of one step of the given kind, after a warm-up."""
    torch.ones(8).sum()  # load torch's CPU kernels before measuring
    if kind == "freed before":
        # 100 MB allocated and freed: glibc may keep it, and it must not hide the next step.
        torch.ones(HUNDRED_MB // 4).sum()
    steps = {
        "nothing": lambda: None,
        "100 MB": lambda: torch.ones(HUNDRED_MB // 4).sum(),
        "freed before": lambda: torch.ones(HUNDRED_MB // 4).sum(),
        "small": lambda: torch.ones(1000).sum(),
    }
    return memory.step_peak_mb(steps[kind])


@pytest.mark.parametrize("keep_freed_memory", [False, True], ids=["default", "reuse"])
@pytest.mark.parametrize("kind", ["100 MB", "freed before"])
def test_a_step_that_allocates_100_mb_reads_at_least_100_mb(kind, keep_freed_memory):
    peak = isolated.run(_peak_of, kind=kind, keep_freed_memory=keep_freed_memory, threads=2)
    # 100 MiB allocated. Linux batches each thread's resident-page count (up to 64 pages per
    # thread reach the total late), so the reading may fall short by a fraction of a MiB;
    # it still reads at least 100 MB = 10^8 bytes.
    assert peak * memory.MB >= 100e6
    assert 99 <= peak < 110


@pytest.mark.parametrize("kind", ["nothing", "small"])
def test_a_step_that_allocates_nothing_reads_about_zero(kind):
    peak = isolated.run(_peak_of, kind=kind, threads=2)
    assert 0 <= peak < 1


def test_saved_for_backward_counts_each_storage_once():
    x = torch.randn(1024, 256, requires_grad=True)  # 1 MiB of float32
    # x * x saves x twice (one storage), exp saves its 1 MiB output: 2 MiB in all.
    saved = memory.saved_for_backward_mb(lambda: (x * x).exp())
    assert saved == pytest.approx(2.0)


def test_isolated_run_reports_the_childs_error():
    with pytest.raises(RuntimeError, match="unknown kind|KeyError"):
        isolated.run(_peak_of, kind="unknown kind")
