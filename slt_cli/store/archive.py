"""Earlier runs' checkpoints are moved aside, never deleted: ``archive/<run_id>/``.

A run that writes stage N's names moves the earlier files of those names into the
archive first, and with them every checkpoint trained from them (its ``parent``, or an
ensemble's ``members``, transitively): after ``slt train --stages 1`` over a folder of
stages 1 to 5, stages 2 to 5 were trained from a stage 1 that is no longer there, so
they go too, and ``slt list`` and ``slt analyze`` only ever show true lineage.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from slt_cli.common.files import own_folder
from slt_cli.errors import CheckpointError
from slt_cli.store.checkpoints import (
    ARCHIVE_FOLDER,
    list_checkpoints,
    read_record,
    sidecar_path,
    weights_path,
)
from slt_cli.store.sidecar import Teacher


def dependants(directory: Path, names: Iterable[str]) -> list[str]:
    """The checkpoints of ``directory`` trained from any of ``names``, directly or through
    others (their recorded ``parent``, or an ensemble's ``members``), oldest first;
    ``names`` themselves are not among them."""
    records, _ = list_checkpoints(directory)
    gone, found = set(names), []
    changed = True
    while changed:
        changed = False
        for record in records:
            name = record.name
            if name in gone:
                continue
            sources = {record.parent, *(record.members or ())}
            if sources & gone:
                gone.add(name)
                found.append(name)
                changed = True
    return found


def archive_existing(directory: Path, names: Iterable[str], run_id: str) -> list[str]:
    """Move the files of ``names`` that exist into ``archive/<run_id>/``.

    A new run calls this before it writes, so an earlier run's results are kept.
    Returns the names moved.

    Raises:
        SltError: when ``archive/`` is a symbolic link or a file (nothing is moved).
    """
    moved = []
    target = own_folder(directory, ARCHIVE_FOLDER) / run_id
    for name in names:
        files = [weights_path(directory, name), sidecar_path(directory, name)]
        present = [f for f in files if f.exists() or f.is_symlink()]
        if not present:
            continue
        target.mkdir(parents=True, exist_ok=True)
        for path in present:
            os.replace(path, target / path.name)
        moved.append(name)
    return moved


def moved_teachers(directory: Path, teachers: Iterable[Teacher]) -> dict[str, str | None]:
    """Where each of a student's ``teachers`` that is no longer in ``directory`` went:
    name -> ``archive/<run_id>/<name>`` holding its weights (by their SHA-256), or None
    when no checkpoint of the folder or its archive does. A later run of the teacher's
    stage moves it into the archive, and the name then means another model; teachers
    still in place are left out."""
    moved: dict[str, str | None] = {}
    for teacher in teachers:
        if _sha_of(sidecar_path(directory, teacher.name)) == teacher.weights_sha256:
            continue
        archive = directory / ARCHIVE_FOLDER
        runs = (sorted((p for p in archive.iterdir() if p.is_dir() and not p.is_symlink()),
                       reverse=True) if archive.is_dir() and not archive.is_symlink() else [])
        moved[teacher.name] = next(
            (f"{ARCHIVE_FOLDER}/{run.name}/{teacher.name}" for run in runs
             if _sha_of(sidecar_path(run, teacher.name)) == teacher.weights_sha256), None)
    return moved


def _sha_of(path: Path) -> str | None:
    """The weights hash a sidecar records (None when there is no readable one)."""
    if not path.is_file():
        return None
    try:
        return read_record(path, path.name.removesuffix(".json")).weights_sha256
    except CheckpointError:
        return None
