"""Errors a user can act on.

Owns the exception hierarchy. Every message names the object, the bad value, what was expected
and the next step; the CLI prints the message alone (no traceback) and exits with code 2.
"""

from __future__ import annotations


class LifelongError(Exception):
    """Base of every error that is the user's to fix (config, data, divergence, saved state)."""


class ConfigError(LifelongError):
    """A configuration key, value or name is wrong. May carry several problems at once."""

    def __init__(self, problems: str | list[str]) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class DataError(LifelongError):
    """A data file is missing, truncated or corrupt, or tensors have the wrong shape."""


class DivergenceError(LifelongError):
    """The training loss became NaN or infinite."""


class StateError(LifelongError):
    """A saved state does not match the object it is loaded into."""


class RunBusyError(StateError):
    """The run is being written by another live process (e.g. two sweeps on one store)."""
