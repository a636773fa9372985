"""Checks of argument values that raise the same error in eager mode and under torch.compile.

A check is a function ``problem(name, *values) -> str | None`` of Python numbers, tensors or
None that says what is wrong with the values (None: nothing), registered with
:func:`value_check`. :func:`check_values` raises ``ValueError(problem)``:

- in eager mode, at once;
- under torch.compile, when the compiled code runs. Tensor values exist only then, so the graph
  calls the op ``exodus_lightning::check_values``, whose implementation (opaque to Dynamo) runs
  the same check. Numbers are constants of the traced graph: they are checked while tracing, and
  a failing check puts ``exodus_lightning::raise_value_error`` into the graph (raising while
  tracing would end a fullgraph compile in a Dynamo error instead of ours). Both ops return
  nothing and are registered as having side effects, so the compiled graph keeps them.

Reading a tensor's values waits for its device. CPU tensors are always checked; tensors on other
devices only with ``EXODUS_LIGHTNING_CHECK_VALUES=1`` (a debugging switch: one host sync per
check), in eager and compiled code alike, so by default a CUDA graph has no check in it.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
import torch.fx.node
from torch import Tensor

Value = int | float | Tensor | None
Problem = Callable[..., "str | None"]

# Registered checks by key: the compiled graph names a check by its key (an op takes no
# functions), and the op's implementation looks it up here.
_PROBLEMS: dict[str, Problem] = {}
_KEYS: dict[Problem, str] = {}


def value_check(problem: Problem) -> Problem:
    """Register ``problem(name, *values) -> str | None`` for :func:`check_values`."""
    key = f"{problem.__module__}.{problem.__qualname__}"
    _PROBLEMS[key] = problem
    _KEYS[problem] = key
    return problem


@torch.compiler.assume_constant_result
def _device_values_requested() -> bool:
    return os.environ.get("EXODUS_LIGHTNING_CHECK_VALUES", "0") == "1"


def checking(value: Value) -> bool:
    """Whether values like this one are checked: numbers and CPU tensors always; tensors on
    other devices only with EXODUS_LIGHTNING_CHECK_VALUES=1 (reading them waits for the device;
    compiled code reads the switch when it is compiled)."""
    if not isinstance(value, Tensor) or value.device.type == "cpu":
        return True
    return _device_values_requested()


def check_values(problem: Problem, name: str, *values: Value) -> None:
    """Raise ValueError(problem(name, *values)) if there is a problem, eager or compiled.

    Skipped (no host sync) when a tensor among the values is on a device whose values are not
    checked (see :func:`checking`).
    """
    if not all(checking(value) for value in values):
        return
    if not torch.compiler.is_compiling():
        message = problem(name, *values)
        if message is not None:
            raise ValueError(message)
    elif any(isinstance(value, Tensor) for value in values):
        torch.ops.exodus_lightning.check_values(
            _KEYS[problem], name, [_as_tensor(value) for value in values]
        )
    else:
        message = problem(name, *values)
        if message is not None:
            torch.ops.exodus_lightning.raise_value_error(message)


def _as_tensor(value: Value) -> Tensor | None:
    """A number as a CPU tensor (a constant of the graph: no device copy), for the op."""
    if value is None or isinstance(value, Tensor):
        return value
    return torch.tensor(float(value), dtype=torch.float64)


@torch.library.custom_op("exodus_lightning::check_values", mutates_args=())
def _check_values_op(key: str, name: str, values: list[Tensor | None]) -> None:
    """Run the registered check ``key`` on the values; raise ValueError on a problem."""
    message = _PROBLEMS[key](name, *(v.detach() if v is not None else None for v in values))
    if message is not None:
        raise ValueError(message)


@_check_values_op.register_fake
def _check_values_fake(key: str, name: str, values: list[Tensor | None]) -> None:
    return None


@torch.library.custom_op("exodus_lightning::raise_value_error", mutates_args=())
def _raise_value_error_op(message: str) -> None:
    """Raise ValueError(message) when the compiled graph runs (a check failed while tracing)."""
    raise ValueError(message)


@_raise_value_error_op.register_fake
def _raise_value_error_fake(message: str) -> None:
    return None


# They return nothing: without this, a compiled graph could drop them as dead code. Dynamo's
# graph calls the packets, AOTAutograd's the overloads.
for _op in (torch.ops.exodus_lightning.check_values, torch.ops.exodus_lightning.raise_value_error):
    torch.fx.node.has_side_effect(_op)
    torch.fx.node.has_side_effect(_op.default)
