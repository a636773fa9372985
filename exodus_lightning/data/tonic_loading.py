"""Opening tonic datasets with clear errors, and reading their samples lazily and safely."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch.utils.data

from exodus_lightning.data.errors import (
    DataError,
    DatasetDownloadError,
    DatasetNotFoundError,
    InvalidDataError,
    unreadable_file_error,
)


def _extracted_files_are_present() -> bool:
    # Stands in for tonic's `_check_exists` once we have checked the extracted layout ourselves.
    return True


def open_tonic_dataset(
    tonic_class: type,
    data_dir: str | Path,
    download: bool,
    required_pattern: str,
    layout: str,
    source: str,
    **tonic_kwargs: Any,
):
    """Construct `tonic_class(data_dir, **tonic_kwargs)`, which reads `data_dir/<ClassName>/`.

    The data counts as present when `data_dir/<ClassName>` holds a file matching
    `required_pattern` (a glob). Present data is opened as it is, with no network access, even
    without the archives tonic downloads (extracted by hand, or copied to a cluster).
    download=True: absent data is downloaded by tonic. download=False: absent data raises
    DatasetNotFoundError naming the folder, the expected `layout` and the `source` of the data.
    """
    folder = Path(data_dir).expanduser().resolve() / tonic_class.__name__
    # The layout's paths start with the dataset's folder name, so they are relative to data_dir.
    where = (
        f"Expected layout under data_dir '{folder.parent}':\n{layout}\n"
        f"The data comes from {source}; tonic's {tonic_class.__name__} downloads it."
    )
    present = next(folder.glob(required_pattern), None) is not None
    if present:
        dataset = tonic_class.__new__(tonic_class)
        # tonic's own check (`_check_exists`) also wants the downloaded archive and e.g.
        # >= 10000 N-MNIST files, and downloads when it fails. An instance attribute shadows it
        # for this construction only; it is deleted afterwards so the dataset stays picklable
        # for spawned workers.
        dataset._check_exists = _extracted_files_are_present
        try:
            tonic_class.__init__(dataset, str(folder.parent), **tonic_kwargs)
        except (ValueError, KeyError) as error:
            # tonic parses labels and ids from file and folder names while listing them, and
            # reads entries of HDF5 files (SHD, SSC): a name it does not parse, or an entry
            # missing (h5py's KeyError does not name it; the DataModules check their files
            # first, this is the net under that).
            raise InvalidDataError(
                f"tonic could not list or open {tonic_class.__name__} in '{folder}' "
                f"({error!r}): a file or folder there does not follow the layout.\n{where}"
            ) from error
        del dataset._check_exists
    elif download:
        try:
            dataset = tonic_class(str(folder.parent), **tonic_kwargs)
        except Exception as error:
            failure = DatasetDownloadError(
                f"Could not download or open {tonic_class.__name__} into '{folder}': {error!r}.\n"
                f"{where}\nDownload and extract it there by hand (then download=False skips "
                "the network), or point data_dir at a folder that holds it."
            )
            failure.fixes = {"data_dir": f"<folder that contains {tonic_class.__name__}/>"}
            raise failure from error
    else:
        missing = DatasetNotFoundError(
            f"{tonic_class.__name__} not found: no file matching '{required_pattern}' in "
            f"'{folder}' and download=False.\n{where}\n"
            "Pass download=True to fetch it, or point data_dir at the folder that contains "
            f"'{tonic_class.__name__}/'."
        )
        missing.fixes = {
            "download": "true",
            "data_dir": f"<folder that contains {tonic_class.__name__}/>",
        }
        raise missing
    if len(dataset) == 0:
        raise DatasetNotFoundError(
            f"{tonic_class.__name__} in '{folder}' holds no samples for {tonic_kwargs}.\n{where}"
        )
    return dataset


def check_labels(
    labels: Sequence[int], files: Sequence[str] | str, num_classes: int, dataset_name: str
) -> None:
    """Reject a label outside 0 .. num_classes - 1, naming its file (`files`: one per label, or
    one file holding them all), before it fails far away as a loss-time IndexError."""
    labels = np.asarray(labels)
    outside = (labels < 0) | (labels >= num_classes)
    if not outside.any():
        return
    index = int(np.argmax(outside))
    if isinstance(files, str):
        where = f"'{files}' gives sample {index} the label {labels[index]}"
    else:
        where = f"'{files[index]}' has the label {labels[index]}"
    raise InvalidDataError(
        f"{where}, but {dataset_name} has {num_classes} classes (labels 0 to {num_classes - 1}); "
        f"{int(outside.sum())} of {len(labels)} labels are out of range. The file is not part "
        f"of {dataset_name} (another dataset's?) or its label is wrong: remove or replace it."
    )


def find_bad_events(events: np.ndarray, limits: Mapping[str, tuple[int, str]]) -> str | None:
    """What would make binning drop events without a word, or None: a negative time, or a
    coordinate outside 0 .. limit - 1 (`limits`: tonic field -> (limit, what it is))."""
    if len(events) == 0:
        return None
    times = events["t"]
    if times.min() < 0:
        index = int(np.argmax(times < 0))
        return (
            f"event {index} has the negative time t = {times[index]} microseconds "
            f"({int((times < 0).sum())} of {len(times)} events are negative)"
        )
    for field, (limit, meaning) in limits.items():
        values = events[field]
        if values.min() >= 0 and values.max() < limit:  # reductions only: the common case
            continue
        outside = (values < 0) | (values >= limit)
        if outside.any():
            index = int(np.argmax(outside))
            return (
                f"event {index} has the {meaning} {field} = {values[index]}, outside 0 to "
                f"{limit - 1} ({int(outside.sum())} of {len(values)} events are outside)"
            )
    return None


class CheckedSamples(torch.utils.data.Dataset):
    """Sample i = transform(events_i), label_i of a tonic dataset, read lazily on access.

    A sample that tonic cannot parse raises UnreadableFileError naming its file. `sample_files`
    is either one path per sample or one path for all (an HDF5 file); `check_file(path)` may
    reject a file before tonic parses it (e.g. a truncated binary tonic would misread). Parsed
    events with NaN, infinite or negative times, or coordinates outside `event_limits` (tonic
    field -> (limit, what it is)), raise InvalidDataError: binning would silently drop them.
    """

    def __init__(
        self,
        tonic_dataset,
        sample_files: list[str] | str,
        transform: Callable | None = None,
        check_file: Callable[[str], None] | None = None,
        event_limits: Mapping[str, tuple[int, str]] | None = None,
        fix: str = "delete it and download the dataset again",
    ) -> None:
        self.tonic_dataset = tonic_dataset
        self.sample_files = sample_files
        self.transform = transform
        self.check_file = check_file
        self.event_limits = dict(event_limits or {})
        self.fix = fix

    def __len__(self) -> int:
        return len(self.tonic_dataset)

    def file_of(self, index: int) -> str:
        """The file that holds sample `index`."""
        if isinstance(self.sample_files, str):
            return self.sample_files
        return self.sample_files[index]

    def __getitem__(self, index: int):
        path = self.file_of(index)
        try:
            if self.check_file is not None:
                self.check_file(path)
            # tonic casts float times (SHD/SSC seconds) to integer microseconds; a NaN or an
            # infinity would otherwise become a huge negative number with only a numpy warning.
            with np.errstate(invalid="raise"):
                events, target = self.tonic_dataset[index]
        except DataError:
            raise
        except FloatingPointError as error:
            raise InvalidDataError(
                f"Sample {index} of '{path}' has event times (or coordinates) that are NaN or "
                f"infinite ({error}); {self.fix}."
            ) from error
        except Exception as error:
            raise unreadable_file_error(
                path, error, self.fix, part=f"sample {index} of "
            ) from error
        problem = find_bad_events(events, self.event_limits)
        if problem is not None:
            raise InvalidDataError(f"Sample {index} of '{path}': {problem}; {self.fix}.")
        if self.transform is not None:
            events = self.transform(events)
        return events, int(target)
