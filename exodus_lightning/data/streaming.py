"""Prepared copies of recorded datasets as litdata chunks: writing, the manifest, and reading.

A prepared copy is a folder (or an object-store URL litdata supports, e.g. s3://bucket/shd):

    <copy>/manifest.json       what the copy holds and how it was made (written last)
    <copy>/<part>/             litdata chunks of one loader's samples, part = train, val, test

Each part is described by an entry that must match the reading DataModule's own (see
`part_entry`); a copy made with other settings is refused, naming the settings that differ.
"""

from __future__ import annotations

import importlib.metadata
import json
import multiprocessing
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from exodus_lightning.data.errors import PreparedDataError
from exodus_lightning.data.stored_samples import SampleDecoder, SampleEncoder

MANIFEST_NAME = "manifest.json"
FORMAT = "exodus-lightning prepared dataset"
FORMAT_VERSION = 2
# Why copies of an older format version are refused (they must be prepared again).
OLDER_VERSIONS = {
    1: "its training part is stored in the source's order, so where the files go class by "
       "class (N-MNIST) its training batches hold one or a few classes (version 2 stores it "
       "in a random order)",
}  # fmt: skip
INSTALL_HINT = "pip install 'exodus-lightning[streaming]' (or: pip install litdata)"
# Chunk size: big enough that object-store reads are efficient, small enough that a rank's
# first batch arrives quickly (litdata's own default is 64 MB).
CHUNK_BYTES = "32MB"
# Entry fields that say which samples a part holds and what was done to them.
# (The number of samples is not among them: a reading DataModule may not have the raw data.)
IDENTITY_FIELDS = ("dataset", "reading", "split", "val_fraction", "seed", "stored",
                   "transforms")
VERSIONED_PACKAGES = ("exodus-lightning", "tonic", "litdata", "numpy", "torch")


def require_litdata(purpose: str):
    """The litdata module, or a PreparedDataError saying how to install it."""
    try:
        import litdata
    except ImportError as error:
        raise PreparedDataError(
            f"{purpose} needs the litdata package, which is not installed: {INSTALL_HINT}"
        ) from error
    return litdata


def is_url(location: str | Path) -> bool:
    return "://" in str(location)


def join(location: str | Path, name: str) -> str:
    return f"{str(location).rstrip('/')}/{name}"


