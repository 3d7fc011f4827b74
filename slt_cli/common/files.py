"""Files on disk: bounded reads of what users can hand us, and what slt may write.

Every file slt reads that a user could replace (a sidecar, a config, a state file, a
CSV listing, weights) goes through ``read_bounded``: it opens regular files only
(symlinks are followed to regular files only, so a FIFO never hangs a read and
``/dev/zero`` is never read to exhaustion), and reads at most one byte past the limit
for the file's kind, so a huge file is refused before it fills the memory.

slt deletes, moves or overwrites only files it can prove it wrote. Its temporary files
have one exact name, ``.NAME.slt-<pid>-<8 hex>.tmp`` beside the file ``NAME`` they will
become, so a file of another program (``.draft.tmp``) never looks like one; they are
removed only by a writing command, and only once the process that wrote them is gone.
The folders slt keeps inside a checkpoint folder (``archive/``, ``resume/``,
``exports/``) must be real folders: a symbolic link there would make slt move or
delete files elsewhere, so it is refused.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import secrets
import signal
import stat
from pathlib import Path
from typing import Any, BinaryIO, Literal

from slt_cli.errors import SltError, UnreadableFile

Kind = Literal["json", "toml", "csv", "weights", "data"]

MiB = 1 << 20
# The most bytes read of each kind of file. Sidecars and state files hold settings,
# class names and metrics (a 2,000-class sidecar is ~60 KiB); a config is a page of
# TOML; a CSV listing of GISLR's 94,477 sequences is ~6 MiB.
READ_LIMITS: dict[Kind, int] = {
    "json": 16 * MiB,
    "toml": 1 * MiB,
    "csv": 256 * MiB,
    "weights": 64 * 1024 * MiB,
    "data": 64 * 1024 * MiB,
}
_NAMES = {"json": "a JSON file", "toml": "a config", "csv": "a CSV listing",
          "weights": "a weights file", "data": "a data file"}


def read_bounded(path: Path, kind: Kind) -> bytes:
    """The bytes of ``path``, a regular file of at most ``READ_LIMITS[kind]`` bytes.

    Raises:
        UnreadableFile: when ``path`` cannot be opened, is not a regular file (see
            ``open_regular``), or is larger than the limit.
    """
    return read_bounded_with_stat(path, kind)[0]


def read_bounded_with_stat(path: Path, kind: Kind, *, follow_symlinks: bool = True
                           ) -> tuple[bytes, os.stat_result]:
    """``read_bounded``, with the ``fstat`` of the very file read (so what a cache
    records of a file's identity on disk is that of the bytes it read, even when the
    file is replaced meanwhile); ``follow_symlinks=False`` refuses a symbolic link.

    Raises:
        UnreadableFile: as ``read_bounded``.
    """
    limit = READ_LIMITS[kind]
    with open_regular(path, follow_symlinks=follow_symlinks) as handle:
        try:
            status = os.fstat(handle.fileno())
            size = status.st_size
            if size > limit:
                raise UnreadableFile(path, _too_large(kind))
            # One read of the size the file says it has (one allocation), then more only
            # when it grew meanwhile, never past limit + 1 bytes.
            chunks = [handle.read(size + 1)]
            read = len(chunks[0])
            while size < read <= limit and chunks[-1]:
                chunks.append(handle.read(min(limit + 1 - read, 16 * MiB)))
                read += len(chunks[-1])
        except OSError as exc:
            raise UnreadableFile(path, f"cannot read ({exc.strerror or exc})") from None
    if read > limit:
        raise UnreadableFile(path, _too_large(kind))
    return (chunks[0] if len(chunks) == 1 else b"".join(chunks)), status


def sha256_of(path: Path, kind: Kind) -> str:
    """The SHA-256 of ``path``, a regular file of at most ``READ_LIMITS[kind]`` bytes,
    read block by block (a file of gigabytes costs a megabyte of memory).

    Raises:
        UnreadableFile: as ``read_bounded``.
    """
    digest = hashlib.sha256()
    with open_regular(path) as handle:
        try:
            if os.fstat(handle.fileno()).st_size > READ_LIMITS[kind]:
                raise UnreadableFile(path, _too_large(kind))
            read = 0
            for block in iter(lambda: handle.read(MiB), b""):
                read += len(block)
                if read > READ_LIMITS[kind]:  # it grew while read
                    raise UnreadableFile(path, _too_large(kind))
                digest.update(block)
        except OSError as exc:
            raise UnreadableFile(path, f"cannot read ({exc.strerror or exc})") from None
    return digest.hexdigest()


def regular_file(path: Path) -> Path:
    """``path``, after checking it is a regular file (a symlink followed to one), so
    that a reader that takes a path (``np.load`` with ``mmap_mode``) never waits on a
    FIFO or reads a device.

    Raises:
        UnreadableFile: when it cannot be opened or is not a regular file.
    """
    open_regular(path).close()
    return path


def open_regular(path: Path, *, follow_symlinks: bool = True) -> BinaryIO:
    """``path`` opened for reading in binary, when it is a regular file (a symlink is
    followed, to a regular file only; refused with ``follow_symlinks=False``).

    Opening does not block (a FIFO is opened and refused, not waited on); the check
    runs on the opened file, so a path swapped between check and read gains nothing.

    Raises:
        UnreadableFile: when ``path`` cannot be opened or is not a regular file.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    if not follow_symlinks:
        flags |= os.O_NOFOLLOW
    try:
        handle = os.open(path, flags)
    except OSError as exc:
        raise UnreadableFile(path, f"cannot read ({exc.strerror or exc})") from None
    try:
        mode = os.fstat(handle).st_mode
        if not stat.S_ISREG(mode):
            raise UnreadableFile(path, f"{_file_type(mode)}, not a regular file")
        os.set_blocking(handle, True)
    except BaseException:
        os.close(handle)
        raise
    return os.fdopen(handle, "rb")


