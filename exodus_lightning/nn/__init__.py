"""Spiking layers on the EXODUS ops, drop-in for sinabs' LIF, IAF, ALIF, ExpLeak and their
variants, and SE-adLIF's adaptive LIF (``adLIF``).

Layers take (batch, time, *features); their ``*Squeeze`` variants take (batch·time, *features)
for conv stacks. ``DelayedLinear`` is a linear map with a learnable delay per synapse.
States persist across calls; ``reset_states(model)`` / ``detach_states(model)``
act on every layer of a network. ``activation`` holds sinabs-style spike and reset functions.
"""

from . import activation, surrogate
from .activation import UnsupportedActivationError
from .adlif import adLIF, apply_parameter_constraints
from .alif import ALIF, ALIFSqueeze
from .delay import DelayedLinear
from .exp_leak import ExpLeak, ExpLeakSqueeze
from .iaf import IAF, IAFSqueeze
from .lif import LIF, LIFSqueeze
from .parameters import ParameterRangeError, ShapeError
from .recurrent import ALIFRecurrent, IAFRecurrent, LIFRecurrent
from .reshape import FlattenTime, SqueezeMixin, UnflattenTime, set_batch_size
from .spiking import SpikingLayer
from .stateful import StatefulLayer, detach_states, reset_states, zero_grad

__all__ = [
    "adLIF",
    "apply_parameter_constraints",
    "ALIF",
    "ALIFRecurrent",
    "ALIFSqueeze",
    "IAF",
    "LIF",
    "DelayedLinear",
    "ExpLeak",
    "ExpLeakSqueeze",
    "FlattenTime",
    "IAFRecurrent",
    "IAFSqueeze",
    "LIFRecurrent",
    "LIFSqueeze",
    "ParameterRangeError",
    "ShapeError",
    "SqueezeMixin",
    "SpikingLayer",
    "StatefulLayer",
    "UnflattenTime",
    "UnsupportedActivationError",
    "activation",
    "detach_states",
    "reset_states",
    "set_batch_size",
    "surrogate",
    "zero_grad",
]
