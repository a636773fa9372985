"""Errors raised by the data layer, each naming what is wrong and how to fix it."""

from __future__ import annotations


class DataError(Exception):
    """Base of the data layer's errors. `fixes` maps DataModule arguments to values that fix
    the error (e.g. {"download": "true"}), so that a command line can name its own flags."""

    fixes: dict[str, str] = {}


class DatasetNotFoundError(DataError, FileNotFoundError):
    """The extracted dataset is missing from the folder where it is expected."""


class DatasetDownloadError(DataError, RuntimeError):
    """tonic's download (or the check that follows it) failed."""


class UnreadableFileError(DataError, OSError):
    """A dataset file exists but cannot be parsed (truncated, corrupt or wrong format)."""


class InvalidDataError(DataError, ValueError):
    """A dataset's files can be read but hold what the dataset cannot: a stray folder, a label
    or an event coordinate out of range, a NaN or negative time, fewer labels than samples."""
