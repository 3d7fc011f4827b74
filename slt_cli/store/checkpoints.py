"""Checkpoints on disk: names, atomic writes, the JSON sidecar, listing and lineage.

A checkpoint is two files with one name in the checkpoint folder: ``NAME.safetensors``
(weights only, never pickle) and ``NAME.json`` (everything else). The sidecar is
written last, so a checkpoint exists for ``slt list`` only once both files are whole.
Nothing here imports torch at module level: ``slt list`` reads sidecars alone.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from slt_cli.common.files import (
    abandoned_temps,
    create_new,
    fault_point,
    fsync_directory,
    load_json,
    sha256_of,
    temp_path,
    temp_target,
)
from slt_cli.errors import CheckpointError, StorageError, UnreadableFile
from slt_cli.store.sidecar import SCHEMA_VERSION, Sidecar

T = TypeVar("T")

if TYPE_CHECKING:
    import torch

WEIGHTS_SUFFIX = ".safetensors"
SIDECAR_SUFFIX = ".json"
ARCHIVE_FOLDER = "archive"  # earlier runs' files are moved here, never deleted
EXPORT_FOLDER = "exports"  # inside the checkpoint folder, where `slt list` never looks
EXPORT_FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}  # slt export --format: suffix
FOLDS_FILE = "folds.json"  # a cross-validation summary (slt train --folds), not a sidecar
# a sidecar waiting under its temporary name (see save_checkpoint), as a glob pattern
PENDING_PATTERN = f".*{SIDECAR_SUFFIX}.slt-*.tmp"
# File systems take names of 255 bytes: a checkpoint's temporary file adds up to 41 to
# its name (".NAME.safetensors.slt-<pid>-<8 hex>.tmp"), `continue` appends "_<preset>"
# and a number.
MAX_NAME_LENGTH = 180
_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def best_checkpoint_name(stage_idx: int) -> str:
    """Name of the best weights seen during stage ``stage_idx`` (1-based)."""
    return f"best_model_stage_{stage_idx}"


def stage_checkpoint_name(stage_idx: int, stage_name: str) -> str:
    """Name of the weights at the end of stage ``stage_idx``."""
    return f"stage_{stage_idx}_{stage_name}"


def check_name(name: str) -> str:
    """Refuse anything but a plain checkpoint name (no paths, no hidden files).

    Raises:
        CheckpointError: when ``name`` could point outside the checkpoint folder.
    """
    if name.endswith(SIDECAR_SUFFIX) or name.endswith(WEIGHTS_SUFFIX):
        name = name.rsplit(".", 1)[0]
    if len(name) > MAX_NAME_LENGTH:
        raise CheckpointError(
            f"checkpoint name {name[:20]}... is {len(name)} characters long; the limit is "
            f"{MAX_NAME_LENGTH}", hint="File systems take names of 255 bytes at most.")
    if not _NAME_PATTERN.fullmatch(name) or ".." in name:
        raise CheckpointError(
            f"{name!r} is not a checkpoint name",
            hint="Give a name as `slt list` shows it, e.g. best_model_stage_5 (no paths).",
        )
    return name


def weights_path(directory: Path, name: str) -> Path:
    return directory / f"{check_name(name)}{WEIGHTS_SUFFIX}"


def sidecar_path(directory: Path, name: str) -> Path:
    return directory / f"{check_name(name)}{SIDECAR_SUFFIX}"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all: temp file, fsync, rename."""
    _commit(_write_temp(path, data), path)


def save_checkpoint(
    directory: Path,
    name: str,
    state_dict: Mapping[str, torch.Tensor],
    sidecar: Sidecar,
) -> Sidecar:
    """Save weights and sidecar under ``name``; returns the sidecar as written.

    The weights are stored without any ``module.`` prefix (the caller passes the
    unwrapped model's state), contiguous, on the CPU. ``sidecar`` gets
    ``schema_version``, ``created_at`` and ``weights_sha256`` filled in.

    Both files are written to temporary names and fsynced before either is renamed
    into place, weights first. A kill between the two renames leaves the new sidecar
    waiting under its temporary name: readers take it for the sidecar (its hash names
    the weights in place) and the next writer's ``settle`` renames it into place.

    Raises:
        CheckpointError: when a tensor holds NaN or infinity (never saved).
        StorageError: when the folder cannot be written.
    """
    import torch
    from safetensors.torch import save as save_tensors

    tensors = {key: value.detach().cpu().contiguous() for key, value in state_dict.items()}
    broken = [key for key, value in tensors.items()
              if value.is_floating_point() and not torch.isfinite(value).all()]
    if broken:
        raise CheckpointError(f"refusing to save {name}: {broken[0]} holds NaN or infinity")
    blob = save_tensors(tensors, metadata={"format": "pt", "slt_schema": str(SCHEMA_VERSION)})
    record = sidecar.replace(
        name=name, schema_version=SCHEMA_VERSION,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        weights_sha256=hashlib.sha256(blob).hexdigest())
    atomic_write_pair(weights_path(directory, name), blob,
                      sidecar_path(directory, name), _sidecar_text(record).encode("utf-8"))
    return record


