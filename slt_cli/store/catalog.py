"""What ``slt list`` shows of a checkpoint folder: one row per checkpoint, fast.

The rows come from one scan of the folder: every sidecar in it is one checkpoint, so
what is listed is always what is on disk. A row is taken from the folder's index
(``.slt-index``) while the index still describes that sidecar, else from the sidecar,
read and checked as every command reads it (``checkpoints.read_record``).

The index is a cache the writers keep: a writing command refreshes it as it lets go of
the folder lock (``lock.folder_lock``); reading commands never write it. For each
sidecar it holds the listed row and the sidecar's identity on disk when it was read
(inode, size, mtime and ctime in nanoseconds, from the ``fstat`` of the file read). An
edit changes the ctime (which no user can set), a copied or unpacked folder has new
inodes, so a row whose sidecar changed since is never used; a stale, damaged or forged
index can neither hide nor invent a checkpoint, only cost the time of reading the
sidecars it no longer describes. slt writes the file only when it is absent or one of
its own indexes: anything else at that name is left alone (and listing reads every
sidecar).
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

from slt_cli import __version__
from slt_cli.common.files import READ_LIMITS, decode_utf8, parse_json, read_bounded_with_stat
from slt_cli.errors import CheckpointError, SltError, UnreadableFile
from slt_cli.store.checkpoints import (
    FOLDS_FILE,
    SIDECAR_SUFFIX,
    atomic_write_bytes,
    in_run_order,
    pending_sidecars,
    read_record,
    skipped_line,
)
from slt_cli.store.sidecar import Sidecar, checked_values

INDEX_FILE = ".slt-index"  # no .json suffix: not a sidecar, to this slt or an older one
INDEX_FORMAT = 1  # the index's "slt_index" key; another value is not an index we read
# what `slt list --json` shows of each checkpoint (a distilled student's also "teachers")
LISTED_KEYS = ("name", "stage_idx", "stage_name", "val_loss", "val_accuracy", "training_time",
               "stage_time", "epoch", "parent", "created_at", "run_id")
# A sidecar changed this recently is not indexed: on a file system whose clock ticks
# coarsely, an edit in the same tick as the read would keep the identity the index saw.
_SETTLED_NS = 2_000_000_000

Identity = tuple[int, int, int, int]  # st_ino, st_size, st_mtime_ns, st_ctime_ns


def listed_row(sidecar: Sidecar) -> dict[str, Any]:
    """The listed values of one checkpoint (``LISTED_KEYS``, and a distilled student's
    teachers by name)."""
    row = {"name": sidecar.name, "stage_idx": sidecar.stage_idx,
           "stage_name": sidecar.stage_name, "val_loss": sidecar.val_loss,
           "val_accuracy": sidecar.val_accuracy, "training_time": sidecar.training_time,
           "stage_time": sidecar.stage_time, "epoch": sidecar.epoch, "parent": sidecar.parent,
           "created_at": sidecar.created_at, "run_id": sidecar.run_id}
    if sidecar.distilled is not None:
        row["teachers"] = [teacher.name for teacher in sidecar.distilled.teachers]
    return row


def folder_rows(directory: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Every checkpoint of ``directory`` as its listed row, oldest run first and each
    run's stages in order (as ``checkpoints.list_checkpoints`` orders them), and one
    line for each sidecar that could not be used (never fatal)."""
    if not directory.is_dir():
        return [], []
    sidecars, temps = _scan(directory)
    pending = pending_sidecars(directory, temps) if temps else {}
    index = _read_index(directory / INDEX_FILE)[1] or {}
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    for name in sidecars.keys() | pending.keys():
        source = pending.get(name)
        if source is None:  # a sidecar waiting under its temporary name is never indexed
            row = _indexed_row(index.get(name), name, sidecars[name])
            if row is not None:
                rows.append(row)
                continue
        path = directory / f"{name}{SIDECAR_SUFFIX}"
        try:
            rows.append(listed_row(read_record(source or path, name)))
        except CheckpointError as exc:
            problems.append(skipped_line(path, source or path, exc))
    by_name = {row["name"]: row for row in rows}
    for row in rows:  # a student: are its teachers still the models of those names?
        if any(name not in by_name or by_name[name]["created_at"] > row["created_at"]
               for name in row.get("teachers") or ()):  # (no file read while they are)
            _mark_moved_teachers(directory, row, pending.get(row["name"]))
    return in_run_order(rows, lambda row: (row.get("run_id"), row["created_at"],
                                           row["stage_idx"], row["name"])), problems


def _mark_moved_teachers(directory: Path, row: dict[str, Any], pending: Path | None) -> None:
    """Add ``teachers_moved`` to a student's row when a teacher has since been archived
    (or is gone): read when listed, since the student's sidecar does not change."""
    from slt_cli.store.archive import moved_teachers

    try:
        sidecar = read_record(pending or directory / f"{row['name']}{SIDECAR_SUFFIX}",
                              row["name"])
    except CheckpointError:
        return
    if sidecar.distilled is not None:
        moved = moved_teachers(directory, sidecar.distilled.teachers)
        if moved:
            row["teachers_moved"] = moved


