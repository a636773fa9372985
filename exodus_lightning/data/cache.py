"""Disk cache of transformed samples, in a folder that encodes everything the samples depend on."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

from tonic import DiskCachedDataset
from torch.utils.data import Dataset


def cache_folder(
    cache_dir: str | Path,
    dataset_name: str,
    split: str,
    data_dir: str | Path,
    num_samples: int,
    cached_transforms: Sequence[Callable],
) -> Path:
    """`cache_dir/<dataset_name>/<split>-<digest>`: digest = sha256 of the key below, 16 hex chars.

    tonic's DiskCachedDataset finds samples by index only, so anything that changes what index i
    holds goes into the key: the source folder, its sample count, and the repr (all parameters)
    of every transform applied before caching. A changed setting thus gets a fresh folder.
    """
    key = {
        "dataset": dataset_name,
        "split": split,
        "data_dir": str(Path(data_dir).expanduser().resolve()),
        "num_samples": num_samples,
        "transforms": [repr(transform) for transform in cached_transforms],
    }
    text = json.dumps(key, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    folder = Path(cache_dir).expanduser() / dataset_name / f"{split}-{digest}"
    folder.mkdir(parents=True, exist_ok=True)
    # Human-readable record of what the folder holds; not read back.
    (folder / "cache_key.json").write_text(json.dumps(key, indent=2, sort_keys=True))
    return folder


def disk_cached(
    dataset: Dataset, folder: Path, transform_after_cache: Callable | None = None
) -> DiskCachedDataset:
    """Wrap `dataset` so each sample is computed once, stored in `folder` and read back later.

    `transform_after_cache` (e.g. random augmentation) runs on every access, after the cache.
    """
    return DiskCachedDataset(
        dataset=dataset, cache_path=str(folder), transform=transform_after_cache
    )
