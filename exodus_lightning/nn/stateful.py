"""Base class of layers whose neurons keep state (v_mem, i_syn) across forward calls, as sinabs'.

A state is a tensor of shape (batch, *features), a buffer under its own name, so it is in
``state_dict`` like sinabs' and follows ``.to()``/``.double()``. Before the first call it is
empty (shape (0,)); the first call creates it as zeros. Later calls continue the dynamics
(streaming inference, truncated BPTT), with sinabs' rules for a new input shape:

- another feature shape: every state restarts from zeros;
- only another batch size: each state is resampled, ``new[i] = old[randint(old_batch)]``
  (sinabs' ``handle_state_batch_size_mismatch``, same random draws); a class with
  ``batch_change = "zeros"`` (the recurrent layers, as sinabs') restarts from zeros instead;
  after a call with batch 0 every layer restarts from zeros (sinabs fails there).

Between calls a state still carries its autograd graph: a backward pass through the second call
reaches the first one, until ``detach_states()``, ``zero_grad()`` or ``reset_states()`` cuts it.
Resetting replaces the tensor instead of zeroing it in place, so a pending backward pass that
saved the old one still works.
"""

from __future__ import annotations

import copy
import warnings
from collections import deque
from collections.abc import Callable, Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from exodus_lightning.ops import state_dtype
from exodus_lightning.ops._arguments import caller_outside_the_libraries

_EMPTY = torch.Size([0])


