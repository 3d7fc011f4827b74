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
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slt_cli.errors import CheckpointError, StorageError
from slt_cli.files import (
    abandoned_temps,
    create_new,
    fault_point,
    fsync_directory,
    temp_path,
    temp_target,
)

if TYPE_CHECKING:
    import torch

WEIGHTS_SUFFIX = ".safetensors"
SIDECAR_SUFFIX = ".json"
ARCHIVE_FOLDER = "archive"  # earlier runs' files are moved here, never deleted
EXPORT_FOLDER = "exports"  # inside the checkpoint folder, where `slt list` never looks
EXPORT_FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}  # slt export --format: suffix
FOLDS_FILE = "folds.json"  # a cross-validation summary (slt train --folds), not a sidecar
SCHEMA_VERSION = 1
SIDECAR_KEYS = (
    "schema_version", "stage_idx", "stage_name", "stage_description", "val_loss",
    "val_accuracy", "config", "training_time", "stage_time", "epoch", "created_at", "classes",
    "model", "parent", "slt_version", "weights_sha256", "run_id",
)
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
    sidecar: Mapping[str, Any],
) -> dict[str, Any]:
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
    record = dict(sidecar)
    record["schema_version"] = SCHEMA_VERSION
    record["created_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    record["weights_sha256"] = hashlib.sha256(blob).hexdigest()
    text = json.dumps(record, indent=2, sort_keys=True, allow_nan=False) + "\n"
    atomic_write_pair(weights_path(directory, name), blob,
                      sidecar_path(directory, name), text.encode("utf-8"))
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


def update_sidecar(directory: Path, name: str, changes: Mapping[str, Any]) -> dict[str, Any]:
    """Change keys of checkpoint ``name``'s sidecar; its weights (and so its hash) stay.

    The sidecar is rewritten whole or not at all. Returns it as written.

    Raises:
        CheckpointError: when the sidecar is missing or damaged.
        StorageError: when the folder cannot be written.
    """
    path = sidecar_path(directory, name)
    record, problem = _read_record(path)
    if problem:
        raise CheckpointError(f"{path}: {problem}")
    record.update(changes)
    text = json.dumps(record, indent=2, sort_keys=True, allow_nan=False) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))
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


def _pending_sidecars(directory: Path) -> dict[str, Path]:
    """Checkpoint name -> a sidecar waiting under its temporary name whose hash names
    the weights in place: what a save killed between its two renames meant to write."""
    pending: dict[str, Path] = {}
    for tmp in sorted(directory.glob(f".*{SIDECAR_SUFFIX}.slt-*.tmp"),
                      key=lambda p: p.stat().st_mtime if p.exists() else 0.0):
        final = temp_target(tmp) or ""
        if final.endswith(SIDECAR_SUFFIX) and _pending_fits(directory, tmp, final):
            pending[final[: -len(SIDECAR_SUFFIX)]] = tmp
    return pending


def _pending_fits(directory: Path, tmp: Path, final: str) -> bool:
    try:
        record = json.loads(tmp.read_text(encoding="utf-8"))
        name = check_name(final[: -len(SIDECAR_SUFFIX)])
        weights = weights_path(directory, name).read_bytes()
    except (OSError, ValueError, CheckpointError):
        return False
    return isinstance(record, dict) and (
        hashlib.sha256(weights).hexdigest() == record.get("weights_sha256"))


def read_sidecar(directory: Path, name: str) -> dict[str, Any]:
    """The sidecar of checkpoint ``name``, migrated to the current schema and checked.

    Raises:
        CheckpointError: when the checkpoint does not exist (naming the closest ones),
            or its sidecar is not valid JSON or lacks or mistypes a key.
    """
    path = sidecar_path(directory, name)
    pending = _pending_sidecars(directory).get(check_name(name)) if directory.is_dir() else None
    if pending is None and not path.is_file():
        raise unknown_checkpoint(directory, name)
    record, problem = _read_record(pending or path)
    if problem:
        raise CheckpointError(f"{path}: {problem}",
                              hint="The sidecar was edited or damaged; retrain or restore it.")
    return record


