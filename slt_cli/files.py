"""File-system durability shared by everything that writes atomically."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_directory(folder: Path) -> None:
    """Make renames and new entries in ``folder`` durable (fsync of the directory)."""
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def readable_as_umask_allows(path: Path) -> None:
    """Give a file made through ``tempfile`` (mode 0600) the mode a plain ``open`` would
    have given it (0666 less the umask): for files people share, e.g. figures."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)
