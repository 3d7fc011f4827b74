"""Reading ``.npz`` archives without trusting them: regular files only, no pickle, and
every member's declared shape checked against the bytes it holds before anything is
allocated (a 64-byte file must not make numpy allocate gigabytes)."""

from __future__ import annotations

import lzma
import math
import os
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from slt_cli.common.files import open_regular
from slt_cli.errors import DataError, UnreadableFile

_SUFFIX = ".npy"


def read_npz(path: Path, names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """The arrays of the ``.npz`` file ``path`` (only ``names`` when given), by name.

    Raises:
        DataError: naming the file (and the array) when it is not a regular file, not
            an ``.npz`` archive, holds something other than ``.npy`` arrays, holds an
            object (pickled) array, or an array declares more data than it holds.
    """
    wanted = None if names is None else set(names)
    try:
        with open_regular(path) as handle, zipfile.ZipFile(handle) as archive:
            members = {}
            for info in archive.infolist():
                key = info.filename[: -len(_SUFFIX)] if info.filename.endswith(_SUFFIX) else None
                if key is None:
                    raise DataError(f"{path}: holds {info.filename!r}, which is not an .npy "
                                    "array", hint="The format: docs/data.md, '.npz files'.")
                if wanted is None or key in wanted:
                    members[key] = info
            _check_fits_memory(path, sum(info.file_size for info in members.values()))
            return {key: _read_member(path, archive, key, info) for key, info in members.items()}
    except UnreadableFile as exc:
        raise DataError(str(exc)) from None
    except (OSError, ValueError, EOFError, RuntimeError, NotImplementedError, zipfile.BadZipFile,
            zlib.error, lzma.LZMAError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None


def memory_bytes() -> int:
    """The machine's physical memory (0 where the system does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


def _check_fits_memory(path: Path, unpacked: int) -> None:
    """Refuse arrays that would unpack to more than the machine's memory: a small,
    highly compressed archive (a "zip bomb") is told before anything is allocated."""
    memory = memory_bytes()
    if memory and unpacked > memory:
        raise DataError(f"{path}: its arrays unpack to {_size(unpacked)}, more than this "
                        f"machine's {_size(memory)} of memory",
                        hint="An .npz is read whole into memory; keep larger data as a "
                             "folder (mediapipe:, pose:, gislr:), which slt converts once "
                             "and reads from disk as needed (docs/data.md).")


def _size(count: int) -> str:
    return f"{count / 2**30:.1f} GiB" if count >= 2**30 else f"{count / 2**20:.0f} MiB"


def member_names(path: Path) -> tuple[str, ...]:
    """The names of the arrays an ``.npz`` file holds, read from its directory only.

    Raises:
        DataError: as ``read_npz``, for a file that is not a readable archive.
    """
    try:
        with open_regular(path) as handle, zipfile.ZipFile(handle) as archive:
            return tuple(name[: -len(_SUFFIX)] if name.endswith(_SUFFIX) else name
                         for name in archive.namelist())
    except UnreadableFile as exc:
        raise DataError(str(exc)) from None
    except (OSError, ValueError, EOFError, RuntimeError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None


def _read_member(path: Path, archive: zipfile.ZipFile, key: str,
                 info: zipfile.ZipInfo) -> np.ndarray:
    """One member, after checking that its header's shape fits the bytes it holds."""
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(member)
        else:
            raise DataError(f"{path}: {key!r} is in .npy format {version}; slt reads 1.0 "
                            "and 2.0")
        if dtype.hasobject:
            raise DataError(f"{path}: {key!r} is an object array; slt never unpickles data",
                            hint="Store names as a string array (dtype 'U').")
        declared = math.prod(shape) * dtype.itemsize
        holds = info.file_size - member.tell()
        if declared > holds:
            raise DataError(f"{path}: {key!r} declares shape {tuple(shape)} of {dtype} "
                            f"({declared} bytes) but holds {holds} bytes",
                            hint="The file is truncated or was not written by numpy.")
    with archive.open(info) as member:
        return np.lib.format.read_array(member, allow_pickle=False)
