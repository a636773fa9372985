"""Base DataModule for recorded datasets read through tonic (NMNIST, DVS Gesture, SHD, SSC).

Per sample: tonic parses the file -> preprocessing (deterministic) -> augmentation (random,
train only) -> binning into T fixed-width bins. With `cache_dir`, everything up to the first
random step is cached on disk (frames as compact integer counts, or preprocessed events when
augmenting); the rest runs on every access. With `streaming`, the samples come instead from a
copy prepared once by `exodus-lightning prepare` (frames, or preprocessed events when augmenting)
and are streamed by litdata; augmentation and binning of events still run per access.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import DataLoader, Dataset, Subset

from exodus_lightning.data.base import SpikeDataModule, check_val_fraction, split_indices
from exodus_lightning.data.cache import cache_folder, disk_cached, files_identity
from exodus_lightning.data.collate import pad_time_collate
from exodus_lightning.data.device_binning import ToEventPositions
from exodus_lightning.data.errors import DatasetNotFoundError
from exodus_lightning.data.seeded_draws import EpochSeededSubset
from exodus_lightning.data.stored_samples import SampleDecoder, dtype_from_json
from exodus_lightning.data.streaming import (
    InOrder,
    check_part,
    open_part,
    part_entry,
    read_manifest,
    require_litdata,
    streaming_loader,
)
from exodus_lightning.data.tonic_loading import CheckedSamples, open_tonic_dataset
from exodus_lightning.data.transforms import (
    MICROSECONDS_PER_MS,
    CompactCounts,
    Pipeline,
    ToFloat32,
    check_augmentation_names,
    decimal_fraction,
)


def bin_width_us(
    num_time_steps: int,
    bin_width_ms: float | None,
    duration_ms: float | None,
    default_bin_width_ms: float,
) -> Fraction:
    """Bin width w in microseconds, exact: bin_width_ms x 1000, or duration_ms x 1000 /
    num_time_steps, or (neither given) default_bin_width_ms x 1000; both given must agree.

    Milliseconds are taken as the decimals they are written as (see decimal_fraction), so e.g.
    duration_ms=1000 over 120 steps gives w = 25000/3 µs, and an event at 125000 µs starts bin
    15 exactly. Either way every sample covers the same duration T * w, so every sample has T
    steps.
    """
    if int(num_time_steps) != num_time_steps or num_time_steps < 1:
        raise ValueError(f"num_time_steps={num_time_steps} must be a positive integer")
    if bin_width_ms is not None and not (bin_width_ms > 0 and math.isfinite(bin_width_ms)):
        raise ValueError(f"bin_width_ms={bin_width_ms} must be positive and finite (or None)")
    if duration_ms is None:
        width_ms = default_bin_width_ms if bin_width_ms is None else bin_width_ms
        return decimal_fraction(width_ms) * MICROSECONDS_PER_MS
    if not (duration_ms > 0 and math.isfinite(duration_ms)):
        raise ValueError(f"duration_ms={duration_ms} must be positive and finite (or None)")
    width_ms = decimal_fraction(duration_ms) / int(num_time_steps)
    if bin_width_ms is not None and not math.isclose(bin_width_ms, width_ms, rel_tol=1e-9):
        raise ValueError(
            f"duration_ms={duration_ms} over num_time_steps={num_time_steps} makes bins of "
            f"{float(width_ms):g} ms, but bin_width_ms={bin_width_ms} was given too: set only "
            "one of bin_width_ms and duration_ms (the other to None; on the command line null)"
        )
    return width_ms * MICROSECONDS_PER_MS


class EventDataModule(SpikeDataModule):
    """Seeded train/val split, optional disk cache and lazy per-sample reading of a tonic dataset.

    Subclasses define `dataset_name`, `num_classes`, `tonic_class`, `layout` and `source` (for
    error messages), `default_bin_width_ms`, `official_splits`, `augmentation_choices`,
    `open_split` (through `open_tonic`), set `to_frames` (the binning transform) in __init__,
    and optionally define `preprocessing` and `augmentation`. They take their own arguments and
    pass the rest on by keyword, so each argument is declared (and documented) once.
    """

    dataset_name: str
    tonic_class: type
    layout: str  # the expected files under data_dir, one per line
    source: str  # where the data comes from
    default_bin_width_ms: float  # the bin width when neither bin_width_ms nor duration_ms is given
    official_splits: tuple[str, ...] = ("train", "test")
    augmentation_choices: tuple[str, ...] = ()
    # Valid event coordinates, tonic field -> (limit, what it is); see CheckedSamples.
    event_limits: Mapping[str, tuple[int, str]] = {}
    to_frames: Callable

    def __init__(
        self,
        *,
        num_time_steps: int,
        bin_width_ms: float | None,
        data_dir: str | Path = "data",
        download: bool = True,
        cache_dir: str | Path | None = None,
        val_fraction: float = 0.1,
        duration_ms: float | None = None,
        augmentations: Sequence[str] = (),
        streaming: str | Path | None = None,
        streaming_workers: int | None = None,
        bin_on_device: bool = False,
        **loader_settings: Any,
    ) -> None:
        """Check and store a recorded dataset's settings; `loader_settings` go to SpikeDataModule.

        Args:
            num_time_steps: T, the number of time bins of every sample.
            bin_width_ms: width of one time bin in milliseconds; None: duration_ms /
                num_time_steps, or without duration_ms the dataset's default_bin_width_ms.
            data_dir: folder that holds the dataset's folder (e.g. data_dir/NMNIST).
            download: download the dataset if it is not in data_dir.
            cache_dir: folder for a disk cache of the binned samples, one subfolder per setting
                and per state of the source files (their sizes and modification times: files
                changed since are binned again, not served from the cache); None: no cache.
                A cache this user may only read (filled by another user, a read-only mount)
                serves the samples it holds; those it lacks are computed on every access, with
                a warning.
            val_fraction: fraction of the training file held out (seeded) for validation; None
                (only for datasets with an official validation split) validates on that split.
            duration_ms: if given, the bin width is duration_ms / num_time_steps (bin_width_ms,
                if given too, must agree).
            augmentations: names from the dataset's `augmentation_choices`, applied to training
                samples only; a sample's random draws depend on (seed, epoch, its index in the
                split) only (see seeded_draws), so they are the same with any number of
                workers or processes and after a resume.
            streaming: folder or URL (s3://..., any store litdata supports) of a copy made by
                `exodus-lightning prepare` with the same data settings; batches are then
                streamed from it by litdata (data_dir, download and cache_dir are unused).
            streaming_workers: DataLoader workers for a prepared copy; None: 0 for parts stored
                as frames (decoding them costs less than passing the batches from worker
                processes: docs/streaming.md), num_workers for parts
                stored as events (augmented and binned per sample).
            bin_on_device: where events are binned per access (no cache, augmentation, a copy
                of events), count them into frames on the device, on whole batches, after the
                transfer (see device_binning); the workers then only compute each event's bin.
        """
        super().__init__(**loader_settings)
        if val_fraction is None:
            if "valid" not in self.official_splits:
                raise ValueError(
                    f"{self.dataset_name} has no official validation split: set val_fraction "
                    "to a number between 0 and 1 (e.g. 0.1)"
                )
        else:
            check_val_fraction(val_fraction)
        # Checks num_time_steps too.
        self.bin_width_us = bin_width_us(
            num_time_steps, bin_width_ms, duration_ms, self.default_bin_width_ms
        )
        self.num_time_steps = int(num_time_steps)
        self.augmentation_names = check_augmentation_names(augmentations, self.augmentation_choices)
        self.data_dir = Path(data_dir).expanduser()
        self.download = bool(download)
        self.cache_dir = None if cache_dir is None else Path(cache_dir).expanduser()
        self.val_fraction = val_fraction
        self.streaming = None if streaming is None else str(streaming)
        if streaming_workers is not None and (
            int(streaming_workers) != streaming_workers or streaming_workers < 0
        ):
            raise ValueError(
                f"streaming_workers={streaming_workers} must be 0 (load in the main process), "
                "more, or None (chosen by what the prepared copy stores)"
            )
        self.streaming_workers = streaming_workers
        self.bin_on_device = bool(bin_on_device)
        self._warned_binned_frames = False
        # Loader part -> "frames" or "events", for the prepared copy's parts set up.
        self._stored: dict[str, str] = {}
        self._opened: dict[str, CheckedSamples] = {}

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Features of one time step, as `to_frames` bins them."""
        return self.to_frames.output_shape

    def open_split(self, split: str) -> CheckedSamples:
        """The official `split` as lazily read samples without transforms (one tonic dataset)."""
        raise NotImplementedError

    def open_tonic(self, required_pattern: str, **tonic_kwargs: Any):
        """`tonic_class(data_dir, **tonic_kwargs)`, present if a file matches `required_pattern`
        (see open_tonic_dataset)."""
        return open_tonic_dataset(
            self.tonic_class,
            self.data_dir,
            self.download,
            required_pattern=required_pattern,
            layout=self.layout,
            source=self.source,
            **tonic_kwargs,
        )

    def check_every_class(self, labels: Sequence[int], where: str | Path) -> None:
        """Reject an official split (the folder or file `where`) that holds no sample of some
        class: a download or extraction that stopped midway, or a partial copy, would otherwise
        train or score on fewer classes without a word. (Labels outside the classes are
        check_labels' concern.)"""
        present = set(np.asarray(labels).tolist())
        missing = [label for label in range(self.num_classes) if label not in present]
        if not missing:
            return
        raise DatasetNotFoundError(
            f"'{where}' holds no samples of {len(missing)} of {self.dataset_name}'s "
            f"{self.num_classes} classes (labels 0 to {self.num_classes - 1}): {missing}; its "
            f"{len(labels)} samples belong to the others. The copy is incomplete (a download or "
            f"extraction that stopped midway, or part of a copy): delete '{where}' and download "
            f"{self.dataset_name} again (download=true), or extract or copy it there again in "
            f"full.\nExpected layout under data_dir '{self.data_dir.resolve()}':\n{self.layout}\n"
            f"The data comes from {self.source}."
        )

    def binning(self) -> Callable:
        """The binning run per access: `to_frames`, or with bin_on_device its positions only."""
        return ToEventPositions(self.to_frames) if self.bin_on_device else self.to_frames

    def _warn_frames_come_binned(self, source: str) -> None:
        """bin_on_device=True, but no split bins per access (with augmentation the training
        split does, so it takes effect there): say so once, not silently."""
        if not self.bin_on_device or self.augmentation_names or self._warned_binned_frames:
            return
        self._warned_binned_frames = True
        warnings.warn(
            f"bin_on_device=True has no effect: the frames come binned from {source}; it applies "
            "where events are binned per access (set --data.init_args.cache_dir null, use an "
            "augmentation, or prepare the copy with --store events)",
            UserWarning,
            stacklevel=2,
        )

    def reading(self) -> dict[str, Any]:
        """The settings with which the dataset is read that change which events a sample holds
        (e.g. NMNIST's first_saccade_only), where they differ from the defaults: part of the
        disk cache's key and of a prepared copy's identity, as the transforms are."""
        return {}

    def preprocessing(self) -> list[Callable]:
        """Deterministic event -> event transforms applied to every split (e.g. denoising)."""
        return []

    def augmentation(self) -> list[Callable]:
        """Random event -> event transforms applied to training samples only."""
        return []

    def check_split(self, split: str) -> None:
        if split not in self.official_splits:
            raise ValueError(
                f"unknown split {split!r} for {self.dataset_name}; choose from "
                f"{list(self.official_splits)}"
            )

    def make_dataset(self, split: str, augment: bool = False) -> Dataset:
        """All samples of an official split as (frames (T, *input_shape), label) pairs."""
        self.check_split(split)
        if split not in self._opened:
            self._opened[split] = self.open_split(split)
        samples = copy.copy(self._opened[split])
        deterministic = self.preprocessing()
        random_steps = self.augmentation() if augment else []
        if self.cache_dir is None:
            samples.transform = Pipeline([*deterministic, *random_steps, self.binning()])
            return samples
        if random_steps:
            # Random steps must run on every access, so the cache stops at preprocessed events.
            cached, after_cache = deterministic, [*random_steps, self.binning()]
        else:
            # Frames are cached as small integer counts: ~4x less to decompress than float32.
            cached, after_cache = [*deterministic, self.to_frames, CompactCounts()], [ToFloat32()]
            self._warn_frames_come_binned(f"the disk cache (cache_dir={self.cache_dir})")
        samples.transform = Pipeline(cached)
        # Stat'ed on every call (no file read), so files changed since the last call count too.
        folder = cache_folder(
            self.cache_dir, self.dataset_name, split, self.data_dir, len(samples), cached,
            self.reading(), files_identity(samples.sample_files),
        )
        return disk_cached(samples, folder, Pipeline(after_cache))

    def part_source(self, part: str) -> tuple[str, float | None, int | None]:
        """Where loader `part` ("train", "val", "test") takes its samples: (official split,
        val_fraction, seed); the last two are None when it takes the whole split, and otherwise
        select its side of split_indices(len(split), val_fraction, seed)."""
        if part == "test":
            return "test", None, None
        if self.val_fraction is None:
            return ("train" if part == "train" else "valid"), None, None
        return "train", self.val_fraction, self.seed

    def part_indices(self, part: str) -> list[int]:
        """The indices into part_source(part)'s official split that loader `part` reads."""
        split, val_fraction, seed = self.part_source(part)
        if split not in self._opened:
            self._opened[split] = self.open_split(split)
        num_samples = len(self._opened[split])
        if val_fraction is None:
            return list(range(num_samples))
        train_indices, val_indices = split_indices(num_samples, val_fraction, seed)
        return train_indices if part == "train" else val_indices

    def stored_transforms(self, stored: str) -> list[Callable]:
        """What a prepared copy applied before storing "frames" or (preprocessed) "events"."""
        if stored == "events":
            return self.preprocessing()
        return [*self.preprocessing(), self.to_frames]

    def part_entry(self, part: str, stored: str) -> dict[str, Any]:
        """The manifest entry this DataModule needs for `part` stored as `stored`."""
        split, val_fraction, seed = self.part_source(part)
        return part_entry(
            self.dataset_name, split, val_fraction, seed, stored, self.stored_transforms(stored),
            self.reading(),
        )

    def prepared_entry(self, part: str, augment: bool = False) -> dict[str, Any]:
        """The manifest entry of loader `part` in the prepared copy `streaming`, checked against
        this DataModule's settings (a PreparedDataError names the ones that differ)."""
        manifest = read_manifest(self.streaming)
        if augment and self.augmentation_names:
            # Augmentation runs on events, so only a copy of events will do.
            return check_part(self.streaming, manifest, part, self.part_entry(part, "events"))
        return check_part(
            self.streaming,
            manifest,
            part,
            self.part_entry(part, "frames"),
            accept_events=self.part_entry(part, "events"),
        )

    def open_prepared(self, part: str, augment: bool = False):
        """Loader `part` of the prepared copy `streaming`: frames as stored, or stored events
        run through augmentation (if `augment`) and this DataModule's binning."""
        entry = self.prepared_entry(part, augment)
        shape = (self.num_time_steps, *self.input_shape)
        if entry["stored"] == "events":
            random_steps = self.augmentation() if augment else []
            decoder = SampleDecoder(
                shape, dtype_from_json(entry["events_dtype"]), [*random_steps, self.binning()],
                seed=self.seed if random_steps else None,
            )
        else:
            decoder = SampleDecoder(shape)
            self._warn_frames_come_binned("the prepared copy, which stores frames")
        self._stored[part] = entry["stored"]
        stream = open_part(self.streaming, part, decoder, shuffle=part == "train", seed=self.seed)
        # Augmentation draws from (seed, epoch, source index), as on the tonic path.
        decoder.draw_by_pass_of(stream)
        # Training streams; evaluation reads by index in order (see InOrder).
        return stream if part == "train" else InOrder(stream, entry["num_samples"])

    def splits_for(self, stage: str | None) -> list[str]:
        """The official splits that `stage` ("fit", "validate", "test", "predict"; None: all)
        reads."""
        splits = []
        if stage in (None, "fit", "validate"):
            splits.append("train")
            if self.val_fraction is None:
                splits.append("valid")
        if stage in (None, "test", "predict"):
            splits.append("test")
        return splits

    def prepare_data(self) -> None:
        """Check that the splits this run reads are there, downloading them if allowed.

        Lightning calls this once per node before setup() and before it starts the loggers, so
        a missing dataset fails before a (W&B) run is created, and DDP ranks never download
        the same files at once.
        """
        trainer = getattr(self, "trainer", None)
        fn = None if trainer is None else trainer.state.fn
        stage = getattr(fn, "value", fn)  # TrainerFn is a str enum
        if self.streaming is not None:
            require_litdata(f"streaming='{self.streaming}'")
            parts = {"train", "val"} if stage in (None, "fit", "validate") else set()
            parts |= {"test"} if stage in (None, "test", "predict") else set()
            for part in sorted(parts):
                self.prepared_entry(part, augment=part == "train")
            return
        for split in self.splits_for(stage):
            if split not in self._opened:
                self._opened[split] = self.open_split(split)

    def setup(self, stage: str | None = None) -> None:
        if self.streaming is not None:
            if stage in (None, "fit", "validate"):
                self.train_dataset = self.open_prepared("train", augment=True)
                self.val_dataset = self.open_prepared("val")
            if stage in (None, "test", "predict"):
                self.test_dataset = self.open_prepared("test")
            return
        if stage in (None, "fit", "validate"):
            # Training samples draw their augmentation from (seed, epoch, index in the split):
            # see seeded_draws.
            augmented = self.make_dataset("train", augment=True)
            draws = bool(self.augmentation())
            if self.val_fraction is None:
                self.train_dataset = EpochSeededSubset(augmented, range(len(augmented)), self.seed,
                                                       draws)
                self.val_dataset = self.make_dataset("valid")
            else:
                plain = self.make_dataset("train")
                train_indices, val_indices = split_indices(len(plain), self.val_fraction, self.seed)
                self.train_dataset = EpochSeededSubset(augmented, train_indices, self.seed, draws)
                self.val_dataset = Subset(plain, val_indices)
        if stage in (None, "test", "predict"):
            self.test_dataset = self.make_dataset("test")

    def loader_workers(self, part: str) -> int:
        """DataLoader workers for loader `part`: num_workers, or with streaming, as
        streaming_workers says."""
        if self.streaming is None:
            return self.num_workers
        if self.streaming_workers is not None:
            return int(self.streaming_workers)
        return self.num_workers if self._stored.get(part) == "events" else 0

    def _loader(
        self, dataset: Dataset | None, name: str, shuffle: bool, num_workers: int | None = None
    ) -> DataLoader:
        workers = (self.loader_workers({"validation": "val"}.get(name, name))
                   if num_workers is None else num_workers)
        if self.streaming is None or dataset is None or isinstance(dataset, InOrder):
            return super()._loader(dataset, name, shuffle, workers)
        # Shuffling (from seed and epoch) and the split between ranks and workers are litdata's;
        # the epoch is the Trainer's, as on the tonic path.
        return streaming_loader(
            dataset,
            epoch=self._trainer_epoch,
            batch_size=self.batch_size,
            num_workers=workers,
            collate_fn=pad_time_collate,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers and workers > 0,
        )
