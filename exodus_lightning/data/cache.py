"""Disk cache of transformed samples, in a folder that encodes everything the samples depend on."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tonic import DiskCachedDataset
from tonic.cached_dataset import load_from_disk_cache, save_to_disk_cache
from torch.utils.data import Dataset

from exodus_lightning.data.errors import UnreadableFileError

logger = logging.getLogger(__name__)


def files_identity(files: str | Path | Sequence[str | Path]) -> dict[str, Any]:
    """What the source `files` (one path, or one per sample, in sample order) are, from
    `os.stat` only (no file is read): their number, total size, newest modification time and a
    digest of every file's (path, size, mtime_ns).

    A file rewritten, replaced, added, removed or renamed changes the digest, unless it keeps
    both its size and its modification time to the nanosecond (the file system's timestamp
    granularity: a rewrite within the same clock tick to the same size goes unnoticed).
    """
    paths = [files] if isinstance(files, str | Path) else list(files)
    digest = hashlib.sha256()
    total_bytes, newest_ns = 0, 0
    for path in paths:
        stat = os.stat(path)
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        total_bytes += stat.st_size
        newest_ns = max(newest_ns, stat.st_mtime_ns)
    return {
        "files": len(paths),
        "bytes": total_bytes,
        "newest_mtime_ns": newest_ns,
        "digest": digest.hexdigest()[:16],
    }


def cache_folder(
    cache_dir: str | Path,
    dataset_name: str,
    split: str,
    data_dir: str | Path,
    num_samples: int,
    cached_transforms: Sequence[Callable],
    reading: Mapping[str, Any] | None = None,
    source: Mapping[str, Any] | None = None,
) -> Path:
    """`cache_dir/<dataset_name>/<split>-<digest>`: digest = sha256 of the key below, 16 hex chars.

    tonic's DiskCachedDataset finds samples by index only, so anything that changes what index i
    holds goes into the key: the source folder, its sample count, the identity of its files
    (`source`, from files_identity: sizes and modification times, so files changed since the
    cache was filled get a fresh folder, never the old files' samples), the settings with which
    the dataset is read (`reading`, e.g. NMNIST's first_saccade_only; only when given, so the
    default keeps its folder) and the repr (all parameters) of every transform applied before
    caching. A changed setting thus gets a fresh folder; the old one stays until deleted.
    """
    key = {
        "dataset": dataset_name,
        "split": split,
        "data_dir": str(Path(data_dir).expanduser().resolve()),
        "num_samples": num_samples,
        "transforms": [repr(transform) for transform in cached_transforms],
    }
    if reading:
        key["reading"] = dict(reading)
    if source:
        key["source"] = dict(source)
    text = json.dumps(key, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    folder = Path(cache_dir).expanduser() / dataset_name / f"{split}-{digest}"
    # An existing folder is used as it is, even where this user may not write (a cache filled
    # by another user, or on a read-only mount).
    folder.mkdir(parents=True, exist_ok=True)
    write_record(folder / "cache_key.json", json.dumps(key, indent=2, sort_keys=True))
    return folder


def write_record(path: Path, text: str) -> None:
    """Write `text`, a human-readable record of what the cache folder holds (never read back
    for the cache's own use), unless `path` holds it already or cannot be written: a folder this
    user may only read serves its samples all the same."""
    try:
        if path.read_text() == text:
            return
    except OSError:  # absent or unreadable: write it
        pass
    try:
        path.write_text(text)
    except OSError as error:
        logger.info("Cache record %s not written: %s", path, error)


class AtomicDiskCachedDataset(DiskCachedDataset):
    """tonic's DiskCachedDataset whose cache files appear atomically, complete or not at all.

    tonic writes `<index>_<copy>.hdf5` in place, so processes sharing a cold folder (DDP ranks,
    DataLoader workers) can read a half-written file, or write the same file at once and clobber
    each other. Here each writer fills a private temporary file in the same folder and publishes it
    with `os.replace`, which is atomic on POSIX. Writers racing on one index simply replace each
    other's identical result. File names and format are tonic's, so existing caches stay valid.
    A folder this process may not write (permission denied, read-only file system) serves the
    samples it holds; one it lacks is computed and served without being stored (warned once).
    """

    def __getitem__(self, item: int) -> tuple[object, object]:
        if self.dataset is None and item >= self.n_samples:
            raise IndexError(f"This dataset only has {self.n_samples} items.")
        # Same random source as tonic, so seeding numpy picks the same copies as before.
        copy = np.random.randint(self.num_copies)  # noqa: NPY002
        file_path = os.path.join(self.cache_path, f"{item}_{copy}.hdf5")
        try:
            data, targets = load_from_disk_cache(file_path)
        except KeyError as error:
            # Our writers only publish complete files: this one came from elsewhere.
            raise UnreadableFileError(
                f"Cache file '{file_path}' is not a complete cached sample ({error}; it needs "
                f"'data' and 'target' entries). Delete it, or the whole cache folder "
                f"'{self.cache_path}', and the samples are computed again."
            ) from error
        except OSError:  # FileNotFoundError included; also files left corrupt by older writers
            logger.info("Data %s: %s not in cache, generating it now", item, file_path)
            data, targets = self._compute_and_publish(item, file_path)
        if self.transform is not None:
            data = self.transform(data)
        if self.target_transform is not None:
            targets = self.target_transform(targets)
        if self.transforms is not None:
            data, targets = self.transforms(data, targets)
        return data, targets

    def _compute_and_publish(self, item: int, file_path: str) -> tuple[object, object]:
        """Compute sample `item`, write it to a temporary file and atomically rename it into place.

        Returns the sample as read back from disk, since saving to HDF5 can change its type
        (tensors become numpy arrays) and cached reads must look the same as the first one.
        """
        data, targets = self.dataset[item]
        folder, name = os.path.split(file_path)
        # Not mkstemp: it creates mode 0600 files, which would lock other users out of a shared
        # cache. A uuid makes the name unique across processes and hosts sharing the folder; the
        # leading dot and the suffix keep it out of tonic's count of `*.hdf5` files.
        temp_path = os.path.join(folder, f".{name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
        try:
            save_to_disk_cache(data, targets, file_path=temp_path, compress=self.compress)
            sample = load_from_disk_cache(temp_path)
            os.replace(temp_path, file_path)
        except BaseException as error:
            try:
                os.remove(temp_path)
            except OSError:  # never created (e.g. the folder is not writable), or gone
                pass
            if isinstance(error, OSError) and is_not_writable(error):
                self._warn_not_writable(error)
                return data, targets
            raise
        return sample

    def _warn_not_writable(self, error: OSError) -> None:
        """Say once per process (per dataset) that samples missing from this read-only cache
        are computed on every access."""
        if getattr(self, "_warned_not_writable", False):
            return
        self._warned_not_writable = True
        warnings.warn(
            f"The cache folder '{self.cache_path}' cannot be written ({error.strerror}): the "
            "samples it lacks are computed on every access instead of once (those it holds "
            "are read from it). Let this user write there, fill it once as a user who can, or "
            "set --data.init_args.cache_dir to a writable folder (or null for no cache).",
            UserWarning,
            stacklevel=3,
        )


def is_not_writable(error: OSError) -> bool:
    """Whether `error` says that a file may not be created: permission denied or a read-only
    file system (not, e.g., a full disk)."""
    return isinstance(error, PermissionError) or error.errno == errno.EROFS


def disk_cached(
    dataset: Dataset, folder: Path, transform_after_cache: Callable | None = None
) -> DiskCachedDataset:
    """Wrap `dataset` so each sample is computed once, stored in `folder` and read back later.

    `transform_after_cache` (e.g. random augmentation) runs on every access, after the cache.
    Safe for several processes sharing one folder (see AtomicDiskCachedDataset).
    """
    return AtomicDiskCachedDataset(
        dataset=dataset, cache_path=str(folder), transform=transform_after_cache
    )