def refresh_index(directory: Path) -> None:
    """Bring ``directory``'s index up to date with its sidecars (only those that changed
    are read). For a writing command that holds the folder lock; never raises: the index
    only saves time, and a folder it cannot be written to lists as fast as before."""
    with contextlib.suppress(OSError, SltError):
        _refresh(directory)


def _refresh(directory: Path) -> None:
    path = directory / INDEX_FILE
    owned, index = _read_index(path)
    if not owned and os.path.lexists(path):
        return  # not an index slt wrote (or not readable): left alone
    old = index or {}
    sidecars, temps = _scan(directory)
    pending = pending_sidecars(directory, temps) if temps else {}
    settled = time.time_ns() - _SETTLED_NS
    entries: dict[str, Any] = {}
    for name, identity in sidecars.items():
        if identity is None or name in pending:
            continue
        entry = old.get(name)
        if _indexed_row(entry, name, identity) is None:
            entry = _entry(directory / f"{name}{SIDECAR_SUFFIX}", name)
        if entry is not None and entry["identity"][3] < settled:
            entries[name] = entry
    if entries == old and index is not None or not entries and not owned:
        return
    text = json.dumps({"slt_index": INDEX_FORMAT, "slt_version": __version__,
                       "entries": entries}, sort_keys=True, separators=(",", ":"),
                      allow_nan=False) + "\n"  # compact: a cache, read by programs only
    if len(text) <= READ_LIMITS["json"]:
        atomic_write_bytes(path, text.encode("utf-8"))


def _entry(path: Path, name: str) -> dict[str, Any] | None:
    """The index entry of the sidecar ``path`` as read now; None when it is not a
    sidecar ``slt list`` shows (it is then read, and named, on every listing)."""
    try:
        blob, status = read_bounded_with_stat(path, "json")
        sidecar = Sidecar.from_json(parse_json(decode_utf8(blob, path), path), name=name)
    except (UnreadableFile, CheckpointError):
        return None
    return {"identity": list(_identity(status)), "row": listed_row(sidecar)}


def _scan(directory: Path) -> tuple[dict[str, Identity | None], list[Path]]:
    """One pass over the folder: each sidecar's name and identity (None: not a regular
    file, or gone: it is read to say why), and the sidecars waiting under temporary
    names (``checkpoints.PENDING_PATTERN``)."""
    sidecars: dict[str, Identity | None] = {}
    temps: list[Path] = []
    with os.scandir(directory) as entries:
        for entry in entries:
            name = entry.name
            if name.endswith(SIDECAR_SUFFIX):
                if name == FOLDS_FILE:
                    continue
                try:
                    status = entry.stat()
                    identity = _identity(status) if stat.S_ISREG(status.st_mode) else None
                except OSError:
                    identity = None
                sidecars[name[: -len(SIDECAR_SUFFIX)]] = identity
            elif name.startswith(".") and name.endswith(".tmp") and ".json.slt-" in name:
                temps.append(Path(entry.path))
    return sidecars, temps


def _identity(status: os.stat_result) -> Identity:
    return status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns


def _read_index(path: Path) -> tuple[bool, dict[str, Any] | None]:
    """Whether the file at ``path`` is an index slt wrote (a regular file, not a link,
    holding a JSON object with ``slt_index``), and its entries when this slt can use
    them (its format and version); None when there is no such file, or it is a link, a
    FIFO, too large, not JSON, or of another format or version: the sidecars are then
    the only source."""
    try:
        blob, _ = read_bounded_with_stat(path, "json", follow_symlinks=False)
        raw = parse_json(decode_utf8(blob, path), path)
    except UnreadableFile:
        return False, None
    if not isinstance(raw, dict) or "slt_index" not in raw:
        return False, None
    if (raw["slt_index"] != INDEX_FORMAT or raw.get("slt_version") != __version__
            or not isinstance(raw.get("entries"), dict)):
        return True, None  # another version's checks may differ from this one's: read afresh
    return True, raw["entries"]


def _indexed_row(entry: Any, name: str, identity: Identity | None) -> dict[str, Any] | None:
    """The row an index entry holds for sidecar ``name``, when the entry is well formed
    and the sidecar on disk still has the identity the entry recorded; else None."""
    if identity is None or not isinstance(entry, dict):
        return None
    recorded, row = entry.get("identity"), entry.get("row")
    if (not isinstance(recorded, list) or tuple(recorded) != identity
            or any(isinstance(part, bool) for part in recorded)
            or not isinstance(row, dict) or row.get("name") != name):
        return None
    teachers = row.get("teachers")
    values = {key: value for key, value in row.items() if key not in ("name", "teachers")}
    if len(values) != len(LISTED_KEYS) - 1 or len(row) != len(values) + 1 + ("teachers" in row):
        return None
    checked = checked_values(values)
    if checked is None or set(checked) != set(LISTED_KEYS[1:]) or not _names(teachers):
        return None
    return {"name": name, **checked, **({} if teachers is None else {"teachers": teachers})}


def _names(teachers: Any) -> bool:
    """Whether ``teachers`` is absent or a list of names, as ``listed_row`` makes it."""
    return teachers is None or (isinstance(teachers, list) and bool(teachers)
                                and all(isinstance(item, str) for item in teachers))