def library_versions() -> dict[str, str | None]:
    versions = {}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def part_entry(
    dataset: str,
    split: str,
    val_fraction: float | None,
    seed: int | None,
    stored: str,
    transforms: Sequence[Any],
    reading: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What a part holds: the official `split`'s samples (all; or with val_fraction and seed,
    the seeded training or validation selection of split_indices), read from the dataset with
    `reading` (settings that change a sample's events; None: tonic's defaults, as copies made
    before this field have it), stored as "frames" or "events" after `transforms` (their reprs,
    i.e. all their parameters)."""
    return {
        "dataset": dataset,
        "reading": reading or None,
        "split": split,
        "val_fraction": val_fraction,
        "seed": seed,
        "stored": stored,
        "transforms": [repr(transform) for transform in transforms],
    }


def write_part(
    samples: Dataset,
    indices: Sequence[int],
    output: str,
    events: bool,
    num_workers: int,
    progress: bool = True,
) -> None:
    """Write samples[i] for i in `indices`, in that order, as litdata chunks into `output`.

    num_workers > 0: litdata.optimize with that many processes (local or object-store output);
    0: one in-process writer (no process start-up: quicker for small data; local output only).
    A local `output` starts empty (see start_empty); litdata's overwrite mode empties a URL.
    """
    litdata = require_litdata("Preparing a dataset")
    if not is_url(output):
        start_empty(Path(output))
    elif num_workers == 0:
        raise PreparedDataError(
            f"writing to '{output}' needs litdata's workers: pass a number of workers >= 1"
        )
    encoder = SampleEncoder(samples, events)
    if num_workers > 0:
        litdata.optimize(
            fn=encoder,
            inputs=list(indices),
            output_dir=output,
            chunk_bytes=CHUNK_BYTES,
            num_workers=num_workers,
            keep_data_ordered=True,
            mode="overwrite",
            verbose=progress,
            # Forked workers inherit the opened dataset; spawned ones import torch, lightning
            # and tonic again (~10 s each here, for every part).
            start_method="fork" if "fork" in multiprocessing.get_all_start_methods() else None,
        )
        return
    from litdata.streaming.writer import BinaryWriter
    from tqdm import tqdm

    Path(output).mkdir(parents=True, exist_ok=True)
    writer = BinaryWriter(output, chunk_bytes=CHUNK_BYTES)
    for position, index in enumerate(tqdm(indices, desc=output, disable=not progress)):
        writer[position] = encoder(index)
    writer.done()
    writer.merge()


def is_litdata_file(name: str) -> bool:
    """Whether a file named `name` is one litdata writes into a part's folder: chunks
    (chunk-<rank>-<n>.bin) and indexes (index.json, <rank>.index.json, their .tmp while
    written)."""
    return name.endswith(".bin") or "index.json" in name


def start_empty(folder: Path) -> None:
    """Remove from the part folder `folder` what an unfinished preparation left there: litdata's
    chunks and indexes, as litdata's overwrite mode does. Its in-process writer would otherwise
    keep an index.json it finds (and the chunks it lists) instead of writing its own. A folder
    that holds anything else is not a part of a prepared copy: refused, nothing removed."""
    if not folder.exists():
        return
    if not folder.is_dir():
        raise PreparedDataError(
            f"'{folder}' is a file, where prepare writes a folder of chunks: choose another output"
        )
    entries = list(folder.iterdir())
    others = sorted(entry.name for entry in entries
                    if not (entry.is_file() and is_litdata_file(entry.name)))  # fmt: skip
    if others:
        raise PreparedDataError(
            f"'{folder}' holds files that prepare did not write ({', '.join(others[:5])}"
            f"{', ...' if len(others) > 5 else ''}): choose another output folder, or remove them"
        )
    for entry in entries:
        entry.unlink()


def object_store(location: str) -> Any:
    """litdata's client for the object store of the URL `location` (s3://, gs://, r2://): the
    one that moves the chunks, with the same credentials and endpoint settings."""
    require_litdata("A prepared dataset in object storage")
    # litdata's own (private) factory: tests/data/test_streaming_object_store.py notices if a
    # litdata release moves it.
    from litdata.streaming.fs_provider import _get_fs_provider

    try:
        return _get_fs_provider(location)
    except ValueError as error:  # a scheme litdata does not write or read
        raise PreparedDataError(
            f"'{location}': litdata stores prepared datasets in s3://, gs:// or r2:// object "
            "storage, or in a local folder"
        ) from error


def has_manifest(location: str | Path) -> bool:
    """Whether `location` (a folder or an object-store URL) holds a manifest."""
    if is_url(location):
        return object_store(str(location)).exists(join(location, MANIFEST_NAME))
    return (Path(location) / MANIFEST_NAME).exists()


def write_manifest(location: str, manifest: dict[str, Any]) -> None:
    """Write the manifest last: a copy whose preparation stopped midway has none."""
    text = json.dumps(manifest, indent=2, sort_keys=True, default=str)
    if is_url(location):
        with tempfile.TemporaryDirectory() as folder:
            local = Path(folder) / MANIFEST_NAME
            local.write_text(text)
            object_store(location).upload_file(str(local), join(location, MANIFEST_NAME))
    else:
        (Path(location) / MANIFEST_NAME).write_text(text)


def read_manifest(location: str | Path) -> dict[str, Any]:
    """The manifest of the prepared copy at `location`, or a PreparedDataError saying why not."""
    path = join(location, MANIFEST_NAME)
    fix = (
        "prepare it with `exodus-lightning prepare --config <your config> --output "
        f"{location}`, or point streaming at a prepared copy"
    )
    missing = PreparedDataError(
        f"streaming='{location}' is not a prepared dataset (no {MANIFEST_NAME}; a "
        f"preparation that stopped midway leaves none): {fix}"
    )
    if is_url(location):
        if not has_manifest(location):
            raise missing
        with tempfile.TemporaryDirectory() as folder:
            local = Path(folder) / MANIFEST_NAME
            object_store(str(location)).download_file(path, str(local))
            text = local.read_text()
    else:
        try:
            text = Path(path).read_text()
        except FileNotFoundError as error:
            raise missing from error
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as error:
        raise PreparedDataError(f"'{path}' is not valid JSON ({error}): {fix}") from error
    version = manifest.get("format_version")
    if manifest.get("format") == FORMAT and version in OLDER_VERSIONS:
        raise PreparedDataError(
            f"'{path}' is a prepared copy of format version {version}, made by an older "
            f"exodus-lightning, and this one reads version {FORMAT_VERSION}: "
            f"{OLDER_VERSIONS[version]}. Prepare it again into a new folder (`exodus-lightning "
            f"prepare --config <your config> --output <new folder>`)"
        )
    if manifest.get("format") != FORMAT or version != FORMAT_VERSION:
        raise PreparedDataError(
            f"'{path}' is not a manifest of format {FORMAT!r} version {FORMAT_VERSION} "
            f"(found {manifest.get('format')!r} version {manifest.get('format_version')}): {fix}"
        )
    return manifest


def check_part(
    location: str, manifest: dict[str, Any], part: str, wanted: dict[str, Any],
    accept_events: dict[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The manifest's entry for `part` if it matches `wanted` (or, for a copy that stores
    events, `accept_events`: events can be binned as this DataModule bins them); otherwise a
    PreparedDataError naming the settings that differ."""
    parts = manifest.get("parts", {})
    if part not in parts:
        raise PreparedDataError(
            f"the prepared copy '{location}' has no {part!r} part (it has {sorted(parts)}); "
            "prepare it again with this config"
        )
    entry = parts[part]
    candidates = [wanted] if accept_events is None else [wanted, accept_events]
    for candidate in candidates:
        if all(entry.get(name) == candidate[name] for name in IDENTITY_FIELDS):
            return entry
    differences = "; ".join(
        f"{name}: prepared {entry.get(name)!r}, this DataModule {wanted[name]!r}"
        for name in IDENTITY_FIELDS
        if entry.get(name) != wanted[name]
    )
    raise PreparedDataError(
        f"the prepared copy '{location}' was made with other settings than this DataModule's "
        f"for its {part!r} part ({differences}). Prepare it again with the same data settings "
        f"(`exodus-lightning prepare --config <your config> --output <new folder>`), or use "
        "the settings it was prepared with."
    )