def load_weights(directory: Path, name: str, sidecar: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Read the weights of ``name`` after checking them against the sidecar's hash.

    Raises:
        CheckpointError: when the file is missing, damaged or does not match.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load as load_tensors

    path = weights_path(directory, name)
    try:
        blob = path.read_bytes()
    except OSError:
        raise CheckpointError(f"{path}: weights file is missing",
                              hint="The sidecar has no weights beside it; retrain it.") from None
    if hashlib.sha256(blob).hexdigest() != sidecar.get("weights_sha256"):
        raise CheckpointError(f"{path}: weights do not match the sidecar's SHA-256",
                              hint="The file was changed or damaged after it was saved.")
    try:
        return load_tensors(blob)
    except SafetensorError as exc:
        raise CheckpointError(f"{path}: not a safetensors file ({exc})") from None


def list_checkpoints(directory: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Every checkpoint's sidecar in ``directory`` (not archived ones), oldest first,
    and one line for each sidecar that could not be used (never fatal).

    Each record gets a ``name`` key.
    """
    records: list[dict[str, Any]] = []
    problems: list[str] = []
    if not directory.is_dir():
        return records, problems
    pending = _pending_sidecars(directory)
    names = {path.name[: -len(SIDECAR_SUFFIX)] for path in directory.glob(f"*{SIDECAR_SUFFIX}")
             if path.name != FOLDS_FILE} | set(pending)
    for name in names:
        path = directory / f"{name}{SIDECAR_SUFFIX}"
        record, problem = _read_record(pending.get(name, path))
        if problem:
            problems.append(f"{path.name}: {problem}")
            continue
        record["name"] = name
        records.append(record)
    records.sort(key=lambda r: (str(r["created_at"]), r["name"]))
    return records, problems


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


# key -> accepted JSON types; a sidecar is checked against this before anyone uses it.
_SIDECAR_TYPES: dict[str, tuple[type, ...]] = {
    "schema_version": (int,), "stage_idx": (int,), "stage_name": (str,),
    "stage_description": (str, type(None)), "val_loss": (int, float),
    "val_accuracy": (int, float), "config": (dict,), "training_time": (int, float),
    "stage_time": (int, float, type(None)),
    "epoch": (int,), "created_at": (str,), "classes": (list,), "model": (dict,),
    "parent": (str, type(None)), "slt_version": (str,), "weights_sha256": (str,),
    "run_id": (str, type(None)), "joints": (list, type(None)),
}
_MODEL_TYPES: dict[str, type] = {"name": str, "settings": dict, "in_features": int,
                                 "num_classes": int, "num_frames": int}


def _read_record(path: Path) -> tuple[dict[str, Any], str | None]:
    """A sidecar from disk, migrated, and what is wrong with it (None when nothing)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return {}, f"unreadable sidecar ({exc})"
    if not isinstance(record, dict):
        return {}, "sidecar is not a JSON object"
    record = _migrate(record)
    missing = [key for key in _SIDECAR_TYPES if key not in record]
    if missing:
        return record, f"sidecar lacks {', '.join(missing)}"
    for key, types in _SIDECAR_TYPES.items():
        value = record[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            return record, f"sidecar key {key!r} has the wrong type ({type(value).__name__})"
    model = record["model"]
    for key, kind in _MODEL_TYPES.items():
        if not isinstance(model.get(key), kind) or isinstance(model.get(key), bool):
            return record, f"sidecar key 'model.{key}' is missing or of the wrong type"
    if not all(isinstance(name, str) for name in record["classes"]):
        return record, "sidecar key 'classes' must list names"
    if not all(isinstance(name, str) for name in record["joints"] or ()):
        return record, "sidecar key 'joints' must list names"
    return record, None


def _migrate(record: dict[str, Any]) -> dict[str, Any]:
    """Bring a sidecar of an older schema up to date (fill keys later versions added)."""
    record.setdefault("schema_version", SCHEMA_VERSION)
    for key in ("parent", "run_id", "stage_description", "stage_time", "joints"):
        record.setdefault(key, None)
    data = record.get("config", {}).get("data") if isinstance(record.get("config"), dict) else None
    if isinstance(data, dict):
        # Checkpoints from before [data] normalise were trained on one-cloud sequences.
        data.setdefault("normalise", "sequence")
    return record


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
