"""One run per checkpoint folder.

The lock is an ``flock`` on ``.slt.lock`` in the folder: the kernel releases it when
the process ends, however it ends, so a killed run's leftover file never blocks the
next one. The file itself only tells the next comer who holds the folder. A writer
refreshes the folder's listing index (``catalog``) as it lets go.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from slt_cli.errors import SltError, StorageError
from slt_cli.store.catalog import refresh_index

LOCK_FILE = ".slt.lock"
_LOCK_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


@contextmanager
def folder_lock(directory: Path, run_id: str) -> Iterator[None]:
    """Hold ``directory`` for the run ``run_id`` while the block runs.

    Raises:
        SltError: when a live run holds the folder (its id, pid and start are named).
        StorageError: when the folder cannot be created or written.
    """
    path = directory / LOCK_FILE
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # Never through a link: the file is truncated, and a link could name any file.
        handle = os.fdopen(os.open(path, _LOCK_FLAGS, 0o666), "r+", encoding="utf-8")
    except OSError as exc:
        if path.is_symlink():
            raise SltError(f"{path} is a symbolic link; slt will not write through it",
                           hint="Remove the link (slt makes the file itself).") from None
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
            # the writer leaves the listing index up to date (a failed run need not)
            refresh_index(directory)
        finally:
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)


def _describe(text: str) -> str:
    try:
        holder = json.loads(text)
        return f"run {holder['run_id']} (pid {holder['pid']}, since {holder['started_at']})"
    except (ValueError, KeyError, TypeError):
        return "another slt run"
