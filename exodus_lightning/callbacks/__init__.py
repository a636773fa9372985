"""Lightning callbacks: spike rasters to the logger, an end-of-run summary, figure helpers."""

from exodus_lightning.callbacks.figures import (
    confusion_matrix_figure,
    log_figure,
    spike_raster_figure,
)
from exodus_lightning.callbacks.run_summary import RunSummary
from exodus_lightning.callbacks.spike_raster import SpikeRasterLogger

__all__ = [
    "RunSummary",
    "SpikeRasterLogger",
    "confusion_matrix_figure",
    "log_figure",
    "spike_raster_figure",
]