class StatefulLayer(nn.Module):
    """A layer with named states that persist across forward calls (sinabs' StatefulLayer)."""

    batch_change: ClassVar[str] = "resample"

    def __init__(self, state_names: Sequence[str]) -> None:
        super().__init__()
        self.state_names = tuple(state_names)
        for name in self.state_names:
            self.register_buffer(name, torch.zeros(0))

    def _keep_exact(self, name: str, value: object) -> None:
        """Remember the setting ``name`` in float64 if it was given as Python numbers.

        Such a setting is stored in float32 like the parameters (torch's default dtype), which
        drops digits a float64 layer needs. ``_apply`` (behind ``.double()``, ``.to()``) sets a
        setting that still holds its float32 rounding from the remembered numbers, so the
        float64 layer computes with the number given, as sinabs' plain Python floats do. A
        tensor given keeps its own dtype: nothing to remember.
        """
        exact = self.__dict__.setdefault("_exact_settings", {})
        exact.pop(name, None)
        if isinstance(value, bool) or not isinstance(value, (int, float, list, tuple)):
            return
        try:
            exact[name] = torch.tensor(value, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            pass  # not numbers: the constructor's own checks reject it

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> StatefulLayer:
        exact = self.__dict__.get("_exact_settings", {})
        unchanged = [name for name, value in exact.items()
                     if _holds_rounding(getattr(self, name, None), value)]
        module = super()._apply(fn, recurse)
        with torch.no_grad():
            for name in unchanged:
                setting = getattr(self, name)
                if setting.is_floating_point() and not setting.is_meta:
                    setting.copy_(exact[name].to(setting.dtype))
        return module

    def _states(self) -> list[Tensor]:
        return [getattr(self, name) for name in self.state_names]

    @property
    def shape(self) -> torch.Size | None:
        """Shape of the states (batch, *features), None before they exist."""
        return self._states()[0].shape if self.is_state_initialised() else None

    @property
    def does_spike(self) -> bool:
        """Whether the layer emits spikes (sinabs' ``does_spike``); the spiking layers say True."""
        return False

    @property
    def last_output(self) -> Tensor | None:
        """The last forward call's output as (batch, time, *features), with its graph (a
        Squeeze layer's unfolded); None before the first call."""
        return self.__dict__.get("_last_output")

    @property
    def firing_rate(self) -> Tensor:
        """Mean output of the last forward call (spikes per neuron and step for spiking
        layers; sinabs reports it for ExpLeak too), with its graph."""
        output = self.last_output
        if output is None:
            raise AttributeError(f"{type(self).__name__}.firing_rate exists after a forward call")
        return output.mean()

    def is_state_initialised(self) -> bool:
        """True once every state has been created (no state is empty)."""
        return all(state.shape != _EMPTY for state in self._states())

    def state_has_shape(self, shape: Sequence[int]) -> bool:
        """True if every state has this shape."""
        return all(state.shape == torch.Size(shape) for state in self._states())

    def has_trailing_dimension(self, trailing_dim: Sequence[int]) -> bool:
        """True if every state has these feature dimensions (after the batch axis)."""
        return all(state.shape[1:] == torch.Size(trailing_dim) for state in self._states())

    def init_state_with_shape(
        self,
        shape: Sequence[int],
        randomize: bool = False,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        """Create every state with shape (batch, *features): zeros, or uniform with randomize
        (see ``reset_states``). Device and dtype default to those of the current states."""
        shape = tuple(int(n) for n in shape)
        if len(shape) < 1 or any(n < 1 for n in shape):
            raise ValueError(f"shape must be (batch, *features) with positive sizes, got {shape}")
        for name, state in zip(self.state_names, self._states()):
            setattr(self, name, torch.zeros(shape, device=device or state.device,
                                            dtype=dtype or state.dtype))
        self.reset_states(randomize=randomize)

    def reset_states(
        self,
        randomize: bool = False,
        value_ranges: dict[str, tuple[float, float]] | None = None,
    ) -> None:
        """Set every state to zero, or with randomize to uniform values in
        ``value_ranges[name]`` (default [0, 1)), and cut its autograd graph.

        Does nothing before the states exist (as sinabs). Each state becomes a new tensor, so
        a pending backward pass that saved the old one still works.
        """
        if not self.is_state_initialised():
            return
        for name, state in zip(self.state_names, self._states()):
            if randomize:
                low, high = (value_ranges or {}).get(name, (0.0, 1.0))
                new = torch.empty_like(state, requires_grad=False).uniform_()
                new = new * (high - low) + low
            else:
                new = torch.zeros_like(state, requires_grad=False)
            setattr(self, name, new)

    def detach_states(self) -> None:
        """Keep the state values but cut their autograd graph (truncated BPTT)."""
        for name, state in zip(self.state_names, self._states()):
            setattr(self, name, state.detach())

    def zero_grad(self, set_to_none: bool = False) -> None:
        """Zero the parameter gradients (to zeros by default, as sinabs; None with
        set_to_none=True) and detach the states, as sinabs does."""
        super().zero_grad(set_to_none)
        self.detach_states()

    def handle_state_batch_size_mismatch(self, new_batch_size: int) -> None:
        """Resample every state to new_batch_size rows drawn at random from the old batch."""
        for name, state in zip(self.state_names, self._states()):
            # Drawn on the CPU and in state order, as sinabs does, so seeded runs agree.
            rows = torch.randint(low=0, high=state.shape[0], size=(new_batch_size,))
            setattr(self, name, torch.index_select(state, 0, rows.to(state.device)))

    def prepare_states(self, x: Tensor) -> None:
        """Make every state fit input x of shape (batch, time, *features).

        Empty states, states of another feature shape, or states of an empty batch become
        zeros; a new batch size is handled as ``batch_change`` says. States on another device
        or of another dtype are converted, keeping values and graph.
        """
        batch, features = x.shape[0], tuple(x.shape[2:])
        dtype = state_dtype(x)
        self._warn_if_the_states_graph_was_freed()
        # After a call with batch 0 there is no sample to resample from (sinabs crashes in
        # randint): the layer starts afresh, as a new layer would.
        if (not self.is_state_initialised() or not self.has_trailing_dimension(features)
                or self._states()[0].shape[0] == 0
                or (self.batch_change == "zeros" and not self.state_has_shape((batch,
                                                                               *features)))):
            for name in self.state_names:
                setattr(self, name, x.new_zeros((batch, *features), dtype=dtype))
            return
        if not self.state_has_shape((batch, *features)):
            self.handle_state_batch_size_mismatch(batch)
        for name, state in zip(self.state_names, self._states()):
            if state.dtype != dtype or state.device != x.device:
                setattr(self, name, state.to(device=x.device, dtype=dtype))

    def _warn_if_the_states_graph_was_freed(self) -> None:
        """Warn (once per layer) when a state carries the graph of an earlier call that a
        backward pass has already gone through and freed: a backward pass through this call
        would then fail with PyTorch's "Trying to backward through the graph a second time"."""
        if (self.__dict__.get("_warned_freed_graph") or not torch.is_grad_enabled()
                or torch.compiler.is_compiling()):
            return
        roots = [(name, state.grad_fn) for name, state in zip(self.state_names, self._states())
                 if state.grad_fn is not None]
        freed = _freed_graph_of(roots)
        if freed is None:
            return
        self._warned_freed_graph = True
        warnings.warn(
            f"{type(self).__name__}: its state {freed} still carries the autograd "
            "graph of an earlier forward call, which a backward pass has already gone through "
            "and freed, so a backward pass through this call will fail ('Trying to backward "
            "through the graph a second time'). Cut the states' graph between training steps "
            "with exodus_lightning.nn.reset_states(model), detach_states(model) (keeps the "
            "values: truncated BPTT) or zero_grad(model) (optimizer.zero_grad() and a "
            "container's own zero_grad() leave the states of the layers inside as they are); "
            "or call backward(retain_graph=True) to go through both calls.",
            stacklevel=caller_outside_the_libraries(),
        )

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        # A saved state may have any shape (sinabs can only load states of the current shape):
        # it replaces ours. A checkpoint without states (saved before states were buffers)
        # leaves them as they are.
        loaded = {name: state_dict.pop(prefix + name) for name in self.state_names
                  if prefix + name in state_dict}
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        for name in self.state_names:
            if prefix + name in missing_keys:
                missing_keys.remove(prefix + name)
        for name, value in loaded.items():
            current = getattr(self, name)
            dtype = current.dtype if value.is_floating_point() else None
            with torch.no_grad():
                setattr(self, name, value.detach().to(device=current.device,
                                                      dtype=dtype).clone())

    def __deepcopy__(self, memo: dict) -> StatefulLayer:
        # A state inside an autograd graph cannot be deep-copied: the copy gets its value only.
        new = self.__class__.__new__(self.__class__)
        memo[id(self)] = new
        attributes = dict(self.__dict__)
        attributes["_buffers"] = {
            name: (value.detach() if name in self.state_names and value is not None else value)
            for name, value in self._buffers.items()
        }
        attributes.pop("_last_output", None)
        new.__setstate__(copy.deepcopy(attributes, memo))
        return new


def _holds_rounding(setting: Tensor | None, exact: Tensor) -> bool:
    """Whether the setting still holds ``exact`` rounded to its dtype (nothing has set it)."""
    return (isinstance(setting, Tensor) and setting.is_floating_point() and not setting.is_meta
            and setting.shape == exact.shape
            and torch.equal(setting.detach().cpu(), exact.to(setting.dtype)))


# Graph nodes _freed_graph_of looks at, at most: the first node that saved a tensor is at most a
# few nodes behind a state (a reshape, the reference loop's add/sub, ExpLeak's clip), and the
# walk runs at every call whose states carry a graph (streaming, truncated BPTT).
_NODES_TO_VISIT = 16


def _freed_graph_of(roots: list[tuple[str, torch.autograd.graph.Node]]) -> str | None:
    """The name of the first state whose graph a backward pass has freed, else None.

    Walks the graph breadth-first from the states' nodes, past nodes that saved no tensor
    (views, adds) and nodes whose saved tensors are still there (a clip the loss did not reach:
    its backward never ran), until a node whose saved tensors were released, or
    ``_NODES_TO_VISIT`` nodes.
    """
    queue = deque(roots)
    seen: set[torch.autograd.graph.Node] = set()
    while queue and len(seen) < _NODES_TO_VISIT:
        name, node = queue.popleft()
        if node in seen:
            continue
        seen.add(node)
        if _saved_values_freed(node):
            return name
        queue.extend((name, nxt) for nxt, _ in node.next_functions if nxt is not None)
    return None


_SAVED_NAMES: dict[type, tuple[str, ...]] = {}


def _saved_values_freed(node: torch.autograd.graph.Node) -> bool:
    """Whether a backward pass has released what the graph node saved (retain_graph=False).

    PyTorch answers reading a released saved tensor with the error backward would raise; a node
    that saved no tensor cannot tell, and counts as not freed.
    """
    kind = type(node)
    names = _SAVED_NAMES.get(kind)
    if names is None:
        # A custom op's node has saved_tensors; PyTorch's own nodes one _saved_<name> per
        # value (sizes and scalars stay readable after the release, tensors do not).
        names = ("saved_tensors",) if hasattr(kind, "saved_tensors") else tuple(
            name for name in dir(kind) if name.startswith("_saved_"))
        _SAVED_NAMES[kind] = names
    for name in names:
        try:
            getattr(node, name)
        except RuntimeError as error:
            if "backward through the graph a second time" in str(error):
                return True
    return False


def reset_states(module: nn.Module) -> None:
    """Zero the states of every StatefulLayer inside module (and detach them)."""
    for layer in module.modules():
        if isinstance(layer, StatefulLayer):
            layer.reset_states()


def detach_states(module: nn.Module) -> None:
    """Detach the states of every StatefulLayer inside module, keeping their values."""
    for layer in module.modules():
        if isinstance(layer, StatefulLayer):
            layer.detach_states()


def zero_grad(module: nn.Module) -> None:
    """Zero the gradients of every StatefulLayer inside module and detach its states."""
    for layer in module.modules():
        if isinstance(layer, StatefulLayer):
            layer.zero_grad()
