"""What slt may touch on disk, and how it writes: shared by everything that writes.

slt deletes, moves or overwrites only files it can prove it wrote. Its temporary files
have one exact name, ``.NAME.slt-<pid>-<8 hex>.tmp`` beside the file ``NAME`` they will
become, so a file of another program (``.draft.tmp``) never looks like one; they are
removed only by a writing command, and only once the process that wrote them is gone.
The folders slt keeps inside a checkpoint folder (``archive/``, ``resume/``,
``exports/``) must be real folders: a symbolic link there would make slt move or
delete files elsewhere, so it is refused.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
from pathlib import Path

from slt_cli.errors import SltError

_TEMP = re.compile(r"\.(?P<final>.+)\.slt-(?P<pid>[0-9]{1,10})-[0-9a-f]{8}\.tmp")
# O_NOFOLLOW: a symbolic link planted where slt writes is an error, never followed.
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


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


def temp_path(path: Path) -> Path:
    """A new temporary name beside ``path``: ``.NAME.slt-<pid>-<random>.tmp``."""
    return path.with_name(f".{path.name}.slt-{os.getpid()}-{secrets.token_hex(4)}.tmp")


def create_new(path: Path) -> int:
    """Create ``path`` (which must not exist, nor be a link) for writing, mode 0666 less
    the umask like any file a program makes; returns the file descriptor."""
    return os.open(path, _NEW_FILE, 0o666)


def temp_target(tmp: Path) -> str | None:
    """The name of the file ``tmp`` was going to become, when ``tmp`` is one of slt's
    temporary files; None for any other file."""
    match = _TEMP.fullmatch(tmp.name)
    return match["final"] if match else None


def abandoned_temps(folder: Path, final: str | None = None) -> list[Path]:
    """slt's temporary files in ``folder`` (for ``final`` only, when given) whose writer
    is gone: its process has ended, or its pid is this process's own (a process that
    used this pid before, e.g. in a container). A temporary file of a live process is
    a write in progress and is left alone; other programs' files never match."""
    found = []
    if not folder.is_dir() or folder.is_symlink():
        return found
    for entry in folder.iterdir():
        match = _TEMP.fullmatch(entry.name)
        if (match and (final is None or match["final"] == final) and entry.is_file()
                and not entry.is_symlink() and _writer_gone(int(match["pid"]))):
            found.append(entry)
    return sorted(found)


def _writer_gone(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OverflowError:
        return True  # no process can have that pid
    except PermissionError:
        return False  # another user's live process
    return False


def own_folder(directory: Path, name: str) -> Path:
    """``directory/name``, a folder slt keeps there, checked not to lead elsewhere.

    Raises:
        SltError: when it is a symbolic link or not a folder.
    """
    path = directory / name
    if path.is_symlink():
        raise SltError(f"{path} is a symbolic link; slt keeps its own files there and will "
                       "not move or delete files through a link",
                       hint="Replace the link with a real folder (move what it points to "
                            "there), or use another --checkpoint-dir.")
    if path.exists() and not path.is_dir():
        raise SltError(f"{path} is not a folder; slt keeps its own files there",
                       hint="Move that file away, or use another --checkpoint-dir.")
    return path


_fault_hits = 0


def fault_point() -> None:
    """Fault-injection hook for the kill tests: with ``SLT_TEST_KILL_AT=N`` in the
    environment, the N-th call kills this process with SIGKILL. A no-op otherwise."""
    global _fault_hits
    target = os.environ.get("SLT_TEST_KILL_AT")
    if not target:
        return
    _fault_hits += 1
    if _fault_hits == int(target):
        os.kill(os.getpid(), signal.SIGKILL)
