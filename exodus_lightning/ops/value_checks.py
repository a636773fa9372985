"""Checks of argument values that raise the same error in eager mode and under torch.compile.

A check is a function ``problem(name, *values) -> str | None`` of Python numbers, tensors or
None that says what is wrong with the values (None: nothing), registered with
:func:`value_check` and the error it raises (ValueError or a subclass). :func:`check_values`
raises that error with the problem's message:

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

from ._compiler import assume_constant_result

Value = int | float | Tensor | None
Problem = Callable[..., "str | None"]

# Registered checks by key, with the error they raise: the compiled graph names a check by its
# key (an op takes no functions), and the ops' implementations look it up here.
_PROBLEMS: dict[str, tuple[Problem, type[ValueError]]] = {}
_KEYS: dict[Problem, str] = {}


def value_check(error: type[ValueError] = ValueError) -> Callable[[Problem], Problem]:
    """Register ``problem(name, *values) -> str | None`` for :func:`check_values`; a problem
    raises ``error`` (ValueError or a subclass)."""

    def register(problem: Problem) -> Problem:
        key = f"{problem.__module__}.{problem.__qualname__}"
        _PROBLEMS[key] = (problem, error)
        _KEYS[problem] = key
        return problem

    return register


@assume_constant_result
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
    """Raise the problem's error if ``problem(name, *values)`` finds one, eager or compiled.

    Skipped (no host sync) when a tensor among the values is on a device whose values are not
    checked (see :func:`checking`).
    """
    if not all(checking(value) for value in values):
        return
    key = _KEYS[problem]
    if not torch.compiler.is_compiling():
        _raise_if(key, problem(name, *values))
    elif any(isinstance(value, Tensor) for value in values):
        torch.ops.exodus_lightning.check_values(key, name, [_as_tensor(v) for v in values])
    else:
        message = problem(name, *values)
        if message is not None:
            torch.ops.exodus_lightning.raise_value_error(key, message)


def _raise_if(key: str, message: str | None) -> None:
    if message is not None:
        _problem, error = _PROBLEMS[key]
        raise error(message)


def _as_tensor(value: Value) -> Tensor | None:
    """A number as a CPU tensor (a constant of the graph: no device copy), for the op."""
    if value is None or isinstance(value, Tensor):
        return value
    return torch.tensor(float(value), dtype=torch.float64)


# Explicit schemas: torch 2.4-2.6 cannot infer one from postponed (string) annotations.
@torch.library.custom_op("exodus_lightning::check_values", mutates_args=(),
                         schema="(str key, str name, Tensor?[] values) -> ()")
def _check_values_op(key: str, name: str, values: list[Tensor | None]) -> None:
    """Run the registered check ``key`` on the values; raise its error on a problem."""
    problem, _error = _PROBLEMS[key]
    _raise_if(key, problem(name, *(v.detach() if v is not None else None for v in values)))


@_check_values_op.register_fake
def _check_values_fake(key: str, name: str, values: list[Tensor | None]) -> None:
    return None


@torch.library.custom_op("exodus_lightning::raise_value_error", mutates_args=(),
                         schema="(str key, str message) -> ()")
def _raise_value_error_op(key: str, message: str) -> None:
    """Raise check ``key``'s error when the compiled graph runs (it failed while tracing)."""
    _raise_if(key, message)


@_raise_value_error_op.register_fake
def _raise_value_error_fake(key: str, message: str) -> None:
    return None


# They return nothing: without this, a compiled graph could drop them as dead code. Dynamo's
# graph calls the packets, AOTAutograd's the overloads.
for _op in (torch.ops.exodus_lightning.check_values, torch.ops.exodus_lightning.raise_value_error):
    torch.fx.node.has_side_effect(_op)
    torch.fx.node.has_side_effect(_op.default)