def open_part(
    location: str,
    part: str,
    decoder: SampleDecoder,
    shuffle: bool,
    seed: int,
    cache_dir: str | None = None,
):
    """A litdata StreamingDataset over `location/part` whose items are decoder(stored sample).

    Streamed by litdata, which shuffles from (seed, epoch) and splits the chunks between DDP
    ranks and DataLoader workers; under DDP it drops the remainder (fewer than
    world_size * batch_size samples, others each epoch) so that every rank runs as many steps.
    """
    litdata = require_litdata("Reading a prepared dataset (streaming=...)")
    return litdata.StreamingDataset(
        join(location, part), cache_dir=cache_dir, shuffle=shuffle, seed=seed, transform=decoder
    )


class InOrder(Dataset):
    """Sample i of a StreamingDataset by index, for evaluation: read in order like the tonic
    path, so that under DDP the DataModule's sampler gives every rank its share of the samples,
    each once, as it does there. (litdata's own split can leave a rank without any batch of a
    small part.)"""

    def __init__(self, stream: Dataset, num_samples: int) -> None:
        self.stream = stream
        # Not len(stream): under DDP that is one rank's share.
        self.num_samples = int(num_samples)

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int):
        return self.stream[index]


def events_dtype(samples: Dataset) -> np.dtype:
    """The structured dtype of the events in `samples` (read from its first sample)."""
    events, _ = samples[0]
    return np.asarray(events).dtype



def streaming_loader(
    dataset: Dataset, epoch: Callable[[], int | None] | None = None, **loader_settings: Any
):
    """litdata's StreamingDataLoader over `dataset`, for training: shuffled by litdata from
    (seed, epoch), split between ranks and workers, its position saved in Lightning checkpoints
    and restored on resume (see ResumingStreamingLoader).

    epoch: returns the Trainer's epoch (None: no Trainer); every pass that is not a restored one
    then shuffles as litdata's pass `epoch() + 1` (the one an uninterrupted run's loader makes
    in that epoch), as EpochSeededSampler takes Lightning's epoch on the tonic path. Without it,
    litdata counts its own passes from 1.
    """
    litdata = require_litdata("Reading a prepared dataset (streaming=...)")

    class ResumingStreamingLoader(litdata.StreamingDataLoader):
        """After a resume, litdata replays the restored epoch's remainder until one pass runs
        to its end; Lightning stops pulling batches at the epoch's known length, so every later
        epoch would replay it again. Here the restored state serves the first pass only.

        litdata numbers its passes itself, and only a restored state (Lightning restores it
        from a mid-epoch checkpoint only) sets that count: a run resumed from a checkpoint
        written at an epoch's end would start again from the first epoch's order. So every
        other pass takes its number from the Trainer's epoch.
        """

        _served_restored_pass = False

        def __iter__(self):
            if self.restore and self._served_restored_pass:
                self.restore = False
            self._served_restored_pass = self.restore
            return self._one_pass()

        def _one_pass(self):
            # At the first batch, not at iter(): Lightning calls iter() before it sets the
            # epoch it resumes at (and litdata itself starts a pass at its first batch).
            trainer_epoch = None if epoch is None or self.restore else epoch()
            if trainer_epoch is not None:
                self.current_epoch = int(trainer_epoch)  # litdata adds 1 as the pass starts
            yield from super().__iter__()

    return ResumingStreamingLoader(dataset, **loader_settings)