def atomic_write_pair(first: Path, first_data: bytes, second: Path, second_data: bytes,
                      *, elsewhere: str = "with --checkpoint-dir") -> None:
    """Write two files that belong together: both to temporary names (fsynced), then
    ``first`` renamed into place, then ``second``. A kill between the renames leaves
    ``second`` waiting under its temporary name, which the next writer finishes or
    removes (``second`` names ``first``'s hash, so a reader can tell them apart)."""
    first_tmp = _write_temp(first, first_data, elsewhere)
    try:
        second_tmp = _write_temp(second, second_data, elsewhere)
    except BaseException:
        first_tmp.unlink(missing_ok=True)
        raise
    _commit(first_tmp, first)
    fault_point()  # the one instant where the two files disagree; see settle()
    _commit(second_tmp, second)


def update_sidecar(directory: Path, name: str, **changes: Any) -> Sidecar:
    """Change keys of checkpoint ``name``'s sidecar; its weights (and so its hash) stay.

    The sidecar is rewritten whole or not at all. Returns it as written.

    Raises:
        CheckpointError: when the sidecar is missing or damaged.
        StorageError: when the folder cannot be written.
    """
    path = sidecar_path(directory, name)
    record = read_record(path, name).replace(**changes)
    atomic_write_bytes(path, _sidecar_text(record).encode("utf-8"))
    return record


def settle(directory: Path) -> None:
    """Finish or discard the writes a killed process left in ``directory``.

    Called only by a writing command that holds the folder lock (readers never change
    a folder). A sidecar still under its temporary name whose hash matches the weights
    in place is the second half of an interrupted ``save_checkpoint``: it is renamed
    into place. Every other of slt's temporary files whose writer is gone is an
    unfinished write and is removed; the files it was meant to replace are whole.
    Other files, other programs' ``.tmp`` files among them, are never touched. Under
    torchrun only rank 0 settles.
    """
    if not directory.is_dir() or os.environ.get("RANK", "0") not in ("", "0"):
        return
    for tmp in abandoned_temps(directory):
        final = temp_target(tmp) or ""
        if final.endswith(SIDECAR_SUFFIX) and _pending_fits(directory, tmp, final):
            os.replace(tmp, directory / final)
        else:
            tmp.unlink(missing_ok=True)


def pending_sidecars(directory: Path, temps: Iterable[Path] | None = None) -> dict[str, Path]:
    """Checkpoint name -> a sidecar waiting under its temporary name whose hash names
    the weights in place: what a save killed between its two renames meant to write.
    ``temps``: the folder's ``PENDING_PATTERN`` files, when a caller has scanned it."""
    pending: dict[str, Path] = {}
    found = directory.glob(PENDING_PATTERN) if temps is None else temps
    for tmp in sorted(found, key=lambda p: p.stat().st_mtime if p.exists() else 0.0):
        final = temp_target(tmp) or ""
        if final.endswith(SIDECAR_SUFFIX) and _pending_fits(directory, tmp, final):
            pending[final[: -len(SIDECAR_SUFFIX)]] = tmp
    return pending


def _pending_fits(directory: Path, tmp: Path, final: str) -> bool:
    try:
        record = load_json(tmp)
        name = check_name(final[: -len(SIDECAR_SUFFIX)])
        weights = weights_path(directory, name)
        if not isinstance(record, dict) or not isinstance(record.get("weights_sha256"), str):
            return False
        return sha256_of(weights, "weights") == record["weights_sha256"]
    except (UnreadableFile, CheckpointError, OSError):
        return False


def read_sidecar(directory: Path, name: str) -> Sidecar:
    """The sidecar of checkpoint ``name``, migrated to the current schema and checked.

    Raises:
        CheckpointError: when the checkpoint does not exist (naming the closest ones),
            or its sidecar is not valid JSON or lacks or mistypes a key.
    """
    path = sidecar_path(directory, name)
    pending = pending_sidecars(directory).get(check_name(name)) if directory.is_dir() else None
    if pending is None and not path.is_file():
        raise unknown_checkpoint(directory, name)
    return read_record(pending or path, check_name(name))


