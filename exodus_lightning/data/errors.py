"""Errors raised by the data layer, each naming what is wrong and how to fix it."""

from __future__ import annotations


class DatasetNotFoundError(FileNotFoundError):
    """The extracted dataset is missing from the folder where it is expected."""


class DatasetDownloadError(RuntimeError):
    """tonic's download (or the check that follows it) failed."""


class UnreadableFileError(OSError):
    """A dataset file exists but cannot be parsed (truncated, corrupt or wrong format)."""
