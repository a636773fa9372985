"""The feature shapes a NIR node declares, with nir 1.0.x's own derivation errors corrected.

nir derives a node's ``input_type`` / ``output_type`` from its parameters. For convolutions it
gets two things wrong (nir 1.0.8): a grouped conv's input channels (it takes weight.shape[1],
which is in_channels / groups) and a non-square kernel's output (it uses weight.shape[2] as the
kernel size of every spatial dim). Here a conv's shapes are computed from its fields as PyTorch
does; every other node's come from nir. A shape is None where the node declares none (a pooling
node, a conv without input_shape, sinabs' 0-d parameters).
"""

from __future__ import annotations

from typing import Any

import nir
import numpy as np

Shape = tuple[int, ...]


def _shape(value: Any) -> Shape | None:
    """A shape from nir's type entry; None for a missing or 0-d one (no shape declared)."""
    if value is None:
        return None
    try:
        array = np.asarray(value)
        if array.dtype == object or array.ndim != 1 or array.size == 0:
            return None
        return tuple(int(n) for n in array)
    except (TypeError, ValueError):
        return None


def per_dim(value: Any, dims: int) -> list[int]:
    """A conv/pool field (one number or one per spatial dim) as one int per spatial dim."""
    values = np.atleast_1d(np.asarray(value)).astype(int).tolist()
    return values * dims if len(values) == 1 else values


def _conv_spatial_input(node: nir.Conv1d | nir.Conv2d) -> list[int] | None:
    if node.input_shape is None:
        return None
    return per_dim(node.input_shape, np.asarray(node.weight).ndim - 2)


def conv_output(node: nir.Conv1d | nir.Conv2d) -> Shape | None:
    """(C_out, *spatial) of a conv node, per spatial dim with its own kernel size:
    ⌊(n + 2p − d·(k − 1) − 1) / s⌋ + 1, or n for padding "same"."""
    spatial = _conv_spatial_input(node)
    if spatial is None:
        return None
    weight = np.asarray(node.weight)
    dims = weight.ndim - 2
    padding = node.padding
    if isinstance(padding, bytes):
        padding = padding.decode("utf8")
    if isinstance(padding, str):
        if padding == "same":
            return (int(weight.shape[0]), *spatial)
        padding = 0  # "valid"
    out = []
    for n, p, d, k, s in zip(spatial, per_dim(padding, dims), per_dim(node.dilation, dims),
                             weight.shape[2:], per_dim(node.stride, dims), strict=True):
        out.append((n + 2 * p - d * (int(k) - 1) - 1) // s + 1)
    return (int(weight.shape[0]), *out)


def declared_input(node: nir.NIRNode) -> Shape | None:
    """The feature shape the node takes, as it declares it (None: it does not say)."""
    if isinstance(node, (nir.Conv1d, nir.Conv2d)):
        spatial = _conv_spatial_input(node)
        weight = np.asarray(node.weight)
        return None if spatial is None else (int(weight.shape[1]) * int(node.groups), *spatial)
    return _shape((getattr(node, "input_type", None) or {}).get("input"))


def declared_output(node: nir.NIRNode) -> Shape | None:
    """The feature shape the node gives, as it declares it (None: it does not say)."""
    if isinstance(node, (nir.Conv1d, nir.Conv2d)):
        return conv_output(node)
    return _shape((getattr(node, "output_type", None) or {}).get("output"))


def same_features(a: Shape, b: Shape) -> bool:
    """a and b are the same shape up to leading 1s (Norse writes its batch of 1 into its Input
    and Output nodes: (1, 5) where the features are (5,))."""
    def strip(shape: Shape) -> Shape:
        shape = tuple(shape)
        while shape and shape[0] == 1:
            shape = shape[1:]
        return shape

    return strip(a) == strip(b)


def broadcasts_to(a: Shape, b: Shape) -> bool:
    """A parameter of shape a applies element-wise to features b (a per-channel (C, 1, 1) to
    (C, H, W), a single value to any)."""
    try:
        return tuple(np.broadcast_shapes(tuple(a), tuple(b))) == tuple(b)
    except ValueError:
        return False
