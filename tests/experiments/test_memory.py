"""The peak-memory method reads what a step's tensors need: 100 MB for 100 MB, ~0 for nothing,
and a loop of small tensors its live bytes, not the C library's heap."""

from __future__ import annotations

import pytest
import torch

from experiments import isolated, memory

HUNDRED_MB = 100 * memory.MB


def _fragmenting_loop() -> list[torch.Tensor]:
    """A Python loop like the peers' time loops: 300 kept 1 KiB tensors, each allocated above a
    slightly larger ~100 KiB temporary's hole, which the next temporary cannot reuse."""
    kept = []
    for step in range(300):
        temporary = torch.ones(25_000 + 64 * step)
        kept.append(torch.ones(256))
        del temporary
    return kept


# Live at the peak: the 300 kept tensors and the last (largest) temporary.
FRAGMENTING_LOOP_MB = (300 * 256 + 25_000 + 64 * 299) * 4 / memory.MB


def _peak_of(kind: str) -> float:
    """The peak of one step of the given kind (run in a child process, see _peaks_of)."""
    torch.ones(8).sum()  # load torch's CPU kernels before measuring
    if kind == "freed before":
        # 100 MB allocated and freed: glibc may keep it, and it must not hide the next step.
        torch.ones(HUNDRED_MB // 4).sum()
    steps = {
        "nothing": lambda: None,
        "100 MB": lambda: torch.ones(HUNDRED_MB // 4).sum(),
        "freed before": lambda: torch.ones(HUNDRED_MB // 4).sum(),
        "small": lambda: torch.ones(1000).sum(),
        "fragmenting loop": _fragmenting_loop,
    }
    return memory.step_peak_mb(steps[kind])


KINDS = ("nothing", "small", "100 MB", "freed before", "fragmenting loop")


def _peaks_of(kinds: list[str]) -> dict[str, float]:
    """Run in a fresh process: the peak of each kind of step, one after the other (a fresh
    process per allocator mode: keep_freed_memory changes glibc's settings for the process)."""
    return {kind: _peak_of(kind) for kind in kinds}


@pytest.fixture(scope="module", params=[False, True], ids=["default", "reuse"])
def peaks(request) -> dict[str, float]:
    return isolated.run(_peaks_of, kinds=list(KINDS), keep_freed_memory=request.param,
                        threads=1)


@pytest.mark.parametrize("kind", ["100 MB", "freed before"])
def test_a_step_that_allocates_100_mb_reads_at_least_100_mb(peaks, kind):
    assert peaks[kind] == pytest.approx(100, abs=0.01)


@pytest.mark.parametrize("kind", ["nothing", "small"])
def test_a_step_that_allocates_nothing_reads_about_zero(peaks, kind):
    assert 0 <= peaks[kind] < 1


def test_a_loop_of_small_tensors_reads_its_live_bytes_not_the_heap_it_leaves(peaks):
    """glibc keeps the temporaries' holes resident (~20 MB here): an RSS high-water mark would
    read that, for < 0.5 MB of tensors live at once."""
    assert peaks["fragmenting loop"] == pytest.approx(FRAGMENTING_LOOP_MB, rel=0.01)


def test_saved_for_backward_counts_each_storage_once():
    x = torch.randn(1024, 256, requires_grad=True)  # 1 MiB of float32
    # x * x saves x twice (one storage), exp saves its 1 MiB output: 2 MiB in all.
    saved = memory.saved_for_backward_mb(lambda: (x * x).exp())
    assert saved == pytest.approx(2.0)


def test_isolated_run_reports_the_childs_error():
    with pytest.raises(RuntimeError, match="unknown kind|KeyError"):
        isolated.run(_peak_of, kind="unknown kind")
