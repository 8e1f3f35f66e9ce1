"""One exception family for problems a user must fix (bad data, bad config).

Each error prints as one line that names the file (or patient) and the problem,
so that batch commands can collect them and report them at the end.
"""

from __future__ import annotations

import os


class SvganError(Exception):
    """Base class of every error meant for a user rather than a developer."""

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        self.path = None if path is None else os.fspath(path)
        self.message = message
        super().__init__(f"{self.path}: {message}" if self.path else message)


class DataError(SvganError):
    """A dataset file or folder cannot be used (missing, corrupt, inconsistent)."""


class ConfigError(SvganError):
    """A configuration file or value is invalid."""
