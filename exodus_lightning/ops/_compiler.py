"""torch.compile's constant-result mark, set without importing torch._dynamo.

``torch.compiler.assume_constant_result`` imports torch._dynamo (~2.5 s on 2 cores, half of
``import exodus_lightning.nn``) only to set one attribute on the function. Setting it here keeps
the import cheap for code that never compiles; tests/ops/test_compiled_checks.py checks that it
is still the mark torch sets, and the fullgraph tests that Dynamo honours it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)


def assume_constant_result(fn: F) -> F:
    """Mark fn as ``torch.compiler.assume_constant_result`` does: torch.compile calls it once
    while tracing and takes its result as a constant of the graph."""
    fn._dynamo_marked_constant = True  # type: ignore[attr-defined]
    return fn
