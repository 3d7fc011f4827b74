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
import tempfile
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slt_cli.errors import CheckpointError

if TYPE_CHECKING:
    import torch

WEIGHTS_SUFFIX = ".safetensors"
SIDECAR_SUFFIX = ".json"
ARCHIVE_FOLDER = "archive"  # earlier runs' files are moved here, never deleted
SCHEMA_VERSION = 1
SIDECAR_KEYS = (
    "schema_version", "stage_idx", "stage_name", "stage_description", "val_loss",
    "val_accuracy", "config", "training_time", "epoch", "created_at", "classes", "model",
    "parent", "slt_version", "weights_sha256", "run_id",
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
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


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
    """
    from safetensors.torch import save as save_tensors

    tensors = {key: value.detach().cpu().contiguous() for key, value in state_dict.items()}
    blob = save_tensors(tensors, metadata={"format": "pt", "slt_schema": str(SCHEMA_VERSION)})
    record = dict(sidecar)
    record["schema_version"] = SCHEMA_VERSION
    record["created_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    record["weights_sha256"] = hashlib.sha256(blob).hexdigest()
    atomic_write_bytes(weights_path(directory, name), blob)
    text = json.dumps(record, indent=2, sort_keys=True, allow_nan=False) + "\n"
    atomic_write_bytes(sidecar_path(directory, name), text.encode("utf-8"))
    return record


def read_sidecar(directory: Path, name: str) -> dict[str, Any]:
    """The sidecar of checkpoint ``name``, migrated to the current schema.

    Raises:
        CheckpointError: when the checkpoint does not exist (naming the closest ones)
            or its sidecar is not valid JSON.
    """
    path = sidecar_path(directory, name)
    if not path.is_file():
        raise unknown_checkpoint(directory, name)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable sidecar ({exc})") from None
    if not isinstance(record, dict):
        raise CheckpointError(f"{path}: sidecar is not a JSON object")
    return _migrate(record)


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


def list_checkpoints(directory: Path) -> list[dict[str, Any]]:
    """Every checkpoint's sidecar in ``directory`` (not archived ones), oldest first.

    Each record gets a ``name`` key. Unreadable sidecars are skipped, never fatal.
    """
    records = []
    if not directory.is_dir():
        return records
    for path in directory.glob(f"*{SIDECAR_SUFFIX}"):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(record, dict):
            record = _migrate(record)
            record["name"] = path.name[: -len(SIDECAR_SUFFIX)]
            records.append(record)
    records.sort(key=lambda r: (str(r.get("created_at", "")), r["name"]))
    return records


def checkpoint_names(directory: Path) -> list[str]:
    if not directory.is_dir():
        return []
    return sorted(p.name[: -len(SIDECAR_SUFFIX)] for p in directory.glob(f"*{SIDECAR_SUFFIX}"))


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


def _migrate(record: dict[str, Any]) -> dict[str, Any]:
    """Bring a sidecar of an older schema up to date (fill keys later versions added)."""
    record.setdefault("schema_version", SCHEMA_VERSION)
    for key in ("parent", "run_id", "stage_description"):
        record.setdefault(key, None)
    return record
