"""Spiking layers on the EXODUS ops, drop-in for sinabs' LIF, IAF and ExpLeak.

Layers take (batch, time, *features); their ``*Squeeze`` variants take (batch·time, *features)
for conv stacks. States persist across calls; ``reset_states(model)`` / ``detach_states(model)``
act on every layer of a network.
"""

from . import surrogate
from .exp_leak import ExpLeak, ExpLeakSqueeze
from .iaf import IAF, IAFSqueeze
from .lif import LIF, LIFSqueeze
from .reshape import FlattenTime, SqueezeMixin, UnflattenTime
from .stateful import StatefulLayer, detach_states, reset_states

__all__ = [
    "IAF",
    "LIF",
    "ExpLeak",
    "ExpLeakSqueeze",
    "FlattenTime",
    "IAFSqueeze",
    "LIFSqueeze",
    "SqueezeMixin",
    "StatefulLayer",
    "UnflattenTime",
    "detach_states",
    "reset_states",
    "surrogate",
]
