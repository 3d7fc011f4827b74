"""One run per checkpoint folder.

The lock is an ``flock`` on ``.slt.lock`` in the folder: the kernel releases it when
the process ends, however it ends, so a killed run's leftover file never blocks the
next one. The file itself only tells the next comer who holds the folder.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from slt_cli.errors import SltError, StorageError, UnreadableFile
from slt_cli.files import open_regular

LOCK_FILE = ".slt.lock"


@contextmanager
def folder_lock(directory: Path, run_id: str) -> Iterator[None]:
    """Hold ``directory`` for the run ``run_id`` while the block runs.

    Raises:
        SltError: when a live run holds the folder (its id, pid and start are named).
        StorageError: when the folder cannot be created or written.
    """
    try:
        directory.mkdir(parents=True, exist_ok=True)
        handle = open(directory / LOCK_FILE, "a+", encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        raise StorageError.writing(directory, exc, elsewhere="with --checkpoint-dir") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise SltError(f"{directory} is in use by {_describe(handle.read())}",
                           hint="Wait for that run to end, or use another --checkpoint-dir."
                           ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({
            "run_id": run_id, "pid": os.getpid(),
            "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}))
        handle.flush()
        try:
            yield
        finally:
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)


def _describe(text: str) -> str:
    try:
        holder = json.loads(text)
        return f"run {holder['run_id']} (pid {holder['pid']}, since {holder['started_at']})"
    except (ValueError, KeyError, TypeError):
        return "another slt run"


@contextmanager
def folder_idle(directory: Path) -> Iterator[bool]:
    """Whether no live run holds ``directory``, kept true while the block runs.

    Readers use it before tidying what a killed run left behind: a live run's
    temporary files are its writes in progress and must not be touched. A folder no
    run ever locked is idle; one that cannot even be opened counts as busy.
    """
    try:
        handle = open_regular(directory / LOCK_FILE)  # a FIFO there must not hang a reader
    except UnreadableFile:
        yield not (directory / LOCK_FILE).is_symlink() and not (directory / LOCK_FILE).exists()
        return
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
