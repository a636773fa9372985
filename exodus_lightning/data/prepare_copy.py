"""Write a prepared copy of a recorded dataset: every loader's samples as litdata chunks."""

from __future__ import annotations

import copy
import random
import time
from typing import Any

from exodus_lightning.data.cache import files_identity
from exodus_lightning.data.errors import PreparedDataError
from exodus_lightning.data.event_base import EventDataModule
from exodus_lightning.data.stored_samples import dtype_to_json
from exodus_lightning.data.streaming import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST_NAME,
    events_dtype,
    has_manifest,
    join,
    library_versions,
    require_litdata,
    write_manifest,
    write_part,
)
from exodus_lightning.data.transforms import Pipeline

PARTS = ("train", "val", "test")
# The training part is written in a random order drawn from this seed: litdata shuffles the
# order of the chunks and the samples inside a chunk, never across chunks, so a batch holds
# the samples of one or two chunks, and a copy written in the source's order (N-MNIST's files
# go class by class, a 32 MB chunk a quarter of one) would serve batches of one or two classes.
TRAINING_ORDER_SEED = 0
STORE_CHOICES = ("auto", "frames", "events")
# DataModule settings that only change how batches are served, not the samples.
LOADER_SETTINGS = ("batch_size", "num_workers", "pin_memory", "persistent_workers", "streaming",
                   "streaming_workers", "bin_on_device", "cache_dir", "download")  # fmt: skip


def prepare_copy(
    datamodule: EventDataModule,
    output: str,
    num_workers: int = 0,
    store: str = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    """Read every loader's samples ("train", "val", "test") through the DataModule's tonic
    path, apply the fixed transforms, write them under `output/<part>` and the manifest last.

    store: "frames" (binned counts), "events" (preprocessed events, binned on every access), or
    "auto": events for the training part when the DataModule augments (augmentation runs on
    events), frames otherwise. Returns the manifest.
    """
    require_litdata("Preparing a dataset")
    if not isinstance(datamodule, EventDataModule):
        raise PreparedDataError(
            f"{type(datamodule).__name__} is not a recorded dataset read through tonic "
            "(NMNIST, DVS Gesture, SHD, SSC); only those are prepared, the others are "
            "generated in memory"
        )
    if store not in STORE_CHOICES:
        raise ValueError(f"store={store!r}: choose from {list(STORE_CHOICES)}")
    if int(num_workers) != num_workers or num_workers < 0:
        raise ValueError(f"num_workers={num_workers} must be 0 (write in this process) or more")
    if has_manifest(output):
        raise PreparedDataError(
            f"'{output}' already holds a prepared copy ({MANIFEST_NAME}): delete the folder "
            "or choose another output"
        )
    # The raw data is read directly, whatever the DataModule's streaming setting says.
    reader = copy.copy(datamodule)
    reader.streaming = None
    parts = {}
    for part in PARTS:
        augmenting = part == "train" and bool(reader.augmentation_names)
        stored = store if store != "auto" else ("events" if augmenting else "frames")
        split, _, _ = reader.part_source(part)
        indices = list(reader.part_indices(part))
        order_seed = TRAINING_ORDER_SEED if part == "train" else None
        if order_seed is not None:
            random.Random(order_seed).shuffle(indices)
        samples = copy.copy(reader._opened[split])
        samples.transform = Pipeline(reader.stored_transforms(stored))
        started = time.perf_counter()
        write_part(samples, indices, join(output, part), stored == "events", num_workers, progress)
        entry = reader.part_entry(part, stored)
        entry.update(
            num_samples=len(indices),
            # The seed of the random order the samples were written in; None: the source's.
            order_seed=order_seed,
            num_source_samples=len(samples),
            # Which state of the files the copy holds (a record: streaming never reads them).
            source_files=files_identity(samples.sample_files),
            seconds_to_prepare=round(time.perf_counter() - started, 3),
        )
        if stored == "events":
            entry["events_dtype"] = dtype_to_json(events_dtype(samples))
        parts[part] = entry
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "dataset": reader.dataset_name,
        "datamodule": f"{type(reader).__module__}.{type(reader).__qualname__}",
        "settings": {
            name: value
            for name, value in dict(reader.hparams).items()
            if name not in LOADER_SETTINGS and not name.startswith("_")
        },
        "num_time_steps": reader.num_time_steps,
        "input_shape": list(reader.input_shape),
        "source": str(reader.data_dir.resolve()),
        "versions": library_versions(),
        "parts": parts,
    }
    write_manifest(output, manifest)
    return manifest
