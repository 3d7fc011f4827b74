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
import signal
import tempfile
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slt_cli.errors import CheckpointError, StorageError, UnreadableFile
from slt_cli.files import fsync_directory, load_json, read_bounded
from slt_cli.lock import folder_idle

if TYPE_CHECKING:
    import torch

WEIGHTS_SUFFIX = ".safetensors"
SIDECAR_SUFFIX = ".json"
ARCHIVE_FOLDER = "archive"  # earlier runs' files are moved here, never deleted
FOLDS_FILE = "folds.json"  # a cross-validation summary (slt train --folds), not a sidecar
SCHEMA_VERSION = 1
SIDECAR_KEYS = (
    "schema_version", "stage_idx", "stage_name", "stage_description", "val_loss",
    "val_accuracy", "config", "training_time", "stage_time", "epoch", "created_at", "classes",
    "model", "parent", "slt_version", "weights_sha256", "run_id",
)
# File systems take names of 255 bytes; a checkpoint's temporary file adds 26 to its
# name (".NAME.safetensors.XXXXXXXX.tmp"), and ``continue`` appends "_<preset>".
MAX_NAME_LENGTH = 200
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
    sidecar: Mapping[str, Any],
) -> dict[str, Any]:
    """Save weights and sidecar under ``name``; returns the sidecar as written.

    The weights are stored without any ``module.`` prefix (the caller passes the
    unwrapped model's state), contiguous, on the CPU. ``sidecar`` gets
    ``schema_version``, ``created_at`` and ``weights_sha256`` filled in.

    Both files are written to temporary names and fsynced before either is renamed
    into place, weights first. A kill between the two renames leaves the new sidecar
    waiting under its temporary name; ``settle`` (run by every reader) finishes it.

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
    weights_tmp = _write_temp(weights_path(directory, name), blob)
    sidecar_tmp = _write_temp(sidecar_path(directory, name), text.encode("utf-8"))
    _commit(weights_tmp, weights_path(directory, name))
    fault_point()  # the one instant where the two files disagree; see settle()
    _commit(sidecar_tmp, sidecar_path(directory, name))
    return record


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


def settle(directory: Path, *, holding_lock: bool = False) -> None:
    """Finish or discard writes a killed process left behind.

    A sidecar still under its temporary name whose hash matches the weights in place
    is the second half of an interrupted ``save_checkpoint``: it is renamed into
    place. Every other temporary file is an unfinished write and is removed; the
    files it was meant to replace are still whole.

    Only while no live run holds the folder (its temporary files are writes in
    progress): a run that holds the lock passes ``holding_lock=True``; a reader
    settles only when the folder is idle, and otherwise leaves it to that run.
    Under torchrun only rank 0 settles, so no other process ever takes the lock.
    """
    if not directory.is_dir() or os.environ.get("RANK", "0") not in ("", "0"):
        return  # under torchrun rank 0 alone tidies (and locks) the folder
    if holding_lock:
        _settle(directory)
        return
    with folder_idle(directory) as idle:
        if idle:
            _settle(directory)


def _settle(directory: Path) -> None:
    for tmp in sorted(directory.glob(f".*{SIDECAR_SUFFIX}.*.tmp")):
        final = directory / tmp.name[1:].split(f"{SIDECAR_SUFFIX}.", 1)[0]
        target = final.with_name(final.name + SIDECAR_SUFFIX)
        try:
            pending = load_json(tmp)
            weights = read_bounded(final.with_name(final.name + WEIGHTS_SUFFIX), "weights")
        except (OSError, UnreadableFile):
            tmp.unlink(missing_ok=True)
            continue
        if (isinstance(pending, dict)
                and hashlib.sha256(weights).hexdigest() == pending.get("weights_sha256")):
            os.replace(tmp, target)
        else:
            tmp.unlink(missing_ok=True)
    for tmp in directory.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def read_sidecar(directory: Path, name: str) -> dict[str, Any]:
    """The sidecar of checkpoint ``name``, migrated to the current schema and checked.

    Raises:
        CheckpointError: when the checkpoint does not exist (naming the closest ones),
            or its sidecar is not valid JSON or lacks or mistypes a key.
    """
    path = sidecar_path(directory, name)
    settle(directory)
    if not path.is_file():
        raise unknown_checkpoint(directory, name)
    record, problem = _read_record(path)
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
    if not path.exists():
        raise CheckpointError(f"{path}: weights file is missing",
                              hint="The sidecar has no weights beside it; retrain it.")
    try:
        blob = read_bounded(path, "weights")
    except UnreadableFile as exc:
        raise CheckpointError(str(exc), hint="Restore the weights file slt saved.") from None
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
    settle(directory)
    for path in directory.glob(f"*{SIDECAR_SUFFIX}"):
        if path.name == FOLDS_FILE:
            continue
        record, problem = _read_record(path)
        if problem:
            problems.append(f"{path.name}: {problem}")
            continue
        record["name"] = path.name[: -len(SIDECAR_SUFFIX)]
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


def archive_existing(directory: Path, names: Iterable[str], run_id: str) -> list[str]:
    """Move the files of ``names`` that exist into ``archive/<run_id>/``.

    A new run calls this before it writes, so an earlier run's results are kept.
    Returns the names moved.
    """
    moved = []
    target = directory / ARCHIVE_FOLDER / run_id
    for name in names:
        files = [weights_path(directory, name), sidecar_path(directory, name)]
        present = [f for f in files if f.exists()]
        if not present:
            continue
        target.mkdir(parents=True, exist_ok=True)
        for path in present:
            os.replace(path, target / path.name)
        moved.append(name)
    return moved


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
        record = load_json(path)
    except UnreadableFile as exc:
        return {}, f"unreadable sidecar: {exc.reason}"
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


def _write_temp(path: Path, data: bytes) -> Path:
    """``data`` in a fsynced temporary file beside ``path`` (same file system)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise StorageError.writing(path, exc, elsewhere="with --checkpoint-dir") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            fault_point()
            os.fsync(handle.fileno())
    except OSError as exc:
        Path(name).unlink(missing_ok=True)
        raise StorageError.writing(path, exc, elsewhere="with --checkpoint-dir") from None
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)


def _commit(tmp: Path, path: Path) -> None:
    """Rename ``tmp`` over ``path`` and make the rename itself durable."""
    os.replace(tmp, path)
    fsync_directory(path.parent)


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