def read_text(path: Path, kind: Kind) -> str:
    """``read_bounded`` decoded as UTF-8.

    Raises:
        UnreadableFile: as ``read_bounded``, or when the bytes are not UTF-8 text.
    """
    return decode_utf8(read_bounded(path, kind), path)


def decode_utf8(blob: bytes, path: Path) -> str:
    """``blob`` (the content of ``path``) as text; a leading byte-order mark is dropped.

    Raises:
        UnreadableFile: naming the offset of the first byte that is not UTF-8.
    """
    try:
        return blob.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnreadableFile(path, f"not UTF-8 text (byte 0x{blob[exc.start]:02x} at offset "
                                   f"{exc.start})") from None


def load_json(path: Path) -> Any:
    """The JSON value in ``path``, read through ``read_bounded``.

    NaN, Infinity and numbers too large for a float are refused: slt never writes
    them (``allow_nan=False``), so a file holding them was edited.

    Raises:
        UnreadableFile: when the file cannot be read, is not valid JSON or is nested
            too deeply.
    """
    return parse_json(read_text(path, "json"), path)


def parse_json(text: str, path: Path) -> Any:
    """``text`` (the content of ``path``) as JSON; see ``load_json``."""
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise UnreadableFile(path, "not valid JSON (nested too deeply)") from None
    except ValueError as exc:
        raise UnreadableFile(path, f"not valid JSON ({exc})") from None


def read_csv(path: Path) -> tuple[tuple[str, ...], list[dict[str, str | None]]]:
    """The header and rows of the CSV file ``path`` (a listing such as train.csv), read
    through ``read_bounded``; a short row's missing cells are None.

    Raises:
        UnreadableFile: when the file cannot be read, is not UTF-8 or not valid CSV.
    """
    text = read_text(path, "csv")
    try:
        rows = csv.DictReader(io.StringIO(text, newline=""))
        return tuple(rows.fieldnames or ()), list(rows)
    except csv.Error as exc:
        raise UnreadableFile(path, f"not valid CSV ({exc})") from None

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


def check_writable_output(path: Path, *, replace: bool, flag: str = "--force") -> None:
    """Refuse, before any work, an output path slt may not write: anything but a regular
    file or a path that does not exist (a folder, a link, a FIFO, a device: replacing
    ``/dev/null`` or a link's target is never ours to do), or an existing file without
    ``replace`` (the command's ``flag``).

    Raises:
        SltError: naming the path and what it is.
    """
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise SltError(f"cannot write {path}: {exc.strerror or exc}",
                       hint="Choose another path.") from None
    if stat.S_ISLNK(mode):
        raise SltError(f"{path} is a symbolic link; slt writes only regular files, never "
                       "through a link", hint="Give the path of the file itself, or another "
                                              "path.")
    if not stat.S_ISREG(mode):
        raise SltError(f"{path} is {_file_type(mode)}, not a file slt may replace",
                       hint="Give the path of a regular file, or one that does not exist.")
    if not replace:
        raise SltError(f"{path} exists; nothing was written",
                       hint=f"Pass {flag} to replace it, or give another path.")


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


def abandoned_temp_folders(folder: Path) -> list[Path]:
    """slt's temporary folders in ``folder`` (named as ``temp_path`` names files: a clip
    being extracted) whose writer is gone, as ``abandoned_temps`` finds files."""
    if not folder.is_dir() or folder.is_symlink():
        return []
    return sorted(entry for entry in folder.iterdir()
                  if (match := _TEMP.fullmatch(entry.name)) and entry.is_dir()
                  and not entry.is_symlink() and _writer_gone(int(match["pid"])))


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


def _file_type(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def _too_large(kind: Kind) -> str:
    limit = READ_LIMITS[kind]
    shown = f"{limit // (1024 * MiB)} GiB" if limit >= 1024 * MiB else f"{limit // MiB} MiB"
    return f"larger than {shown}, the limit for {_NAMES[kind]}"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{text[:20]} is too large for a number")
    return value
