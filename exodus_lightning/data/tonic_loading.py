"""Opening tonic datasets with clear errors, and reading their samples lazily and safely."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch.utils.data

from exodus_lightning.data.errors import (
    DatasetDownloadError,
    DatasetNotFoundError,
    UnreadableFileError,
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
        f"The data comes from {source} (tonic's {tonic_class.__name__} downloads it)."
    )
    present = next(folder.glob(required_pattern), None) is not None
    if present:
        dataset = tonic_class.__new__(tonic_class)
        # tonic's own check (`_check_exists`) also wants the downloaded archive and e.g.
        # >= 10000 N-MNIST files, and downloads when it fails. An instance attribute shadows it
        # for this construction only; it is deleted afterwards so the dataset stays picklable
        # for spawned workers.
        dataset._check_exists = _extracted_files_are_present
        tonic_class.__init__(dataset, str(folder.parent), **tonic_kwargs)
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
        missing.fixes = {"download": "true",
                         "data_dir": f"<folder that contains {tonic_class.__name__}/>"}
        raise missing
    if len(dataset) == 0:
        raise DatasetNotFoundError(
            f"{tonic_class.__name__} in '{folder}' holds no samples for {tonic_kwargs}.\n{where}"
        )
    return dataset


class CheckedSamples(torch.utils.data.Dataset):
    """Sample i = transform(events_i), label_i of a tonic dataset, read lazily on access.

    A sample that tonic cannot parse raises UnreadableFileError naming its file. `sample_files`
    is either one path per sample or one path for all (an HDF5 file); `check_file(path)` may
    reject a file before tonic parses it (e.g. a truncated binary tonic would misread).
    """

    def __init__(
        self,
        tonic_dataset,
        sample_files: list[str] | str,
        transform: Callable | None = None,
        check_file: Callable[[str], None] | None = None,
    ) -> None:
        self.tonic_dataset = tonic_dataset
        self.sample_files = sample_files
        self.transform = transform
        self.check_file = check_file

    def __len__(self) -> int:
        return len(self.tonic_dataset)

    def file_of(self, index: int) -> str:
        """The file that holds sample `index`."""
        if isinstance(self.sample_files, str):
            return self.sample_files
        return self.sample_files[index]

    def __getitem__(self, index: int):
        try:
            if self.check_file is not None:
                self.check_file(self.file_of(index))
            events, target = self.tonic_dataset[index]
        except UnreadableFileError:
            raise
        except Exception as error:
            raise UnreadableFileError(
                f"Could not read sample {index} from '{self.file_of(index)}': {error!r}. "
                "The file is truncated or corrupt: delete it and download the dataset again."
            ) from error
        if self.transform is not None:
            events = self.transform(events)
        return events, int(target)
