"""Lightning callbacks: spike rasters, spike-activity warnings, a non-finite guard, progress,
predictions files, last.ckpt after every epoch, an end-of-run summary, figure helpers, sigma
annealing of learnable delays, a NIR export of the best network, the training steps' random
states in checkpoints."""

from exodus_lightning.callbacks.figures import (
    confusion_matrix_figure,
    log_figure,
    spike_raster_figure,
)
from exodus_lightning.callbacks.finite_guard import NonFiniteError, NonFiniteGuard
from exodus_lightning.callbacks.last_checkpoint import LastCheckpoint
from exodus_lightning.callbacks.nir_export import NIRExport, NIRExportWarning
from exodus_lightning.callbacks.predictions import PredictionWriter, predictions_from_csv
from exodus_lightning.callbacks.progress import ProgressBar
from exodus_lightning.callbacks.random_state import RandomStateWarning, TrainingRandomState
from exodus_lightning.callbacks.run_summary import RunSummary, run_folder
from exodus_lightning.callbacks.sigma_annealing import SigmaAnnealing
from exodus_lightning.callbacks.spike_activity import SpikeActivityCheck, SpikeActivityWarning
from exodus_lightning.callbacks.spike_raster import SpikeRasterLogger

__all__ = [
    "LastCheckpoint",
    "NIRExport",
    "NIRExportWarning",
    "NonFiniteError",
    "NonFiniteGuard",
    "PredictionWriter",
    "ProgressBar",
    "RandomStateWarning",
    "RunSummary",
    "SigmaAnnealing",
    "SpikeActivityCheck",
    "SpikeActivityWarning",
    "SpikeRasterLogger",
    "TrainingRandomState",
    "confusion_matrix_figure",
    "log_figure",
    "predictions_from_csv",
    "run_folder",
    "spike_raster_figure",
]
