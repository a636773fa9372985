"""Networks built from exodus_lightning.nn: (batch, time, *input_shape) -> (batch, time, classes).

Neuron kind, time constants, threshold, spike mode, `gradient` (exodus | slayer) and `backend`
(extension | reference = BPTT) are constructor arguments, so a config switches between them.
"""

from exodus_lightning.models.conv import ConvSNN
from exodus_lightning.models.delays import DelaySNN
from exodus_lightning.models.feedforward import FeedForwardSNN
from exodus_lightning.models.neurons import NEURONS, READOUTS, readout_layer, spiking_layer
from exodus_lightning.models.time_folded import TimeFolded
from exodus_lightning.models.time_shared_dropout import TimeSharedDropout

__all__ = [
    "NEURONS",
    "READOUTS",
    "ConvSNN",
    "DelaySNN",
    "FeedForwardSNN",
    "TimeFolded",
    "TimeSharedDropout",
    "readout_layer",
    "spiking_layer",
]