def load_weights(directory: Path, name: str, sidecar: Sidecar) -> dict[str, torch.Tensor]:
    """Read the weights of ``name`` after checking them against the sidecar's hash.

    Raises:
        CheckpointError: when the file is missing, damaged or does not match.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = weights_path(directory, name)
    if not path.exists():
        raise CheckpointError(f"{path}: weights file is missing",
                              hint="The sidecar has no weights beside it; retrain it.")
    try:
        # hashed block by block: a file that is not the one saved is refused before
        # any of it is held in memory, whatever its size
        digest = sha256_of(path, "weights")
    except UnreadableFile as exc:
        raise CheckpointError(str(exc), hint="Restore the weights file slt saved.") from None
    if digest != sidecar.weights_sha256:
        raise CheckpointError(f"{path}: weights do not match the sidecar's SHA-256",
                              hint="The file was changed or damaged after it was saved.")
    try:
        return load_file(path)
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path}: not a safetensors file ({exc})") from None


def list_checkpoints(directory: Path) -> tuple[list[Sidecar], list[str]]:
    """Every checkpoint's sidecar in ``directory`` (not archived ones), oldest first,
    and one line for each sidecar that could not be used (never fatal)."""
    records: list[Sidecar] = []
    problems: list[str] = []
    if not directory.is_dir():
        return records, problems
    pending = pending_sidecars(directory)
    names = {path.name[: -len(SIDECAR_SUFFIX)] for path in directory.glob(f"*{SIDECAR_SUFFIX}")
             if path.name != FOLDS_FILE} | set(pending)
    for name in names:
        path = directory / f"{name}{SIDECAR_SUFFIX}"
        source = pending.get(name, path)
        try:
            records.append(read_record(source, name))
        except CheckpointError as exc:
            problems.append(skipped_line(path, source, exc))
    return in_run_order(records, lambda r: (r.run_id, r.created_at, r.stage_idx, r.name)
                        ), problems


def in_run_order(items: Iterable[T], fields: Callable[[T], tuple[str | None, str, int | None,
                                                                   str]]) -> list[T]:
    """``items`` (sidecars, or listed rows) oldest run first and, within a run, stage by
    stage (a stage's best before its end weights), whatever second each was saved in;
    ``fields`` gives an item's run id, ``created_at``, stage and name. Items of no
    recorded run stand alone, at their own time. Sorting by ``created_at`` alone put a
    later stage's best above an earlier stage's end weights saved in the same second
    (ties went by name), or in the same minute of a fast stage."""
    items = list(items)
    started: dict[str, str] = {}
    for item in items:
        run, created, _, _ = fields(item)
        if run:
            started[run] = min(started.get(run, created), created)

    def key(item: T) -> tuple[str, str, int, str, str]:
        run, created, stage, name = fields(item)
        return (started[run] if run else created, run or "", stage or 0, created, name)

    return sorted(items, key=key)


def skipped_line(path: Path, source: Path, exc: CheckpointError) -> str:
    """The line that names a sidecar ``path`` (read from ``source``) a listing skips."""
    return f"{path.name}: {exc.message.removeprefix(f'{source}: ')}"


def checkpoint_names(directory: Path) -> list[str]:
    if not directory.is_dir():
        return []
    return sorted(p.name[: -len(SIDECAR_SUFFIX)] for p in directory.glob(f"*{SIDECAR_SUFFIX}")
                  if p.name != FOLDS_FILE)


def unknown_checkpoint(directory: Path, name: str) -> CheckpointError:
    """The error for a missing checkpoint, naming the closest existing ones."""
    existing = checkpoint_names(directory)
    close = difflib.get_close_matches(name, existing, n=3, cutoff=0.5)
    if close:
        hint = f"Did you mean: {', '.join(close)}?"
    elif existing:
        hint = "Run `slt list` to see the saved checkpoints."
    else:
        hint = f"{directory} holds no checkpoints yet; run `slt train` first."
    return CheckpointError(f"no checkpoint named {name!r} in {directory}", hint=hint)


def free_name(directory: Path, base: str) -> str:
    """``base``, or ``base_2``, ``base_3``... whichever does not exist yet."""
    name, counter = check_name(base), 1
    while sidecar_path(directory, name).exists() or weights_path(directory, name).exists():
        counter += 1
        name = f"{base}_{counter}"
    return name


def new_run_id() -> str:
    """A sortable id for one run: UTC time to the microsecond."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


def read_record(path: Path, name: str) -> Sidecar:
    """Checkpoint ``name``'s sidecar from ``path`` (its own, or one waiting under its
    temporary name), checked and migrated (``Sidecar.from_json``).

    Raises:
        CheckpointError: naming ``path`` and what is wrong with it.
    """
    try:
        raw = load_json(path)
    except UnreadableFile as exc:
        raise CheckpointError(f"{path}: unreadable sidecar: {exc.reason}") from None
    try:
        return Sidecar.from_json(raw, name=name)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc.message}", hint=exc.hint) from None


def _sidecar_text(sidecar: Sidecar) -> str:
    return json.dumps(sidecar.to_json(), indent=2, sort_keys=True, allow_nan=False) + "\n"


def _write_temp(path: Path, data: bytes, elsewhere: str = "with --checkpoint-dir") -> Path:
    """``data`` in a fsynced temporary file beside ``path`` (same file system), named
    as ``files.temp_path`` says and made with the mode the umask gives."""
    name = temp_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = create_new(name)
    except OSError as exc:
        raise StorageError.writing(path, exc, elsewhere=elsewhere) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            fault_point()
            os.fsync(handle.fileno())
    except OSError as exc:
        name.unlink(missing_ok=True)
        raise StorageError.writing(path, exc, elsewhere=elsewhere) from None
    except BaseException:
        name.unlink(missing_ok=True)
        raise
    return name


def _commit(tmp: Path, path: Path) -> None:
    """Rename ``tmp`` over ``path`` and make the rename itself durable."""
    os.replace(tmp, path)
    fsync_directory(path.parent)
