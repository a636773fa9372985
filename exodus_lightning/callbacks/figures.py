"""Matplotlib figures and sending them to the run's loggers.

Figures are built with matplotlib's object API and drawn by the Agg canvas directly: no display
is needed, no pyplot state is kept, and the user's matplotlib backend is left as it is.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
from lightning.pytorch.loggers import WandbLogger
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image
from torch import Tensor
from torchmetrics.classification import MulticlassConfusionMatrix

MAX_NEURONS_SHOWN = 256
MAX_CLASSES_ANNOTATED = 12


def spike_raster_figure(rasters: dict[str, Tensor], title: str = "") -> Figure:
    """One raster per entry: spikes (time, *features) of one sample, features flattened.

    Layers with more than MAX_NEURONS_SHOWN neurons show an evenly spaced subset.
    """
    figure = Figure(figsize=(8, 2.2 * len(rasters)))
    axes = figure.subplots(len(rasters), 1, squeeze=False)
    for axis, (name, spikes) in zip(axes[:, 0], rasters.items()):
        counts = spikes.detach().float().flatten(1).cpu().numpy()  # (T, N)
        shown = np.linspace(0, counts.shape[1] - 1, min(counts.shape[1], MAX_NEURONS_SHOWN))
        counts = counts[:, shown.astype(int)]
        steps, neurons = np.nonzero(counts)
        axis.scatter(steps, neurons, s=8, c="black", marker="|")
        axis.set_xlim(-0.5, counts.shape[0] - 0.5)
        axis.set_ylim(-0.5, counts.shape[1] - 0.5)
        axis.set_ylabel(f"{name}\nneuron")
    axes[-1, 0].set_xlabel("time step")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


def confusion_matrix_figure(matrix: Tensor) -> Figure:
    """Heat map of a (true class, predicted class) count matrix, drawn by torchmetrics, with
    the counts written in the cells up to MAX_CLASSES_ANNOTATED classes (beyond, they overlap)."""
    figure = Figure(figsize=(6, 5), layout="constrained")
    classes = matrix.shape[0]
    MulticlassConfusionMatrix(classes).plot(val=matrix, ax=figure.subplots(), cmap="Blues",
                                            add_text=classes <= MAX_CLASSES_ANNOTATED)
    return figure


def figure_to_image(figure: Figure) -> Image.Image:
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return Image.fromarray(np.asarray(canvas.buffer_rgba())).convert("RGB")


def log_figure(trainer: L.Trainer, key: str, figure: Figure) -> list[str]:
    """Send a figure to every logger that takes images (W&B), else save a PNG in the log dir.

    Returns where it went: the PNG files (W&B's copy in its run folder, or ours), or the name
    of a logger that keeps no local file. Call on rank zero only.
    """
    image = figure_to_image(figure)
    destinations = []
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            destinations.append(_log_to_wandb(logger, key, image, trainer.global_step))
        elif hasattr(logger, "log_image"):
            logger.log_image(key=key, images=[image], step=trainer.global_step)
            destinations.append(type(logger).__name__)
    if not destinations:
        # Not trainer.log_dir: it broadcasts, and this runs on rank zero only.
        log_dir = getattr(trainer.logger, "log_dir", None) or trainer.default_root_dir
        folder = Path(log_dir) / key.replace("/", "_")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"epoch={trainer.current_epoch}-step={trainer.global_step}.png"
        image.save(path)
        destinations.append(str(path))
    return destinations


def _log_to_wandb(logger: WandbLogger, key: str, image: Image.Image, step: int) -> str:
    """Log `image` as WandbLogger.log_image does; the file W&B wrote for it in the run's
    folder (files/media/images/<key>_<step>_<hash>.png), else the logger's name."""
    import wandb

    media = wandb.Image(image)
    logger.log_metrics({key: [media]}, step=step)
    # Logging copies the image into the run's folder and points the Image at the copy (wandb
    # 0.31; a disabled run, or another wandb, leaves it elsewhere: then the name is shown).
    path = getattr(media, "_path", None)
    run_dir = getattr(logger.experiment, "dir", None)
    if path and run_dir and Path(path).is_file() and Path(path).is_relative_to(run_dir):
        return str(path)
    return type(logger).__name__
