"""Files on disk: bounded reads of what users can hand us, and durable writes.

Every file slt reads that a user could replace (a sidecar, a config, a state file, a
CSV listing, weights) goes through ``read_bounded``: it opens regular files only
(symlinks are followed to regular files only, so a FIFO never hangs a read and
``/dev/zero`` is never read to exhaustion), and reads at most one byte past the limit
for the file's kind, so a huge file is refused before it fills the memory.
"""

from __future__ import annotations

import csv
import io
import json
import os
import stat
from pathlib import Path
from typing import Any, Literal

from slt_cli.errors import UnreadableFile

Kind = Literal["json", "toml", "csv", "weights"]

MiB = 1 << 20
# The most bytes read of each kind of file. Sidecars and state files hold settings,
# class names and metrics (a 2,000-class sidecar is ~60 KiB); a config is a page of
# TOML; a CSV listing of GISLR's 94,477 sequences is ~6 MiB.
READ_LIMITS: dict[Kind, int] = {
    "json": 16 * MiB,
    "toml": 1 * MiB,
    "csv": 256 * MiB,
    "weights": 64 * 1024 * MiB,
}
_NAMES = {"json": "a JSON file", "toml": "a config", "csv": "a CSV listing",
          "weights": "a weights file"}


def read_bounded(path: Path, kind: Kind) -> bytes:
    """The bytes of ``path``, a regular file of at most ``READ_LIMITS[kind]`` bytes.

    Opening does not block (a FIFO is opened and refused, not waited on); the checks
    run on the opened file, so a path swapped between check and read gains nothing.

    Raises:
        UnreadableFile: when ``path`` cannot be opened, is not a regular file, or is
            larger than the limit.
    """
    limit = READ_LIMITS[kind]
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        handle = os.open(path, flags)
    except OSError as exc:
        raise UnreadableFile(path, f"cannot read ({exc.strerror or exc})") from None
    try:
        info = os.fstat(handle)
        if not stat.S_ISREG(info.st_mode):
            raise UnreadableFile(path, f"{_file_type(info.st_mode)}, not a regular file")
        if info.st_size > limit:
            raise UnreadableFile(path, _too_large(kind))
        os.set_blocking(handle, True)
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(handle, min(limit + 1 - size, 16 * MiB))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise UnreadableFile(path, f"cannot read ({exc.strerror or exc})") from None
    finally:
        os.close(handle)
    if size > limit:  # grew while being read
        raise UnreadableFile(path, _too_large(kind))
    return b"".join(chunks)


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
