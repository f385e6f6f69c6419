"""User-facing errors: each names the problem and the fix; the CLI prints them on one line (exit 2)."""
from __future__ import annotations


class KerasVAEError(Exception):
    """Base class of every error a user can cause (bad option, bad data, bad file)."""


class ConfigError(KerasVAEError, ValueError):
    """An unknown or inconsistent configuration value."""


class DataError(KerasVAEError, ValueError):
    """Input data that cannot be used: wrong shape or channels, NaN, missing or unreadable files."""


class ArtifactError(KerasVAEError, OSError):
    """A run folder, model file or export that is missing, corrupt or would be overwritten."""


def choices(valid) -> str:
    """Format valid choices for an error message: 'a', 'b' or 'c'."""
    items = [repr(v) for v in valid]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " or " + items[-1]
