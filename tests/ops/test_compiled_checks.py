"""Value checks under torch.compile: the compiled function raises the error eager raises, and
adds no check (no host sync) for tensors on devices that are checked only on request."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch._dynamo.testing

from exodus_lightning import ops
from exodus_lightning.ops import _arguments as args
from exodus_lightning.ops import _compiler

X = torch.full((2, 4, 3), 2.0)

# (alpha, threshold) that must be refused, and the error's start.
BAD = {
    "alpha=1.5": (1.5, 1.0, "alpha must lie in [0, 1]"),
    "threshold=-1": (0.9, -1.0, "threshold must be > 0"),
    "threshold=0": (0.9, 0.0, "threshold must be > 0"),
}


def error_of(fn, *call) -> ValueError | None:
    try:
        fn(*call)
    except ValueError as error:
        return error
    return None


def lif_spikes(x, alpha, threshold, min_v_mem=None):
    return ops.lif(x, alpha, threshold, min_v_mem=min_v_mem, backend="extension")[0]


@pytest.mark.parametrize("kind", ["number", "tensor"])
@pytest.mark.parametrize("case", BAD.values(), ids=BAD.keys())
def test_compiled_raises_what_eager_raises(case, kind):
    alpha, threshold, message = case
    if kind == "tensor":
        alpha, threshold = torch.tensor(alpha), torch.full((3,), threshold, requires_grad=True)
    torch._dynamo.reset()
    compiled = torch.compile(lif_spikes, fullgraph=True, backend="aot_eager")
    eager_error = error_of(lif_spikes, X, alpha, threshold)
    compiled_error = error_of(compiled, X, alpha, threshold)
    assert eager_error is not None and str(eager_error).startswith(message)
    assert compiled_error is not None and str(compiled_error) == str(eager_error)


@pytest.mark.slow
def test_inductor_keeps_the_checks_of_changing_numbers_and_tensors():
    """Numbers that change between calls compile a graph each (specialised); a parameter
    tensor changes in place: both are still checked when the compiled code runs."""
    torch._dynamo.reset()
    compiled = torch.compile(lif_spikes, fullgraph=True)
    for alpha, threshold in [(0.9, 1.0), (0.8, 1.5), (0.7, 2.0)]:
        torch.testing.assert_close(compiled(X, alpha, threshold), lif_spikes(X, alpha, threshold))
    for alpha, threshold, message in BAD.values():
        with pytest.raises(ValueError, match=f"^{message[:12]}"):
            compiled(X, alpha, threshold)
    with pytest.raises(ValueError, match="threshold must be > min_v_mem"):
        compiled(X, 0.9, 0.5, 0.6)
    threshold = torch.ones(3, requires_grad=True)
    compiled(X, 0.9, threshold).sum().backward()
    with torch.no_grad():
        threshold[1] = 0.0
    with pytest.raises(ValueError, match="threshold must be > 0, got minimum 0.0"):
        compiled(X, 0.9, threshold)


def graph_targets(fn, *call) -> list[str]:
    """The functions that the compiled graph of fn(*call) calls."""
    targets = []

    def capture(gm, example_inputs):
        targets.extend(str(node.target) for node in gm.graph.nodes if node.op == "call_function")
        return gm.forward

    torch._dynamo.reset()
    torch.compile(fn, fullgraph=True, backend=capture)(*call)
    return targets


def alpha_checked(alpha):
    args.check_alpha(alpha)
    return alpha * 2


def test_compiled_checks_cost_nothing_where_eager_ones_do_not_run(monkeypatch):
    """Valid numbers are checked while tracing (no op in the graph); CPU tensors by an op; tensors
    on other devices (here meta) only with EXODUS_LIGHTNING_CHECK_VALUES=1, as in eager mode."""
    check, fail = "exodus_lightning.check_values", "exodus_lightning.raise_value_error"
    monkeypatch.delenv("EXODUS_LIGHTNING_CHECK_VALUES", raising=False)
    assert not any(
        t.startswith((check, fail))
        for t in graph_targets(lambda x: alpha_checked(0.5) * x, torch.ones(2))
    )
    assert check in graph_targets(alpha_checked, torch.tensor(0.5))
    meta = torch.tensor(0.5, device="meta")
    assert check not in graph_targets(alpha_checked, meta)
    monkeypatch.setenv("EXODUS_LIGHTNING_CHECK_VALUES", "1")
    assert check in graph_targets(alpha_checked, meta)


def test_changing_tensor_values_reuse_one_graph_and_stay_checked():
    """What docs/ops.md advises for values that change under torch.compile: as 0-dim tensors
    they are no guard of the graph (one graph for more values than the recompile limit, where
    a Python number compiles one per value), and a bad one is still refused inside it."""
    counter = torch._dynamo.testing.CompileCounterWithBackend("aot_eager")
    torch._dynamo.reset()
    compiled = torch.compile(lif_spikes, fullgraph=True, backend=counter)
    values = [(0.95 - 0.05 * i, 0.5 + 0.25 * i) for i in range(10)]
    assert len(values) > torch._dynamo.config.recompile_limit
    for alpha, threshold in values:
        alpha, threshold = torch.tensor(alpha), torch.tensor(threshold)
        torch.testing.assert_close(compiled(X, alpha, threshold), lif_spikes(X, alpha, threshold))
    with pytest.raises(ValueError, match="^threshold must be > 0"):
        compiled(X, torch.tensor(0.9), torch.tensor(-1.0))
    with pytest.raises(ValueError, match=r"^alpha must lie in \[0, 1\]"):
        compiled(X, torch.tensor(1.5), torch.tensor(1.0))
    assert counter.frame_count == 1


def test_our_constant_result_mark_is_the_one_torch_sets():
    """ops._compiler sets the mark without importing torch._dynamo: it must stay torch's."""

    def ours():
        return True

    def torchs():
        return True

    _compiler.assume_constant_result(ours)
    torch.compiler.assume_constant_result(torchs)
    assert vars(ours) == vars(torchs) and vars(ours)


def test_importing_the_layers_does_not_import_dynamo():
    """Dynamo's import is ~2.5 s of CPU; code that never compiles should not pay it."""
    code = ("import sys, exodus_lightning.nn, exodus_lightning.models, exodus_lightning.ops; "
            "print(sorted(m for m in sys.modules if m.startswith('torch._dynamo')))")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
