"""Errors raised by the data layer, each naming what is wrong and how to fix it."""

from __future__ import annotations

from pathlib import Path


class DataError(Exception):
    """Base of the data layer's errors. `fixes` maps DataModule arguments to values that fix
    the error (e.g. {"download": "true"}), so that a command line can name its own flags."""

    fixes: dict[str, str] = {}


class DatasetNotFoundError(DataError, FileNotFoundError):
    """The extracted dataset, or part of it (whole classes of a split), is missing from the
    folder where it is expected."""


class DatasetDownloadError(DataError, RuntimeError):
    """tonic's download (or the check that follows it) failed."""


class UnreadableFileError(DataError, OSError):
    """A dataset file exists but cannot be read (permission denied) or parsed (truncated,
    corrupt or wrong format)."""


class InvalidDataError(DataError, ValueError):
    """A dataset's files can be read but hold what the dataset cannot: a stray folder, a label
    or an event coordinate out of range, a NaN or negative time, fewer labels than samples."""


def unreadable_file_error(
    path: str | Path, error: BaseException, fix: str, part: str = ""
) -> UnreadableFileError:
    """The error for `path` (or `part` of it, e.g. "sample 3 of "), which could not be read: a
    permission problem says so; anything else means a truncated or corrupt file, and `fix` says
    what to do about that (e.g. "delete it and download SHD again")."""
    if isinstance(error, PermissionError):
        return UnreadableFileError(
            f"Permission denied reading {part}'{path}': give this user read access to the file "
            "and its folders, or point data_dir at a copy this user can read."
        )
    return UnreadableFileError(
        f"Could not read {part}'{path}' ({error!r}): the file is truncated or corrupt; {fix}."
    )


class PreparedDataError(DataError, ValueError):
    """A prepared (streamed) copy that this DataModule cannot use: not a prepared copy, made
    from another dataset or with other settings, or litdata (which reads it) missing."""
