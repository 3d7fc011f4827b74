"""One error hierarchy for everything a user can get wrong.

The CLI catches `SltError` at a single boundary, prints ``error: <message>`` and the
optional hint to stderr, and exits with status 2. Anything else is a bug.
"""

from __future__ import annotations

import errno

# Writing fails through the machine's fault when the disk is full or failing; any
# other failure (permissions, a read-only or missing folder, a file in the way) the
# user fixes by writing elsewhere.
MACHINE_FAULTS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO})


class SltError(Exception):
    """A mistake the user can fix: bad flag, bad file, unknown checkpoint, bad data.

    Args:
        message: One plain line that says what is wrong.
        hint: An optional second line that says what to do about it.
    """

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ConfigError(SltError):
    """A stages.toml (or a flag that overrides it) that cannot be used."""

    def __init__(self, problems: list[str] | str, hint: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems), hint)


class DataError(SltError):
    """A data source that is missing, malformed or inconsistent."""


class CheckpointError(SltError):
    """A checkpoint that is missing, damaged or does not match what is asked of it."""


class StorageError(SltError):
    """A file that cannot be written: a read-only folder, a full disk.

    Exit status 2 when the user can fix it by pointing elsewhere (permissions),
    1 when the machine is at fault (no space, an I/O error).
    """

    def __init__(self, message: str, hint: str | None = None, *, machine_fault: bool) -> None:
        super().__init__(message, hint)
        self.exit_code = 1 if machine_fault else 2

    @classmethod
    def writing(cls, path: object, exc: OSError, *, elsewhere: str) -> StorageError:
        """The error for ``exc``, raised while writing ``path``; ``elsewhere`` says how
        to write somewhere else, e.g. "with --checkpoint-dir"."""
        machine = exc.errno in MACHINE_FAULTS
        hint = (f"Free some space, or write elsewhere {elsewhere}." if machine
                else f"Choose a place you can write to {elsewhere}.")
        return cls(f"cannot write {path}: {exc.strerror or exc}", hint, machine_fault=machine)


class TrainingDiverged(SltError):
    """The loss or the weights stopped being finite numbers; the run stops."""

    exit_code = 1


class RunInterrupted(SltError):
    """Stopped by Ctrl-C after saving the state to resume from."""

    exit_code = 130


class BudgetMissed(SltError):
    """A distilled student was saved but misses ``--max-mb`` or ``--max-ms``: exit 3,
    apart from a mistake (2) or a fault (1), so scripts can tell them apart."""

    exit_code = 3


class UnreadableFile(SltError):
    """A file slt will not read: not a regular file (a FIFO, a device, a folder), larger
    than the limit for its kind, not UTF-8 text, not valid JSON, or nested too deeply.

    Args:
        path: The file.
        reason: What is wrong with it, e.g. "a FIFO, not a regular file".
    """

    def __init__(self, path: object, reason: str, hint: str | None = None) -> None:
        super().__init__(f"{path}: {reason}", hint)
        self.path = path
        self.reason = reason
