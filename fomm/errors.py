"""The error family for problems the user can fix; ``str(err)`` is the whole user-facing line."""

from __future__ import annotations


class FommError(Exception):
    """Something the user can fix (bad input, wrong checkpoint, missing file).

    The CLI prints ``error: <message>`` and exits with status 2; anything else is a bug.
    """


class InputError(FommError):
    """A missing, empty, corrupt or unsupported image or video."""


class CheckpointError(FommError):
    """A checkpoint that cannot be read, is unsafe, or does not match its config."""


class ConfigError(FommError):
    """An unknown, missing or ill-typed configuration key."""


class NoFaceError(FommError):
    """No face was found where one was required."""
